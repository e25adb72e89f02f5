#!/usr/bin/env bash
# The GPU checks of benchmarks/RESULTS.md in one short run (about 5 minutes on an H100/H200):
# the stage-1 training step (fp32 eager vs bf16 + SDPA, channels_last, compile) and the three-clip test.
# Usage: bash benchmarks/gpu_benchmarks.sh [OUT_DIR]   (logs are copied to OUT_DIR if given)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
python3 benchmarks/bench_train_step.py --compile 2>&1 | tee /tmp/bench_train_step.log
python3 benchmarks/bench_test.py --batch_size 8 2>&1 | tee /tmp/bench_test.log
python3 benchmarks/bench_loss.py --quick 2>&1 | tee /tmp/bench_loss.log
[ -n "${1:-}" ] && mkdir -p "$1" && cp /tmp/bench_*.log "$1"/
exit 0
