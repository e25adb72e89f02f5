"""The whole paper pipeline, timed: stage 1 -> stage 2 -> three-clip test, run as the real scripts
(subprocesses) on a generated EchoNet-sized data set, for (a) released-style settings (fp32, no cache, nn.Conv3d
depthwise) and (b) this project's fast ones (bf16, the decoded-video cache, `--depthwise auto`).

Every stage runs one epoch; the speed figures come from the scripts' own timing files, and from the seconds per
clip of every phase the wall time of the paper's full schedule is projected (`project`, pipeline_figures.py).
The flags of each configuration: `config_flags`; the schedule and its projection: pipeline_figures.py.

    python benchmarks/bench_pipeline.py                   # GPU: UniFormer-S, 36 frames, 400 videos
    python benchmarks/bench_pipeline.py --quick           # CI smoke test (CPU, tiny model, ~30 s)
    python benchmarks/bench_pipeline.py --videos 1000 --json pipeline.json --data_dir /tmp/echonet_1000

On the CPU it runs a tiny UniFormer on 8-frame clips: those figures exercise the pipeline, not a GPU run.
"""
import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the project's datasets/ and utils/ (forked workers inherit it)

from pipeline_figures import PHASES, project, read_json, stage_figures, test_figures  # noqa: E402


# ---------------------------------------------------------------- data

def _make_part(out_dir, n, seed):
    from datasets.synthetic.echonet import make_synthetic_echonet  # in the worker: cv2 is not needed in the parent
    make_synthetic_echonet(out_dir, n=n, seed=seed)


def _fill_cache(video_and_cache):
    from datasets import open_cached
    open_cached(*video_and_cache)


