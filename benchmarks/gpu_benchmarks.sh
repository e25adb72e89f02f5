#!/usr/bin/env bash
# The GPU checks in one run (about 8 minutes on an H100/H200, at most 9.5 with every step at its limit): the
# CUDA tests (tests/scenarios/test_cuda.py, tests/models/test_depthwise.py), then the benchmarks of benchmarks/RESULTS.md: the
# whole pipeline (stage 1 -> stage 2 -> test as the real scripts, released-style vs fastest settings, projected
# to the paper's schedule), the stage-1 training step (fp32 eager vs bf16 + SDPA, channels_last, conv2d/auto
# depthwise, compile), the depthwise layers (nn.Conv3d vs the conv2d implementation) and the three-clip test.
# Needs no wandb. Usage: bash benchmarks/gpu_benchmarks.sh [OUT_DIR]   (logs are written to OUT_DIR as they grow)
# The test benchmark uses the real example videos in .bench_data/echonet_samples when that folder exists
# (copy ../shared/data/echonet_samples there; .bench_data/ is git-ignored), else 12 synthetic videos.
# bench_loss.py measures the CPU only and is not run here. Each step has its own time limit and the
# benchmarks print each row as soon as it is measured, so a hung compile still leaves the other figures.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
logs="${1:-/tmp/coreecho_gpu_benchmarks}"
mkdir -p "$logs"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$logs/device.log"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$logs/device.log"
root=()
[ -f .bench_data/echonet_samples/FileList.csv ] && root=(--root .bench_data/echonet_samples)
timeout 120 python3 -m pytest -q tests/scenarios/test_cuda.py tests/models/test_depthwise.py 2>&1 | tee "$logs/test_cuda.log"
# Not measured on a GPU yet first (the whole pipeline, the step with conv2d/auto depthwise), then what
# RESULTS.md already has figures for (the depthwise layers, the three-clip test).
timeout 200 python3 benchmarks/bench_pipeline.py --videos 160 --timeout 90 --json "$logs/bench_pipeline.json" 2>&1 \
    | tee "$logs/bench_pipeline.log"
timeout 150 python3 benchmarks/bench_train_step.py --compile --steps 6 --warmup 2 2>&1 \
    | tee "$logs/bench_train_step.log"
timeout 40 python3 benchmarks/bench_train_step.py --layers 2>&1 | tee "$logs/bench_depthwise_layers.log"
timeout 60 python3 benchmarks/bench_test.py --batch_size 8 "${root[@]}" 2>&1 | tee "$logs/bench_test.log"
exit 0
