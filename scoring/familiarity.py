"""Has the model seen anything like this video? The distance of its embedding to the training videos' embeddings.

RnC orders the encoder's space by EF with the plain (unnormalised) L2 distance, so the same distance is used here:
a video's embedding is the mean of its clip embeddings (what infer_videos returns: encoder features, before the
regressor); `distance` is its mean L2 distance to its K_NEIGHBOURS nearest training videos; `ef_knn` the mean
true EF of those neighbours; `unfamiliar` is 1 when the distance exceeds the reference's threshold (the
THRESHOLD_QUANTILE of the validation videos' own distances to the training videos), else 0.

The reference (`save_reference`) is a NumPy .npz (no pickle): train `embeddings` float32 [N, d], their `ef`
float64 [N], the `val_distances` float64 [M] it was calibrated on, and `meta` (JSON: format_version, k,
threshold, quantile, model, frames, frequency, clip options, checkpoint identity). It lies beside its
checkpoint as `<checkpoint file name>.reference.npz` (best.pth -> best.pth.reference.npz).
"""
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from utils.files.atomic import atomic_open
from utils.script.errors import BadInputError, MissingInputError

FORMAT_VERSION = 1
REFERENCE_SUFFIX = ".reference.npz"
K_NEIGHBOURS = 5
THRESHOLD_QUANTILE = 0.99  # of the val split's distances: about 1 in-distribution video in 100 is flagged
COLUMNS = ["distance", "unfamiliar", "ef_knn"]
_ARRAYS = ("embeddings", "ef", "val_distances", "meta")


def reference_path(checkpoint) -> str:
    """Where the reference of `checkpoint` lies: beside it, its file name + .reference.npz."""
    return os.fspath(checkpoint) + REFERENCE_SUFFIX