def prepare_dataset(root: Path, videos: int, processes: int) -> str:
    """Make `root` an EchoNet-format set of `videos` synthetic videos, written by `processes` workers in
    parts (seeds 1, 2, ... so file names differ) and merged. A set already there with that many videos is
    reused; a folder holding other data (e.g. the real EchoNet-Dynamic) is used as it is, never deleted.
    Returns what was done, for the log."""
    import pandas as pd
    if (root / "FileList.csv").exists():
        names = pd.read_csv(root / "FileList.csv")["FileName"].astype(str)
        if not names.str.startswith("0XSYN").all():
            return f"using the data set in {root} as it is ({len(names)} videos)"
        if len(names) == videos:
            return f"reusing the {videos} generated videos in {root}"
    elif root.exists() and any(entry.name not in ("parts", "Videos") for entry in root.iterdir()):
        sys.exit(f"{root} holds other files and no FileList.csv; choose an empty or new --data_dir")
    start = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)  # only a generated set (or an interrupted generation) gets here
    parts = max(1, min(processes, videos // 6))  # each part holds >= 6 videos (2 per split)
    sizes = [videos // parts + (i < videos % parts) for i in range(parts)]
    part_dirs = [root / "parts" / str(i) for i in range(parts)]
    with multiprocessing.get_context("fork").Pool(parts) as pool:
        pool.starmap(_make_part, [(d, n, i + 1) for i, (d, n) in enumerate(zip(part_dirs, sizes))])
    (root / "Videos").mkdir(parents=True)
    for d in part_dirs:
        for video in (d / "Videos").iterdir():
            os.replace(video, root / "Videos" / video.name)
    for name in ("VolumeTracings.csv", "FileList.csv"):  # FileList.csv last: it marks a complete set
        pd.concat([pd.read_csv(d / name) for d in part_dirs]).to_csv(root / name, index=False)
    shutil.rmtree(root / "parts")
    return f"generated {videos} videos in {root} in {time.perf_counter() - start:.1f} s with {parts} processes"


def fill_cache(root: Path, cache_dir: Path, processes: int) -> float:
    """Decode every video into the cache with `processes` workers; seconds per video."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    videos = sorted((root / "Videos").glob("*.avi"))
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(max(1, processes)) as pool:
        pool.map(_fill_cache, [(v, cache_dir) for v in videos])
    return (time.perf_counter() - start) / len(videos)


# ---------------------------------------------------------------- runs

def supported_flags() -> set:
    """The optional flags the training scripts list in --help (some arrive later than this benchmark)."""
    wanted = ("--depthwise", "--channels_last", "--cache_dir", "--compile", "--amp")
    try:
        from models.options import training_parser
        help_text = training_parser(stage=1).format_help()
    except Exception:  # noqa: BLE001 - the options module changed: ask the script itself
        help_text = subprocess.run([sys.executable, "train_first_stage.py", "--help"], cwd=REPO,
                                   capture_output=True, text=True).stdout
    return {flag for flag in wanted if flag in help_text}


def config_flags(opt, cache_dir: Path, supported: set) -> dict:
    """Flags of the two configurations: {name: (training flags, test flags)}; unsupported ones dropped."""
    released = ["--amp", "none", "--num_workers", str(opt.num_workers)]
    best = ["--amp", "bf16", "--num_workers", str(opt.best_num_workers), "--cache_dir", str(cache_dir),
            "--depthwise", opt.best_depthwise, *opt.best_extra.split()]
    configs = {}
    for name, flags in (("released", released), ("best", best)):
        kept, i = [], 0
        while i < len(flags):  # drop a flag (and its value) the scripts do not know yet
            takes_value = i + 1 < len(flags) and not flags[i + 1].startswith("--")
            if flags[i] in supported or flags[i] == "--num_workers":
                kept += flags[i:i + 1 + takes_value]
            i += 1 + takes_value
        configs[name] = (kept, [f for f in kept if f != "--compile"])  # the test script does not compile
    return configs


def run_script(command, log_path: Path, timeout: float, threads=None) -> float:
    """Run one script, its output into `log_path`; wall seconds. Raises RuntimeError with its last lines."""
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            result = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {timeout:.0f} s (log: {log_path})") from None
    if result.returncode != 0:
        tail = " | ".join(log_path.read_text().strip().splitlines()[-3:])
        raise RuntimeError(f"exit status {result.returncode}: {tail} (log: {log_path})")
    return time.perf_counter() - start


def run_pipeline(name, train_flags, test_flags, opt, data: Path, out: Path) -> dict:
    """Stage 1 -> stage 2 -> test with one configuration; the figures read from their timing files."""
    out.mkdir(parents=True, exist_ok=True)
    model = ["--data_folder", str(data), "--model", opt.model, "--frames", str(opt.frames),
             "--frequency", str(opt.frequency)]
    training = [*model, "--batch_size", str(opt.batch_size), "--epochs", str(opt.epochs), "--aug",
                "--save_root", str(out), *train_flags]
    commands = {
        "stage1": ["train_first_stage.py", *training, "--run_name", "stage1", "--temp", "1.0"],
        "stage2": ["train_second_stage.py", *training, "--run_name", "stage2",
                   "--pretrained_weights", str(out / "stage1" / "best.pth")],
        "test": ["test_with_three_clips.py", *model, "--pretrained_weights", str(out / "stage2" / "best.pth"),
                 "--path_save_test_files", str(out / "test" / "test.pkl"), *test_flags],
    }
    result = {"flags": train_flags, "wall_seconds": {}, "errors": []}
    for stage, command in commands.items():
        try:
            seconds = run_script([sys.executable, *command], out / f"{stage}.log", opt.timeout, opt.threads)
        except RuntimeError as error:
            result["errors"].append(f"{name} {stage}: {error}")
            print(f"{name} {stage} failed: {error}", flush=True)
            break
        result["wall_seconds"][stage] = seconds
        print(f"{name} {stage}: {seconds:.0f} s", flush=True)  # progress, in case a time limit cuts the run
    figures, missing = {}, []
    for stage in ("stage1", "stage2"):
        stage_values, stage_missing = stage_figures(read_json(out / stage / "timing.json"), stage)
        figures.update(stage_values)
        missing += stage_missing
    test_values, test_missing = test_figures(read_json(out / "test" / "metrics.json"))
    figures.update(test_values)
    result.update(figures=figures, missing=[f"{name}: {m}" for m in missing + test_missing])
    return result


# ---------------------------------------------------------------- report

ROWS = [  # (label, key, how to show it)
    ("stage-1 training clips/s", "stage1_train", "rate"),
    ("stage-2 training clips/s", "stage2_train", "rate"),
    ("stage-1 validation clips/s", "stage1_val", "rate"),
    ("final report clips/s (stage 1)", "stage1_report", "rate"),
    ("three-clip test clips/s", "test", "rate"),
    ("data-loader wait, stage 1 (%)", "stage1_wait_share", "percent"),
    ("data-loader wait, stage 2 (%)", "stage2_wait_share", "percent"),
    ("peak GPU memory, stage 1 (GiB)", "stage1_peak_gib", "plain"),
    ("cache fill, s per video", "cache_fill", "plain"),
]
PROJECTED = [("projected stage 1 (h)", "stage1"), ("projected stage 2 (h)", "stage2"),
             ("projected three-clip test (h)", "test"), ("projected whole pipeline (h)", "total")]


def summarise(result: dict, cache_seconds_per_video: float) -> dict:
    """Shown values (clips/s, %, GiB, hours) and the projection of one configuration."""
    figures = result["figures"]
    seconds_per_clip = {name: figures.get(name) for name in PHASES if name != "cache_fill"}
    seconds_per_clip["cache_fill"] = cache_seconds_per_video
    projection = project(seconds_per_clip)
    shown = {}
    for label, key, kind in ROWS:
        value = seconds_per_clip.get(key) if key in seconds_per_clip else figures.get(key)
        if value is not None and kind == "rate":
            value = 1 / value if value > 0 else None
        elif value is not None and kind == "percent":
            value = 100 * value
        shown[label] = value
    for label, key in PROJECTED:
        shown[label] = None if projection[key] is None else projection[key] / 3600
    return {"shown": shown, "projected_seconds": projection, "seconds_per_clip": seconds_per_clip}


def ratio(best, released):
    return best / released if best is not None and released else None


def format_table(summaries: dict) -> str:
    def cell(value, width):
        return f"{'n/a':>{width}s}" if value is None else f"{value:{width}.3g}"

    released, best = summaries["released"]["shown"], summaries["best"]["shown"]
    lines = [f"{'':34s} {'released':>10s} {'best':>10s} {'best/released':>14s}"]
    for label in released:
        lines.append(f"{label:34s} {cell(released[label], 10)} {cell(best[label], 10)} "
                     f"{cell(ratio(best[label], released[label]), 14)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line

def parse_args(argv=None, gpu: bool = False):
    """Options; sizes left unset get the GPU (paper-sized) or CPU (tiny) defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=None, help="videos generated (60/20/20 %% train/val/test)")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke test: 12 videos, tiny model, the two configurations at the same time")
    parser.add_argument("--model", default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--frequency", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=None, help="videos per training step (paper: 16)")
    parser.add_argument("--num_workers", type=int, default=None, help="data-loader workers, released config")
    parser.add_argument("--best_num_workers", type=int, default=None, help="data-loader workers, best config")
    parser.add_argument("--best_depthwise", default="auto", choices=("conv3d", "conv2d", "auto"),
                        help="--depthwise of the best configuration")
    parser.add_argument("--best_extra", default="",
                        help="more flags for the best configuration, e.g. --best_extra=--compile")
    parser.add_argument("--epochs", type=int, default=0, help="last epoch index of each stage (0: one pass)")
    parser.add_argument("--data_dir", default=None, help="generated set (kept and reused when it has --videos)")
    parser.add_argument("--work_dir", default=None, help="run folders and logs (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per script")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    opt = parser.parse_args(argv)
    opt.gpu = gpu
    if opt.quick:
        sizes = dict(videos=12, model="uniformer_tiny", frames=8, frequency=2, batch_size=2, num_workers=0)
    elif gpu:
        sizes = dict(videos=400, model="uniformer_small", frames=36, frequency=4, batch_size=16, num_workers=8)
    else:
        sizes = dict(videos=24, model="uniformer_tiny", frames=8, frequency=2, batch_size=4, num_workers=2)
    for name, value in sizes.items():
        if getattr(opt, name) is None:
            setattr(opt, name, value)
    if opt.best_num_workers is None:
        opt.best_num_workers = opt.num_workers
    if opt.videos < 6:
        parser.error("--videos must be >= 6 (2 per split)")
    return opt


def main(argv=None):
    import torch
    opt = parse_args(argv, gpu=torch.cuda.is_available())
    device = torch.cuda.get_device_name(0) if opt.gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {device} | torch {torch.__version__} | {opt.model}, {opt.frames} frames at period "
          f"{opt.frequency}, batch {opt.batch_size} (x2 clips in stage 1), {opt.videos} videos, epochs 0..{opt.epochs}")
    if not opt.gpu:
        print("CPU run: a tiny UniFormer on short clips. These figures exercise the pipeline and the "
              "arithmetic; they say nothing about the paper's run on a GPU.")
    if opt.quick:
        print("--quick: the two configurations run at the same time, so their figures are not comparable.")
    # --quick runs both configurations at once: half the cores each, so they do not fight over threads
    opt.threads = max(1, (os.cpu_count() or 2) // 2) if opt.quick else None
    work = Path(opt.work_dir or tempfile.mkdtemp(prefix="coreecho_pipeline_")).resolve()
    data = Path(opt.data_dir).resolve() if opt.data_dir else work / "data"  # the scripts run in the repo root
    cache_dir = work / "cache"
    processes = os.cpu_count() or 1
    try:
        print(f"data: {prepare_dataset(data, opt.videos, processes)}")
        supported = supported_flags()
        if "--depthwise" not in supported:
            print("note: the scripts have no --depthwise yet; the best configuration runs without it")
        configs = config_flags(opt, cache_dir, supported)
        cache_fill = fill_cache(data, cache_dir, opt.best_num_workers) if "--cache_dir" in supported else 0.0
        print(f"cache filled before the best run: {cache_fill:.4f} s per video with {opt.best_num_workers or 1} "
              f"processes (projected once for 10,030 videos)")

        results = {}

        def run(name):
            train_flags, test_flags = configs[name]
            results[name] = run_pipeline(name, train_flags, test_flags, opt, data, work / name)

        if opt.quick:
            threads = [threading.Thread(target=run, args=(name,)) for name in configs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            for name in configs:
                run(name)

        summaries = {name: summarise(results[name], cache_fill if name == "best" else 0.0) for name in configs}
        for name in configs:
            print(f"{name}: {' '.join(results[name]['flags'])}; scripts took "
                  + ", ".join(f"{stage} {s:.0f} s" for stage, s in results[name]["wall_seconds"].items()))
        print(format_table(summaries))
        print("best/released: clips/s higher is better; wait share, memory and hours lower is better. Projected: "
              "26 stage-1 epochs on 7,465 videos x 2 clips + 1,288 val/epoch + report on 10,030; 5 stage-2 epochs; "
              "test 1,277 x 3 clips.")
        for name in configs:
            for error in results[name]["errors"]:
                print(f"error: {error}")
        problems = [p for name in configs for p in results[name]["errors"] + results[name]["missing"]]
        for missing in (p for name in configs for p in results[name]["missing"]):
            print(f"missing: {missing}")
        if opt.json:
            report = {"device": device, "torch": torch.__version__, "gpu": opt.gpu,
                      "settings": {k: v for k, v in vars(opt).items() if k not in ("json",)},
                      "configs": {name: {**results[name], **summaries[name]} for name in configs},
                      "ratios_best_over_released": {
                          label: ratio(summaries["best"]["shown"][label], summaries["released"]["shown"][label])
                          for label in summaries["best"]["shown"]},
                      "missing": problems}
            Path(opt.json).write_text(json.dumps(report, indent=2))
            print(f"wrote {opt.json}")
    finally:
        if not opt.keep and not opt.work_dir:
            shutil.rmtree(work, ignore_errors=True)
        elif opt.keep:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
