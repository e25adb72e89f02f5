# Sourced by demo.sh and demo_transfer.sh: strict mode, the repository as working folder, offline wandb, the
# Python to use ($PYTHON, else python3), and `step "what" command...`, which runs a command and says how long it took.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export WANDB_MODE="${WANDB_MODE:-disabled}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
START=$SECONDS

step() {
    local what=$1 began=$SECONDS
    shift
    "$@"
    echo "== $what: $((SECONDS - began)) s"
}
