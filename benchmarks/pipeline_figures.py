"""The arithmetic of benchmarks/bench_pipeline.py: clips per phase of the paper's schedule, the projection of its
wall time from measured seconds per clip, and the figures read from the scripts' own timing files."""
import json
from dataclasses import dataclass
from pathlib import Path


# ---------------------------------------------------------------- projection (pure arithmetic)

@dataclass(frozen=True)
class Schedule:
    """The paper's schedule on EchoNet-Dynamic: the released commands' --epochs 25 and 4 run 26 and 5 passes."""
    train_videos: int = 7465
    val_videos: int = 1288
    test_videos: int = 1277
    stage1_epochs: int = 26
    stage2_epochs: int = 5
    stage1_clips_per_video: int = 2  # two augmented views
    test_clips_per_video: int = 3


PAPER = Schedule()
PHASES = ("cache_fill", "stage1_train", "stage1_val", "stage1_report", "stage2_train", "stage2_val", "stage2_report",
          "test")
STAGES = {"stage1": PHASES[:4], "stage2": PHASES[4:7], "test": PHASES[7:]}


def clip_counts(schedule: Schedule = PAPER) -> dict:
    """Clips each phase processes in the full schedule (cache_fill: videos decoded into the cache)."""
    s = schedule
    all_videos = s.train_videos + s.val_videos + s.test_videos  # the final report scores every split
    return {
        "cache_fill": all_videos,
        "stage1_train": s.stage1_epochs * s.train_videos * s.stage1_clips_per_video,
        "stage1_val": s.stage1_epochs * s.val_videos,
        "stage1_report": all_videos,
        "stage2_train": s.stage2_epochs * s.train_videos,
        "stage2_val": s.stage2_epochs * s.val_videos,
        "stage2_report": all_videos,
        "test": s.test_videos * s.test_clips_per_video,
    }


def project(seconds_per_clip: dict, schedule: Schedule = PAPER) -> dict:
    """Projected seconds of every phase (its clips x measured seconds per clip), of each stage and in all.

    `seconds_per_clip` has an entry for every name in PHASES (cache_fill: seconds per video, 0 without a
    cache); a None (not measured) makes that phase and every total that includes it None.
    """
    counts = clip_counts(schedule)
    phases = {name: None if seconds_per_clip[name] is None else counts[name] * seconds_per_clip[name]
              for name in PHASES}

    def total(names):
        values = [phases[name] for name in names]
        return None if None in values else sum(values)

    return {"phases": phases, **{stage: total(names) for stage, names in STAGES.items()}, "total": total(PHASES)}


# ---------------------------------------------------------------- reading the scripts' timing files

def _seconds_per_clip(entries, what, missing):
    entries = [e for e in entries if isinstance(e, dict)]
    try:
        clips = sum(e["clips"] for e in entries)
        seconds = sum(e["seconds"] for e in entries)
    except (KeyError, TypeError):
        missing.append(f"{what}: no clips/seconds")
        return None
    if not entries or clips <= 0:
        missing.append(f"{what}: no measurement")
        return None
    return seconds / clips


def stage_figures(timing, stage: str) -> tuple[dict, list]:
    """Seconds per clip of training, validation and the final report, data-loader wait share and peak GPU
    memory of one stage's timing.json (a dict, or None when the file is missing), and what was missing.

    With several epochs only the ones after the first count (the first includes the warm-up)."""
    missing = []
    if not isinstance(timing, dict):
        return {f"{stage}_{part}": None for part in ("train", "val", "report", "wait_share", "peak_gib")}, \
            [f"{stage}: no timing.json (do the scripts write it yet?)"]
    epochs = [e for e in timing.get("epochs") or [] if isinstance(e, dict)]
    validation = [e for e in timing.get("validation") or [] if isinstance(e, dict)]
    epochs, validation = epochs[1:] or epochs, validation[1:] or validation
    figures = {
        f"{stage}_train": _seconds_per_clip(epochs, f"{stage} training epochs", missing),
        f"{stage}_val": _seconds_per_clip(validation, f"{stage} validation", missing),
        f"{stage}_report": _seconds_per_clip([timing.get("final_report")], f"{stage} final report", missing),
    }
    try:
        seconds = sum(e["seconds"] for e in epochs)
        figures[f"{stage}_wait_share"] = sum(e["data_wait_seconds"] for e in epochs) / seconds if seconds else None
    except (KeyError, TypeError):
        figures[f"{stage}_wait_share"] = None
        missing.append(f"{stage} training epochs: no data_wait_seconds")
    if "peak_gpu_memory_gib" not in timing:
        missing.append(f"{stage}: no peak_gpu_memory_gib")
    figures[f"{stage}_peak_gib"] = timing.get("peak_gpu_memory_gib")
    return figures, missing


def test_figures(metrics) -> tuple[dict, list]:
    """Seconds per clip of the three-clip test from its metrics.json (dict or None), and what was missing."""
    missing = []
    timing = metrics.get("timing") if isinstance(metrics, dict) else None
    if not isinstance(timing, dict):
        return {"test": None}, ["test: no 'timing' in metrics.json (does the test script write it yet?)"]
    return {"test": _seconds_per_clip([timing], "test timing", missing)}, missing


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