def content_identity(path) -> str:
    """'sha256:<hex>' of a file's bytes: a copied checkpoint keeps it, a retrained one does not."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def nearest(train, queries, k, train_norms=None):
    """(mean L2 distance of each query to its k nearest rows of `train` [M], their indexes [M, k]), in float64,
    one query at a time (a video's distance does not depend on which others are scored with it), as
    |t|^2 + |q|^2 - 2 t.q: one matrix-vector product. `train_norms`: |t|^2 of `train`, precomputed."""
    train = np.asarray(train, dtype=np.float64)
    if train_norms is None:
        train_norms = (train * train).sum(axis=1)
    k = min(k, len(train))
    distances, indexes = [], []
    for query in np.asarray(queries, dtype=np.float64):
        to_train = np.sqrt(np.maximum(train_norms + query @ query - 2 * (train @ query), 0))
        closest = np.argpartition(to_train, k - 1)[:k] if k < len(to_train) else np.arange(len(to_train))
        closest = closest[np.lexsort((closest, to_train[closest]))]  # nearest first, ties by index
        distances.append(to_train[closest].mean())
        indexes.append(closest)
    return np.array(distances).reshape(-1), np.array(indexes, dtype=np.int64).reshape(-1, k)


def calibrate(train_embeddings, val_embeddings, k=K_NEIGHBOURS, quantile=THRESHOLD_QUANTILE):
    """(val videos' distances to the train videos [M], threshold: their `quantile`)."""
    val_distances, _ = nearest(train_embeddings, val_embeddings, k)
    return val_distances, float(np.quantile(val_distances, quantile))


@dataclass
class Reference:
    embeddings: np.ndarray  # float32 [N, d], train videos
    ef: np.ndarray  # float64 [N]
    val_distances: np.ndarray  # float64 [M]
    meta: dict
    path: str

    def __post_init__(self):
        self._train = self.embeddings.astype(np.float64)  # once, not per file
        self._norms = (self._train * self._train).sum(axis=1)

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    def columns(self, clip_embeddings) -> dict:
        """distance, unfamiliar (1/0) and ef_knn of a video from its clip embeddings [n_clips, d] (n_clips >= 1)."""
        video = np.asarray(clip_embeddings, dtype=np.float32).mean(axis=0)
        if video.shape != self.embeddings.shape[1:]:
            raise BadInputError(f"{self.path}: embeddings of {self.embeddings.shape[1]} values, the model gives "
                                f"{video.shape[0]}: a reference of another model")
        [distance], [neighbours] = nearest(self._train, video[None], int(self.meta["k"]), self._norms)
        return {"distance": float(distance), "unfamiliar": int(distance > self.threshold),
                "ef_knn": float(self.ef[neighbours].mean())}


def save_reference(path, train_embeddings, train_ef, val_embeddings, meta, k=K_NEIGHBOURS,
                   quantile=THRESHOLD_QUANTILE) -> Reference:
    """Calibrate on the val videos and write the reference .npz atomically; `meta` adds model, frames, ... ."""
    embeddings = np.asarray(train_embeddings, dtype=np.float32)
    ef = np.asarray(train_ef, dtype=np.float64).reshape(-1)
    if embeddings.ndim != 2 or len(embeddings) != len(ef) or not len(ef) or not len(val_embeddings):
        raise ValueError(f"a reference needs train embeddings [N, d] with N EFs and val embeddings; got "
                         f"{list(embeddings.shape)}, {len(ef)} EFs, {len(val_embeddings)} val videos")
    val_distances, threshold = calibrate(embeddings, val_embeddings, k, quantile)
    meta = {"format_version": FORMAT_VERSION, **meta, "k": int(k), "quantile": quantile, "threshold": threshold,
            "n_train": len(ef), "n_val": len(val_distances)}
    with atomic_open(path, "wb") as f:
        np.savez(f, embeddings=embeddings, ef=ef, val_distances=val_distances, meta=np.array(json.dumps(meta)))
    return Reference(embeddings, ef, val_distances, meta, os.fspath(path))


def load_reference(path) -> Reference:
    """Read a reference .npz; one line naming the file and the key when it is not one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingInputError(f"familiarity reference not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in _ARRAYS if key in archive.files}
        meta = json.loads(str(arrays.get("meta", "{}")))
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # JSONDecodeError is a ValueError
        raise BadInputError(f"{path}: not a readable familiarity reference ({str(e).splitlines()[0]})") from None
    missing = [key for key in _ARRAYS if key not in arrays]
    if missing:
        raise BadInputError(f"{path}: array '{missing[0]}' missing: not a familiarity reference")
    for key in ("k", "threshold", "checkpoint"):
        if key not in meta:
            raise BadInputError(f"{path}: meta key '{key}' missing: not a familiarity reference")
    embeddings, ef = arrays["embeddings"].astype(np.float32), arrays["ef"].astype(np.float64)
    if embeddings.ndim != 2 or len(embeddings) != len(ef) or not len(ef):
        raise BadInputError(f"{path}: 'embeddings' {list(embeddings.shape)} and 'ef' [{len(ef)}] do not match")
    return Reference(embeddings, ef, arrays["val_distances"].astype(np.float64), meta, path)


def add_reference_arg(parser):
    """--reference FILE|none, of predict.py and the page."""
    parser.add_argument("--reference", type=str, default=None, metavar="FILE",
                        help="familiarity reference (python -m scoring.reference); default: <checkpoint>.reference.npz "
                             "beside the checkpoint when there is one; none: no distance columns")


def find_reference(choice, checkpoint, clip=None):
    """(Reference or None, [(log level, line)]) for predict.py and the page: `choice` None looks beside the
    checkpoint file, 'none' disables, anything else is the reference file. No reference beside the checkpoint,
    or one of another checkpoint, leaves the columns empty and one line says why; a named file that is no
    reference is an error. `clip` (frames, frequency) of this run: other clips than the reference's are warned of."""
    if choice is not None and choice.lower() == "none":
        return None, [("info", f"familiarity: off (--reference none); {', '.join(COLUMNS)} stay empty")]
    path = reference_path(checkpoint) if choice is None else choice
    if choice is None and not os.path.isfile(path):
        return None, [("info", f"familiarity: no reference beside the checkpoint ({path}); {', '.join(COLUMNS)} "
                               "stay empty (make one with python -m scoring.reference)")]
    reference = load_reference(path)
    if reference.meta["checkpoint"] != content_identity(checkpoint):
        return None, [("warning", f"familiarity: {path} was made for another checkpoint than {checkpoint}; "
                                  f"{', '.join(COLUMNS)} stay empty (make a new one with python -m scoring.reference)")]
    meta = reference.meta
    notes = [("info", f"familiarity: {path} ({meta['n_train']} train videos, k {meta['k']}; unfamiliar = 1 above "
                      f"distance {reference.threshold:.4g}, the {meta['quantile']:.0%} quantile of {meta['n_val']} val "
                      f"videos' distances)")]
    made_with = (meta.get("frames"), meta.get("frequency"))
    if clip is not None and tuple(clip) != made_with:
        notes.append(("warning", f"familiarity: the reference was made with clips of {made_with[0]} frames every "
                                 f"{made_with[1]}, this run uses {clip[0]} every {clip[1]}: its threshold does not fit"))
    return reference, notes


def familiarity_row(reference, status, clip_embeddings) -> dict:
    """The familiarity cells of a row: distance, unfamiliar, ef_knn of a scored file, nothing otherwise."""
    if reference is None or status != "scored" or not len(clip_embeddings):
        return {}
    return reference.columns(clip_embeddings)


def familiarity_note(row) -> str | None:
    """A --plot figure's note for a scored row with familiarity cells: ef_knn and the distance; the flag on a
    second line when raised."""
    if row.get("ef_knn") is None:
        return None
    flag = (f"\nUNFAMILIAR: farther than {THRESHOLD_QUANTILE * 100:g} % of the validation videos (not an image-quality "
            "judgement)") if row.get("unfamiliar") == 1 else ""
    return f"EF of the {K_NEIGHBOURS} nearest training videos {row['ef_knn']:.1f} %, distance {row['distance']:.3g}{flag}"
