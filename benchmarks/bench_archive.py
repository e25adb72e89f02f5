"""predict.py on an echo archive: videos/s against data-loader workers and torchrun processes, peak memory, and
how long listing a large export and skipping an already-scored one on --resume take.

1. Scoring: an export of --studies study folders, each with --cines DICOM cine loops (a synthetic EchoNet video
   enlarged 2x into a 320x240 MONOCHROME2 frame at 30 fps, so the sector crop, resize and 30 -> 50 fps
   resampling do real work), one single-frame image and one structured report (skipped). `python predict.py`
   runs on it as a subprocess for each --workers value (one process) and each --processes value (torchrun,
   --workers 0 per process); printed: loops scored per second of scoring (OUT.log's "this run" time, without
   the interpreter start) and of the whole command, and the peak resident memory of the busiest process.
2. Listing and resume: --list extension-less DICOM stubs (1000 per study folder) are listed, OUT.csv is written
   as if every file had been skipped, and `predict.py --resume` over them is timed (and its peak memory).

    python benchmarks/bench_archive.py [--device cpu|cuda] [--model uniformer_tiny --frames 16 --frequency 4]
        [--studies 12 --cines 4] [--workers 0 2 4] [--processes 1 2] [--list 100000]
"""
import argparse
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the project's packages and the tests' DICOM writer
from datasets import make_synthetic_echonet  # noqa: E402
from datasets.sources.any_video import expand_inputs  # noqa: E402
from datasets.video import decode_video  # noqa: E402
from models import get_feature_extractor, get_shallow_mlp_head  # noqa: E402
from conftest import write_dicom  # noqa: E402  (the tests' DICOM writer)
from scoring.options import add_scoring_args, result_settings  # noqa: E402
from scoring.results_stream import write_settings  # noqa: E402
from scoring.rows import CSV_COLUMNS  # noqa: E402
from utils.files.checkpoint import save_best  # noqa: E402

STUB = bytes(128) + b"DICM"


def write_export(folder: Path, videos, studies: int, cines: int) -> int:
    """Study folders of cine loops, a still and a report; returns the number of loops."""
    k = 0
    for s in range(studies):
        study = folder / f"STUDY{s:04d}"
        for c in range(cines):
            frames = decode_video(videos[k % len(videos)])[..., 1]
            keep = np.floor(np.arange(int(len(frames) * 30 / 50)) * 50 / 30 + 1e-6).astype(int)
            screen = np.zeros((len(keep), 240, 320), np.uint8)
            screen[:, 8:232, 48:272] = np.repeat(np.repeat(frames[keep], 2, axis=1), 2, axis=2)
            (study / "SERIES1").mkdir(parents=True, exist_ok=True)
            write_dicom(study / "SERIES1" / f"IM{c:04d}", screen, FrameTime=1000 / 30)
            k += 1
        write_dicom(study / "STILL0001", screen[:1])
        shutil.copy(get_testdata_file("reportsi.dcm"), study / "SR0001")  # no image: skipped from its header
    return k


