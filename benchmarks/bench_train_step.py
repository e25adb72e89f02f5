"""Stage-1 training step of UniFormer-S (two views x batch, 36x112x112 clips): clips/s and peak memory,
fp32 eager with the plain (math) attention kernel vs. bf16 autocast + fused SDPA (+ torch.compile),
side by side in one run on whatever device is present.

Peak memory: on a GPU the allocator's peak; on the CPU each configuration runs in a fresh process and
the peak resident memory (VmHWM) above what the process held before building the model counts.

    python benchmarks/bench_train_step.py                 # GPU: batch 16 (32 clips); CPU: batch 1
    python benchmarks/bench_train_step.py --batch_size 2 --steps 3 --compile
"""
import argparse
import contextlib
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from losses import RnCLoss  # noqa: E402
from models import get_feature_extractor, get_shallow_mlp_head  # noqa: E402
from proc_memory import status_kib  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

CONFIGURATIONS = [
    ("fp32 eager, math attention", dict(dtype=None, math_attention=True, channels_last=False, compile=False)),
    ("bf16 autocast + SDPA", dict(dtype=torch.bfloat16, math_attention=False, channels_last=False, compile=False)),
    ("bf16 + SDPA + channels_last_3d", dict(dtype=torch.bfloat16, math_attention=False, channels_last=True,
                                            compile=False)),
    ("bf16 + SDPA + channels_last + compile", dict(dtype=torch.bfloat16, math_attention=False, channels_last=True,
                                                   compile=True)),
]


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(config, opt, device):
    """(clips/s, peak GiB) of one configuration."""
    # Free the previous configuration first, so each peak counts only this one's memory.
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    else:
        resident_before = status_kib("VmRSS")
    torch.manual_seed(0)
    model = get_feature_extractor(opt.model).to(device)
    model.head.requires_grad_(False)
    regressor = get_shallow_mlp_head(model.head.in_features).to(device)
    if config["channels_last"]:
        model = model.to(memory_format=torch.channels_last_3d)
    step_model = torch.compile(model) if config["compile"] else model
    criterion = RnCLoss(temperature=1.0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    optimizer_regressor = torch.optim.AdamW(regressor.parameters(), lr=1e-4)
    images = torch.randn(2 * opt.batch_size, 3, opt.frames, 112, 112, device=device)
    if config["channels_last"]:
        images = images.contiguous(memory_format=torch.channels_last_3d)
    labels = torch.rand(opt.batch_size, 1, device=device) * 60 + 20

    def step():
        kernel = sdpa_kernel(SDPBackend.MATH) if config["math_attention"] else contextlib.nullcontext()
        amp = torch.autocast(device.type, dtype=config["dtype"]) if config["dtype"] else contextlib.nullcontext()
        with kernel:
            with amp:
                _, embeddings = step_model(images)
            features = torch.stack(embeddings.float().split(opt.batch_size), dim=1)
            loss = criterion(features, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            predictions = regressor(features.detach().flatten(0, 1))
            loss_reg = torch.nn.functional.l1_loss(predictions, labels.repeat_interleave(2, 0))
            optimizer_regressor.zero_grad(set_to_none=True)
            loss_reg.backward()
            optimizer_regressor.step()

    for _ in range(opt.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(opt.steps):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = (status_kib("VmHWM") - resident_before) / 2**20
    return 2 * opt.batch_size / statistics.median(times), peak


def measure_in_fresh_process(index, opt):
    """CPU: VmHWM never goes down, so each configuration gets its own process."""
    command = [sys.executable, __file__, "--config-child", str(index), "--model", opt.model,
               "--batch_size", str(opt.batch_size), "--frames", str(opt.frames), "--steps", str(opt.steps),
               "--warmup", str(opt.warmup)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit status {result.returncode}")
    clips_per_s, peak = result.stdout.split()[-2:]
    return float(clips_per_s), float(peak)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="uniformer_small")
    parser.add_argument("--batch_size", type=int, default=None, help="videos per step (2 clips each)")
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="also measure bf16 + SDPA + channels_last + compile")
    parser.add_argument("--config-child", type=int, default=None, help=argparse.SUPPRESS)
    opt = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if opt.config_child is not None:
        print(*measure(CONFIGURATIONS[opt.config_child][1], opt, device))
        return
    gpu = device.type == "cuda"
    opt.batch_size = opt.batch_size or (16 if gpu else 1)
    opt.steps = opt.steps or (10 if gpu else 3)
    opt.warmup = opt.warmup if opt.warmup is not None else (3 if gpu else 1)
    if gpu:
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name} | torch {torch.__version__} | {opt.model}, 2 views x batch {opt.batch_size}, "
          f"{opt.frames}x112x112, median of {opt.steps} steps after {opt.warmup} warm-up")

    configs = CONFIGURATIONS if opt.compile else CONFIGURATIONS[:3]
    results = []
    for index, (label, config) in enumerate(configs):
        try:
            clips_per_s, peak = measure(config, opt, device) if gpu else measure_in_fresh_process(index, opt)
        except Exception as error:  # e.g. no compiler for torch.compile: report it and measure the others
            print(f"{label}: failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            continue
        results.append((label, clips_per_s, peak))
    if not results or results[0][0] != configs[0][0]:
        sys.exit("the fp32 baseline failed, so there is nothing to compare with")
    base_speed, base_peak = results[0][1], results[0][2]
    print(f"{'configuration':38s} {'clips/s':>9s} {'speed-up':>9s} {'peak GiB':>9s} {'memory ratio':>13s}")
    for label, clips_per_s, peak in results:
        print(f"{label:38s} {clips_per_s:9.2f} {clips_per_s / base_speed:8.2f}x {peak:9.2f} {peak / base_peak:12.2f}x")
    if not gpu:
        print("peak GiB (CPU): resident memory above the process's own before the model was built")


if __name__ == "__main__":
    main()
