"""Forward + backward time (and peak extra memory) of the vectorised RnCLoss against a
straightforward implementation that loops over the n-1 positive columns.

    python benchmarks/bench_loss.py            # bs 16, 64, 256; d = 512; float32; CPU
    python benchmarks/bench_loss.py --quick    # bs 16, 64 only
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from losses import RnCLoss  # noqa: E402
from proc_memory import status_kib  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def loop_rnc_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """The definition, one positive column at a time (what a direct implementation does)."""
    z = torch.cat([features[:, 0], features[:, 1]], dim=0)
    y = labels.repeat(2, 1)
    n = z.shape[0]
    label_dist = (y[:, None, :] - y[None, :, :]).abs().sum(dim=-1)
    logits = -(z[:, None, :] - z[None, :, :]).norm(dim=-1) / temperature  # [n, n, d] intermediate
    keep = ~torch.eye(n, dtype=torch.bool)
    logits = logits[keep].view(n, n - 1)
    label_dist = label_dist[keep].view(n, n - 1)
    # Shift by the row max so exp() cannot underflow to zero for every negative.
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    exp_logits = logits.exp()
    loss = logits.new_zeros(())
    for col in range(n - 1):
        negatives = (label_dist >= label_dist[:, col : col + 1]).to(logits.dtype)
        log_prob = logits[:, col] - (negatives * exp_logits).sum(dim=1).log()
        loss = loss - log_prob.sum() / (n * (n - 1))
    return loss


IMPLEMENTATIONS = {"vectorised": RnCLoss(temperature=2.0), "loop": loop_rnc_loss}


def make_inputs(bs: int, dim: int):
    gen = torch.Generator().manual_seed(bs)
    features = torch.randn(bs, 2, dim, generator=gen)
    labels = torch.randint(10, 80, (bs, 1), generator=gen).float()  # EF-like integers, with ties
    return features, labels


def forward_backward(impl, features, labels) -> float:
    features = features.clone().requires_grad_(True)
    loss = impl(features, labels)
    loss.backward()
    return loss.item()


def median_ms(features, labels, repeats: int) -> dict:
    """Median forward+backward time per implementation. Runs alternate between the
    implementations so that load from other processes hits both alike."""
    times = {name: [] for name in IMPLEMENTATIONS}
    for name, impl in IMPLEMENTATIONS.items():
        forward_backward(impl, features, labels)  # warm-up
    for _ in range(repeats):
        for name, impl in IMPLEMENTATIONS.items():
            start = time.perf_counter()
            forward_backward(impl, features, labels)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def peak_extra_mib(name: str, bs: int, dim: int) -> float:
    """Peak RSS growth of one forward + backward, measured in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", name, str(bs), str(dim)],
        capture_output=True, text=True, check=True,
    )
    return float(out.stdout.strip())


def memory_child(name: str, bs: int, dim: int) -> None:
    features, labels = make_inputs(bs, dim)
    forward_backward(IMPLEMENTATIONS[name], *make_inputs(2, dim))  # load kernels before measuring
    # VmHWM restarts with every exec; ru_maxrss would carry over the parent's peak.
    before = status_kib("VmHWM")
    forward_backward(IMPLEMENTATIONS[name], features, labels)
    print((status_kib("VmHWM") - before) / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only bs 16 and 64")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--memory-child", nargs=3, metavar=("IMPL", "BS", "DIM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, bs, dim = args.memory_child
        memory_child(name, int(bs), int(dim))
        return

    sizes = [16, 64] if args.quick else [16, 64, 256]
    print(f"RnCLoss forward+backward, float32, CPU ({torch.get_num_threads()} threads), d={args.dim}, "
          f"median of {args.repeats}; torch {torch.__version__}")
    header = f"{'bs':>4} {'n':>5} {'loop ms':>10} {'vector ms':>10} {'speed-up':>9} {'|dloss|':>9}"
    if not args.no_memory:
        header += f" {'loop MiB':>9} {'vector MiB':>10}"
    print(header)
    for bs in sizes:
        features, labels = make_inputs(bs, args.dim)
        gap = abs(forward_backward(IMPLEMENTATIONS["loop"], features, labels)
                  - forward_backward(IMPLEMENTATIONS["vectorised"], features, labels))
        ms = median_ms(features, labels, args.repeats)
        loop_ms, vec_ms = ms["loop"], ms["vectorised"]
        row = f"{bs:>4} {2 * bs:>5} {loop_ms:>10.2f} {vec_ms:>10.2f} {loop_ms / vec_ms:>8.1f}x {gap:>9.1e}"
        if not args.no_memory:
            row += f" {peak_extra_mib('loop', bs, args.dim):>9.0f} {peak_extra_mib('vectorised', bs, args.dim):>10.0f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