def run(command, env=None):
    """(wall seconds, peak resident MiB of the busiest process of `command`, its output)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    output = process.communicate()[0]
    seconds = time.perf_counter() - start
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{output[-3000:]}")
    peak = max((int(m) for m in re.findall(r"peak_rss_kib=(\d+)", output)), default=0)
    return seconds, peak / 1024, output


def scoring(opt, export, weights, out, n_loops):
    common = ["--pretrained_weights", str(weights), "--model", opt.model, "--frames", str(opt.frames), "--frequency",
              str(opt.frequency), "--device", opt.device, "--output", str(out), str(export)]
    runs = [(f"1 process, {w} workers", [sys.executable, str(Path(__file__)), "--child", *common, "--num_workers",
                                         str(w)]) for w in opt.workers]
    runs += [(f"{p} processes (torchrun), 0 workers",
              [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(p), str(Path(__file__)),
               "--child", *common, "--num_workers", "0"]) for p in opt.processes if p > 1]
    print(f"{'run':34s} {'loops/s scoring':>15s} {'loops/s command':>15s} {'peak RSS MiB':>12s}")
    for label, command in runs:
        seconds, peak, _ = run(command, {"OMP_NUM_THREADS": str(opt.threads)} if opt.threads else None)
        log = Path(str(out)[:-len(".csv")] + ".log").read_text()
        scored = int((pd.read_csv(out)["status"] == "scored").sum())
        busy = float(re.findall(r"this run: \d+ files in ([\d.]+) s", log)[-1])
        assert scored == n_loops, (scored, n_loops)
        print(f"{label:34s} {scored / busy:15.2f} {scored / seconds:15.2f} {peak:12.0f}")


def listing(opt, folder, weights):
    for s in range(opt.list // 1000):
        study = folder / f"STUDY{s:05d}"
        study.mkdir(parents=True)
        for i in range(1000):
            (study / f"IM{i:05d}").write_bytes(STUB)
    start = time.perf_counter()
    paths = [str(p) for p in expand_inputs([folder])]
    listed = time.perf_counter() - start
    out = folder.parent / "resume.csv"
    rows = []
    for path in paths:
        info = os.stat(path)
        rows.append({"file": path, "n_clips": 0, "status": "skipped", "error": "no image", "file_size": info.st_size,
                     "file_mtime_ns": info.st_mtime_ns})
    pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(out, index=False)
    args = ["--pretrained_weights", str(weights), "--model", opt.model, "--frames", str(opt.frames), "--frequency",
            str(opt.frequency), "--device", "cpu", "--output", str(out), str(folder)]
    write_settings(str(out)[:-len(".csv")] + ".settings.json", settings_of(args))
    seconds, peak, output = run([sys.executable, str(Path(__file__)), "--child", *args, "--resume"])
    assert f"--resume: {len(paths)} file(s) already done, 0 left" in output, output[-2000:]
    print(f"listing {len(paths)} files (expand_inputs): {listed:.2f} s; predict.py --resume over them, all done "
          f"already: {seconds:.1f} s for the whole command (peak RSS {peak:.0f} MiB)")


def settings_of(args):
    """The settings predict.py keeps beside OUT.csv when run with `args`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--pretrained_weights")
    add_scoring_args(parser)
    return result_settings(parser.parse_known_args(args)[0])  # --output and the inputs do not count


def child():
    """predict.py itself, then this process's peak resident memory on stderr."""
    import resource

    sys.argv = ["predict.py", *sys.argv[2:]]
    try:
        runpy.run_path(str(ROOT / "predict.py"), run_name="__main__")
    finally:
        print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="uniformer_tiny")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--frequency", type=int, default=4)
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--cines", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--list", type=int, default=100000, help="files listed and skipped on --resume (0: none)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of each process")
    opt = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = expand_inputs([make_synthetic_echonet(tmp / "synthetic", n=12, seed=0) / "Videos"])
        n_loops = write_export(tmp / "export", videos, opt.studies, opt.cines)
        torch.manual_seed(0)
        model = get_feature_extractor(opt.model)
        weights = tmp / "best.pth"
        save_best(weights, model, get_shallow_mlp_head(model.head.in_features), 0, 0.0)
        print(f"{opt.device}, torch {torch.__version__}, {os.cpu_count()} CPUs; {opt.model}, clips {opt.frames}x"
              f"{opt.frequency}; {opt.studies} studies x ({opt.cines} loops 320x240 30 fps + a still + a report) = "
              f"{n_loops} loops, {opt.studies * (opt.cines + 2)} files")
        scoring(opt, tmp / "export", weights, tmp / "out" / "ef.csv", n_loops)
        if opt.list:
            listing(opt, tmp / "listing" / "export", weights)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child()
    else:
        main()
