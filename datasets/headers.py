"""Frame counts of a split's videos, read from their headers before any work starts, and cached.

Opening every video (cv2.VideoCapture, nothing decoded: ~1 ms each) finds a video that cannot be
opened before the first epoch instead of hours into it. The counts are kept in one small JSON file
per data folder, keyed by each video's size and modification time, so later runs skip the pass;
a changed video is simply read again. The cache lives in `--cache_dir` when given, else in
$COREECHO_CACHE, $XDG_CACHE_HOME/coreecho or ~/.cache/coreecho. It is only an optimisation: when it
cannot be written the counts are still returned.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from utils.script.errors import BadInputError, MissingInputError, OutputError
from utils.files.atomic import atomic_write_json

from .video import frame_count


def default_cache_root() -> Path:
    if os.environ.get("COREECHO_CACHE"):
        return Path(os.environ["COREECHO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "coreecho"


def _cache_file(videos_folder: Path, cache_dir) -> Path:
    folder = Path(cache_dir) if cache_dir is not None else default_cache_root()
    key = hashlib.sha1(os.fsencode(videos_folder.resolve())).hexdigest()[:16]
    return folder / "headers" / f"{videos_folder.parent.name}-{key}.json"


def _load(path: Path) -> dict:
    try:
        with open(path) as f:
            cached = json.load(f)
        return cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        return {}


def frame_counts(videos_folder: str | os.PathLike, names: list[str], cache_dir=None) -> dict[str, int]:
    """{name: frames} for `names` in `videos_folder`; one line naming the video (and how many more) if any
    of them cannot be opened."""
    videos_folder = Path(videos_folder)
    cache_path = _cache_file(videos_folder, cache_dir)
    cached = _load(cache_path)
    counts, bad, changed = {}, [], False
    for name in names:
        path = videos_folder / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise MissingInputError(f"video file {path} does not exist") from None
        signature = [stat.st_size, stat.st_mtime_ns]
        entry = cached.get(name)
        if entry and entry[:2] == signature:
            counts[name] = entry[2]
            continue
        try:
            counts[name] = frame_count(path)
        except BadInputError as e:
            bad.append((name, str(e)))
            continue
        cached[name] = signature + [counts[name]]
        changed = True
    if bad:
        more = f" ({len(bad) - 1} more video(s) of this split fail the same check)" if len(bad) > 1 else ""
        raise BadInputError(f"{bad[0][1]}{more}")
    if changed:
        try:
            atomic_write_json(cached, cache_path)
        except OutputError:
            pass  # only an optimisation
    return counts
