#!/usr/bin/env bash
# The GPU checks in one short run (about 5 minutes on an H100/H200): the CUDA tests (tests/test_cuda.py),
# then the benchmarks of benchmarks/RESULTS.md: the stage-1 training step (fp32 eager vs bf16 + SDPA,
# channels_last, compile) and the three-clip test. Needs no wandb; at most 9 minutes in all.
# Usage: bash benchmarks/gpu_benchmarks.sh [OUT_DIR]   (logs are written to OUT_DIR as they grow)
# The test benchmark uses the real example videos in .bench_data/echonet_samples when that folder exists
# (copy ../shared/data/echonet_samples there; .bench_data/ is git-ignored), else 12 synthetic videos.
# bench_loss.py measures the CPU only and is not run here. Each step has its own time limit, so a hung
# compile still leaves the other figures.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
logs="${1:-/tmp/coreecho_gpu_benchmarks}"
mkdir -p "$logs"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$logs/device.log"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$logs/device.log"
root=()
[ -f .bench_data/echonet_samples/FileList.csv ] && root=(--root .bench_data/echonet_samples)
timeout 120 python3 -m pytest -q tests/test_cuda.py 2>&1 | tee "$logs/test_cuda.log"
timeout 300 python3 benchmarks/bench_train_step.py --compile 2>&1 | tee "$logs/bench_train_step.log"
timeout 120 python3 benchmarks/bench_test.py --batch_size 8 "${root[@]}" 2>&1 | tee "$logs/bench_test.log"
exit 0
