"""Stage-1 training step of UniFormer-S (two views x batch, 36x112x112 clips): clips/s and peak memory,
fp32 eager with the plain (math) attention kernel vs. bf16 autocast + fused SDPA (+ channels_last_3d,
+ the depthwise 3D convolutions run as 2D ones (`depthwise='conv2d'`, or 'auto': the 5x5x5 ones only),
+ torch.compile), side by side in one run on whatever device is present.

Peak memory: on a GPU the allocator's peak; on the CPU each configuration runs in a fresh process and
the peak resident memory (VmHWM) above what the process held before building the model counts.

`--layers` instead times forward + backward of each depthwise layer shape of UniFormer-S, nn.Conv3d vs.
the conv2d implementation, in fp32 and bf16 autocast, with their errors against a float64 conv3d.

    python benchmarks/bench_train_step.py                 # GPU: batch 16 (32 clips); CPU: batch 1
    python benchmarks/bench_train_step.py --batch_size 2 --steps 3 --compile
    python benchmarks/bench_train_step.py --layers        # GPU: 32 clips per layer; CPU: 2
"""
import argparse
import contextlib
import copy
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from losses import RnCLoss  # noqa: E402
from models import get_feature_extractor, get_shallow_mlp_head, place_model  # noqa: E402
from models.uniformer import DepthwiseConv3d  # noqa: E402
from utils.engine.amp import prepare_batch  # noqa: E402
from proc_memory import status_kib  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

