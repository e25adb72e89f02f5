"""Process memory from /proc/self/status (Linux): the benchmarks' CPU stand-in for CUDA's peak counters."""
from pathlib import Path


def status_kib(field: str) -> int:
    """A /proc/self/status field in KiB: "VmRSS" (resident now) or "VmHWM" (peak resident since exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} line in /proc/self/status (Linux only)")
