"""embeddings.npz: the video embeddings of one checkpoint on one split, as `visualize.py embeddings` and
`test_with_three_clips.py --save_embeddings` write them and `visualize.py embeddings --embeddings` reads them.

A NumPy .npz archive (np.load(path) reads it; nothing in it needs pickle) with five arrays:
- ``names``        str [N]         video file names (EchoNet: "<id>.avi"), in dataset order
- ``ef``           float64 [N]     true EF (%)
- ``embeddings``   float32 [N, d]  the encoder's embedding of each video: the mean over its clips
- ``predictions``  float64 [N]     the EF predicted by the checkpoint's regressor (mean over the clips)
- ``meta``         str (0-d)       a JSON object: ``format_version`` (1), ``checkpoint`` (absolute path),
  ``split``, ``frames``, ``frequency``, ``clips`` ("three": the fixed test clips, "all": every clip on
  the grid of datasets.clips.clip_grid), and whatever else the writer adds (model, n_clips, clip_stride,
  start_indexes, written_by, ...).

Files are written atomically (utils.files.atomic.atomic_open). A file that is not such an archive, lacks an array
or a meta key, or holds arrays of inconsistent lengths is refused with one line naming the file and key.
"""
import json
import os
import zipfile

import numpy as np

from utils.script.errors import BadInputError, MissingInputError
from utils.files.atomic import atomic_open

FORMAT_VERSION = 1
ARRAYS = ("names", "ef", "embeddings", "predictions", "meta")
REQUIRED_META = ("checkpoint", "split", "frames", "frequency", "clips")


def _json_value(value):
    """json.dumps fallback for numpy scalars and arrays (e.g. a frame count read from a table)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"meta value of type {type(value).__name__} cannot be stored as JSON")


def _checked_arrays(names, ef, embeddings, predictions, where):
    """(names, ef, embeddings, predictions) as the format's types, or BadInputError naming `where`."""
    names = np.asarray(names).astype(str).reshape(-1)
    ef = np.asarray(ef, dtype=np.float64).reshape(-1)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if embeddings.ndim != 2:
        raise BadInputError(f"{where}: 'embeddings' must be [N, d], got shape {list(embeddings.shape)}")
    n = len(embeddings)
    for key, array in (("names", names), ("ef", ef), ("predictions", predictions)):
        if len(array) != n:
            raise BadInputError(f"{where}: '{key}' has {len(array)} entries but 'embeddings' has {n} rows")
    if n == 0:
        raise BadInputError(f"{where}: holds no video")
    return names, ef, embeddings, predictions


def save_embeddings(path, names, ef, embeddings, predictions, meta):
    """Write embeddings.npz at `path` (atomically). `meta` must hold at least REQUIRED_META; it is
    stored as JSON with ``format_version`` added. Returns the path."""
    path = os.fspath(path)
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise ValueError(f"meta lacks {', '.join(missing)} (needs {', '.join(REQUIRED_META)})")
    names, ef, embeddings, predictions = _checked_arrays(names, ef, embeddings, predictions, path)
    text = json.dumps({"format_version": FORMAT_VERSION, **meta}, default=_json_value)
    with atomic_open(path, "wb") as f:
        # np.savez adds ".npz" only to a file name, never to an open file
        np.savez(f, names=names, ef=ef, embeddings=embeddings, predictions=predictions, meta=np.array(text))
    return path


def load_embeddings(path):
    """Read an embeddings.npz -> dict(names [list of str], ef, embeddings, predictions, meta [dict], path)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingInputError(f"embeddings file not found: {path}")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # .npz files are zip archives
            raise BadInputError(f"{path} is not a .npz archive (not a zip file)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadInputError(f"{path} is not a readable .npz archive ({reason})") from None
    with archive:
        missing = [key for key in ARRAYS if key not in archive.files]
        if missing:
            raise BadInputError(f"{path}: array '{missing[0]}' missing (has: {', '.join(archive.files) or 'none'}); "
                                "not an embeddings.npz of visualize.py / test_with_three_clips.py")
        try:
            arrays = {key: archive[key] for key in ARRAYS}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # e.g. a pickled object array
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BadInputError(f"{path}: cannot read its arrays ({reason})") from None
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError:
        raise BadInputError(f"{path}: 'meta' is not a JSON object") from None
    if not isinstance(meta, dict):
        raise BadInputError(f"{path}: 'meta' is not a JSON object")
    for key in REQUIRED_META:
        if key not in meta:
            raise BadInputError(f"{path}: meta key '{key}' missing")
    names, ef, embeddings, predictions = _checked_arrays(arrays["names"], arrays["ef"], arrays["embeddings"],
                                                         arrays["predictions"], path)
    return {"names": names.tolist(), "ef": ef, "embeddings": embeddings, "predictions": predictions, "meta": meta,
            "path": path}