BF16 = dict(dtype=torch.bfloat16, math_attention=False, channels_last=False, compile=False, depthwise="conv3d")
CONFIGURATIONS = [
    ("fp32 eager, math attention", dict(BF16, dtype=None, math_attention=True)),
    ("bf16 autocast + SDPA", BF16),
    ("bf16 + SDPA + channels_last_3d", dict(BF16, channels_last=True)),
    ("bf16 + SDPA + conv2d depthwise", dict(BF16, depthwise="conv2d")),
    ("bf16 + SDPA + auto depthwise (k5 conv2d)", dict(BF16, depthwise="auto")),
    ("bf16 + SDPA + channels_last + compile", dict(BF16, channels_last=True, compile=True)),
    ("bf16 + SDPA + auto dw + compile", dict(BF16, depthwise="auto", compile=True)),
]
# Depthwise layers of UniFormer-S on 36x112x112 clips: (stage, channels, frames, size, kernel, layers per model).
DEPTHWISE_LAYERS = [(1, 64, 18, 28, 3, 3), (1, 64, 18, 28, 5, 3), (2, 128, 18, 14, 3, 4), (2, 128, 18, 14, 5, 4),
                    (3, 320, 18, 7, 3, 8), (4, 512, 18, 3, 3, 3)]


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
    model = place_model(get_feature_extractor(opt.model, depthwise=config["depthwise"]), device,
                        config["channels_last"], train=True)
    model.head.requires_grad_(False)
    regressor = place_model(get_shallow_mlp_head(model.head.in_features), device, train=True)
    step_model = torch.compile(model) if config["compile"] else model
    criterion = RnCLoss(temperature=1.0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    optimizer_regressor = torch.optim.AdamW(regressor.parameters(), lr=1e-4)
    images = torch.randn(2 * opt.batch_size, 3, opt.frames, 112, 112, device=device)
    images = prepare_batch(images, device, config["channels_last"])
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


def tap_sum_in_low_precision(x, weight, bias):
    """The conv2d formulation with the taps' outputs added in the autocast dtype (for its error only)."""
    k, C, T = weight.shape[2], x.shape[1], x.shape[2]
    padded = F.pad(x, (0, 0, 0, 0, k // 2, k // 2))
    out = 0
    for dt in range(k):
        frames = padded[:, :, dt:dt + T].transpose(1, 2).flatten(0, 1)  # [B*T, C, H, W]
        out = out + F.conv2d(frames, weight[:, :, dt], bias if dt == 0 else None, padding=k // 2, groups=C)
    return out.unflatten(0, (x.shape[0], T)).transpose(1, 2)


def relative_error(value, reference):
    return ((value.double() - reference).abs().max() / reference.abs().max()).item()


def time_layer(layer, x, grad_out, dtype, steps, warmup, device):
    """Median ms of forward + backward of `layer` under autocast `dtype`, and the last output and gradients."""
    x = x.clone().requires_grad_()
    times = []
    for _ in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            out = layer(x)
        grads = torch.autograd.grad(out, (x, layer.weight), grad_out.to(out.dtype))
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[warmup:]), out, grads


def layer_errors(layers, x, grad_out, dtype):
    """Relative errors of each implementation against a float64 conv3d: (output, worst gradient)."""
    reference = copy.deepcopy(layers["conv3d"]).double()
    x64 = x.double().requires_grad_()
    ref_out = reference(x64)
    ref_grads = torch.autograd.grad(ref_out, (x64, reference.weight), grad_out.double())
    errors = {}
    for impl, layer in layers.items():
        _, out, grads = time_layer(layer, x, grad_out, dtype, steps=1, warmup=0, device=x.device)
        errors[impl] = (relative_error(out, ref_out), max(relative_error(g, r) for g, r in zip(grads, ref_grads)))
    if dtype != torch.float32:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype):
            out = tap_sum_in_low_precision(x, layers["conv3d"].weight, layers["conv3d"].bias)
        errors["bf16-sum"] = relative_error(out, ref_out)
    return errors


def bench_layers(opt, device):
    """Forward + backward of every depthwise layer shape, nn.Conv3d vs conv2d, fp32 and bf16 autocast."""
    clips, steps, warmup = 2 * opt.batch_size, max(opt.steps, 5), max(opt.warmup, 1)
    print(f"depthwise layers of UniFormer-S, {clips} clips, forward + backward, median of {steps} after {warmup} "
          f"warm-up\nerrors (on 2 of the clips): max |value - float64 conv3d| / max |float64 conv3d| of the "
          f"output, and the worst of the input and weight gradients; bf16-sum = the taps' outputs added in bf16")
    print(f"{'stage C T size k':20s} {'dtype':5s} {'conv3d ms':>10s} {'conv2d ms':>10s} {'speed-up':>9s} "
          f"{'out err 3d':>11s} {'out err 2d':>11s} {'grad err 3d':>12s} {'grad err 2d':>12s} {'bf16-sum':>9s}",
          flush=True)
    totals = {}
    for stage, C, T, size, k, count in DEPTHWISE_LAYERS:
        torch.manual_seed(0)
        layers = {impl: DepthwiseConv3d(C, k, impl).to(device) for impl in ("conv3d", "conv2d")}
        layers["conv2d"].load_state_dict(layers["conv3d"].state_dict())
        x = torch.randn(clips, C, T, size, size, device=device)
        grad_out = torch.randn_like(x)
        for dtype in (torch.float32, torch.bfloat16):
            ms = {impl: time_layer(layer, x, grad_out, dtype, steps, warmup, device)[0]
                  for impl, layer in layers.items()}
            for impl in layers:
                totals[impl, dtype] = totals.get((impl, dtype), 0.0) + count * ms[impl]
            errors = layer_errors(layers, x[:2], grad_out[:2], dtype)  # float64 depthwise is slow on GPUs
            summed = f"{errors['bf16-sum']:.1e}" if "bf16-sum" in errors else "-"
            (o3, g3), (o2, g2) = errors["conv3d"], errors["conv2d"]
            print(f"{stage} {C:4d} {T:3d} {size:3d}x{size:<3d} {k}   {str(dtype)[6:]:5s} {ms['conv3d']:10.2f} "
                  f"{ms['conv2d']:10.2f} {ms['conv3d'] / ms['conv2d']:8.2f}x {o3:11.1e} {o2:11.1e} {g3:12.1e} "
                  f"{g2:12.1e} {summed:>9s}", flush=True)
    for dtype in (torch.float32, torch.bfloat16):
        t3, t2 = totals["conv3d", dtype], totals["conv2d", dtype]
        print(f"all 25 depthwise layers of UniFormer-S, {str(dtype)[6:]}: conv3d {t3:.1f} ms, conv2d {t2:.1f} ms "
              f"({t3 / t2:.2f}x)")


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
    parser.add_argument("--compile", action="store_true", help="also measure the torch.compile configurations")
    parser.add_argument("--layers", action="store_true",
                        help="time the depthwise layers (nn.Conv3d vs conv2d) instead of training steps")
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
    if opt.layers:
        print(f"device: {name} | torch {torch.__version__}")
        bench_layers(opt, device)
        return
    print(f"device: {name} | torch {torch.__version__} | {opt.model}, 2 views x batch {opt.batch_size}, "
          f"{opt.frames}x112x112, median of {opt.steps} steps after {opt.warmup} warm-up")
    configs = [(i, label, config) for i, (label, config) in enumerate(CONFIGURATIONS)
               if opt.compile or not config["compile"]]
    # Each row is printed as soon as it is measured, so a time limit still leaves the finished ones.
    print(f"{'configuration':40s} {'clips/s':>9s} {'speed-up':>9s} {'peak GiB':>9s} {'memory ratio':>13s}", flush=True)
    base = None
    for index, label, config in configs:
        try:
            clips_per_s, peak = measure(config, opt, device) if gpu else measure_in_fresh_process(index, opt)
        except Exception as error:  # e.g. no compiler for torch.compile: report it and measure the others
            print(f"{label}: failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            continue
        if base is None:
            if index != 0:
                sys.exit("the fp32 baseline failed, so there is nothing to compare with")
            base = (clips_per_s, peak)
        print(f"{label:40s} {clips_per_s:9.2f} {clips_per_s / base[0]:8.2f}x {peak:9.2f} {peak / base[1]:12.2f}x",
              flush=True)
    if not gpu:
        print("peak GiB (CPU): resident memory above the process's own before the model was built")


if __name__ == "__main__":
    main()
