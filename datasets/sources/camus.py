"""CAMUS (Leclerc et al., 2019) half-cycle sequences for EF regression, read as downloaded.

`list_samples` lists every patient's views under `root` (the folder holding `database_nifti/`, that folder itself,
or any folder of `patientNNNN/` folders: the NIfTI release read with nibabel, the older MHD release with
SimpleITK) with ED, ES, NbFrame, ImageQuality and the EF (`EF` or `LVef`) of its `Info_<view>.cfg`.
`load_frames` returns a view's frames from ED to ES (reversed when ED is stored last), resampled to `frames` at
round(linspace(0, n - 1, frames)) as the released preprocessing, each resized to 112x112 (cv2.INTER_AREA).

Axes: nibabel's [x, y, t] is reversed to [t, y, x], what SimpleITK returns; the NIfTI affine / ITK direction is
never applied, so row 0 is the top of the image (probe and LV apex), as in EchoNet-Dynamic videos.

Errors name the file and the key: a missing cfg or sequence file is a MissingInputError (FileNotFoundError), a
missing or bad value a BadInputError (ValueError).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from utils.script.errors import BadInputError, MissingInputError

from ..video import SIZE

VIEWS = ("4CH", "2CH")
QUALITIES = ("Good", "Medium", "Poor")
_QUALITY_BY_KEY = {q.lower(): q for q in QUALITIES}  # cfg values and filters in any case
EF_KEYS = ("EF", "LVef")  # NIfTI release, older MHD release
# tried in this order in each patient folder, after the "patientNNNN_<view>" prefix
SEQUENCE_SUFFIXES = ("_half_sequence.nii.gz", "_half_sequence.nii", "_sequence.mhd", "_half_sequence.mhd",
                     "_sequence.nii.gz", "_sequence.nii")
_PATIENT = re.compile(r"^patient\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class CamusSample:
    """One patient's view: EF from its cfg, n_frames = NbFrame, path = the sequence file."""
    patient: str
    view: str
    ef: float
    quality: str
    n_frames: int
    ed: int  # 1-based, as in the cfg
    es: int
    path: Path
    cfg: Path

    @property
    def name(self) -> str:
        return f"{self.patient}_{self.view}"


def patient_folder_root(root) -> Path:
    """The folder holding patientNNNN/ folders: root/database_nifti if it exists, else root."""
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"CAMUS folder {root} does not exist")
    for folder in (root / "database_nifti", root):
        if folder.is_dir() and any(_PATIENT.match(p.name) and p.is_dir() for p in folder.iterdir()):
            return folder
    raise MissingInputError(f"no patientNNNN folders in {root} (nor in {root / 'database_nifti'})")


def parse_views(views) -> tuple[str, ...]:
    """'4CH', '2CH', 'both' (any case) or a sequence of views -> tuple of views."""
    if isinstance(views, str):
        views = VIEWS if views.strip().lower() == "both" else [views]
    out = []
    for view in views:
        key = str(view).strip().upper()
        if key not in VIEWS:
            raise ValueError(f"unknown CAMUS view {view!r}: use 4CH, 2CH or both")
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError("no CAMUS view selected")
    return tuple(out)


def parse_qualities(qualities) -> frozenset[str] | None:
    """None (all) or an iterable of Good / Medium / Poor (any case) -> set of canonical names."""
    if qualities is None:
        return None
    if isinstance(qualities, str):
        qualities = [qualities]
    out = set()
    for quality in qualities:
        key = str(quality).strip().lower()
        if key not in _QUALITY_BY_KEY:
            raise ValueError(f"unknown CAMUS image quality {quality!r}: use {', '.join(QUALITIES)}")
        out.add(_QUALITY_BY_KEY[key])
    return frozenset(out)


def read_cfg(path) -> dict[str, str]:
    """`key: value` lines of an Info_*.cfg -> dict (values as text, stripped)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"CAMUS info file {path} does not exist")
    entries = {}
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            key, sep, value = line.partition(":")
            if not sep:
                raise BadInputError(f"{path} line {number}: expected 'key: value', got {line.strip()!r}")
            entries[key.strip()] = value.strip()
    return entries


def _get(cfg: dict, path: Path, key: str) -> str:
    if key not in cfg:
        raise BadInputError(f"{path}: missing key '{key}'")
    return cfg[key]


def _number(cfg: dict, path: Path, key: str) -> float:
    raw = _get(cfg, path, key)
    try:
        value = float(raw)
    except ValueError:
        raise BadInputError(f"{path}: key '{key}' = {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise BadInputError(f"{path}: key '{key}' = {raw!r} is not a finite number")
    return value


def _frame_number(cfg: dict, path: Path, key: str) -> int:
    value = _number(cfg, path, key)
    if value != int(value) or value < 1:
        raise BadInputError(f"{path}: key '{key}' = {cfg[key]!r} is not a frame number (1, 2, ...)")
    return int(value)


def _sequence_file(folder: Path, patient: str, view: str) -> Path:
    for suffix in SEQUENCE_SUFFIXES:
        path = folder / f"{patient}_{view}{suffix}"
        if path.is_file():
            return path
    raise MissingInputError(f"no {view} sequence in {folder}: expected {patient}_{view}{SEQUENCE_SUFFIXES[0]} "
                            f"or {patient}_{view}{SEQUENCE_SUFFIXES[2]}")


def _quality(cfg: dict, path: Path) -> str:
    raw = _get(cfg, path, "ImageQuality")
    if raw.lower() not in _QUALITY_BY_KEY:
        raise BadInputError(f"{path}: key 'ImageQuality' = {raw!r} is not one of {', '.join(QUALITIES)}")
    return _QUALITY_BY_KEY[raw.lower()]


def read_sample(folder, view: str) -> CamusSample:
    """The sample of one patient folder and view, checked: cfg keys, ED/ES range, sequence file."""
    folder = Path(folder)
    cfg_path = folder / f"Info_{view}.cfg"
    cfg = read_cfg(cfg_path)
    ef_key = next((key for key in EF_KEYS if key in cfg), None)
    if ef_key is None:
        raise BadInputError(f"{cfg_path}: missing key 'EF' (or 'LVef' in the older release)")
    ef = _number(cfg, cfg_path, ef_key)
    if not 0 <= ef <= 100:
        raise BadInputError(f"{cfg_path}: key '{ef_key}' = {cfg[ef_key]!r} is outside [0, 100]")
    n_frames = _frame_number(cfg, cfg_path, "NbFrame")
    ed, es = _frame_number(cfg, cfg_path, "ED"), _frame_number(cfg, cfg_path, "ES")
    for key, value in (("ED", ed), ("ES", es)):
        if value > n_frames:
            raise BadInputError(f"{cfg_path}: key '{key}' = {value} is after the last frame (NbFrame {n_frames})")
    if ed == es:
        raise BadInputError(f"{cfg_path}: keys 'ED' and 'ES' are the same frame ({ed})")
    quality = _quality(cfg, cfg_path)
    return CamusSample(patient=folder.name, view=view, ef=ef, quality=quality, n_frames=n_frames, ed=ed, es=es,
                       path=_sequence_file(folder, folder.name, view), cfg=cfg_path)


def list_samples(root, views="4CH", qualities=None) -> list[CamusSample]:
    """Samples sorted by patient id, then view (in the order of `views`; 'both' = 4CH, 2CH).

    qualities: None (all) or a set of Good / Medium / Poor; a view whose quality is not in it is left out.
    """
    folder_root = patient_folder_root(root)
    views, wanted_qualities = parse_views(views), parse_qualities(qualities)
    folders = {p.name: p for p in folder_root.iterdir() if p.is_dir() and _PATIENT.match(p.name)}
    samples = [read_sample(folders[name], view) for name in sorted(folders) for view in views]
    return [s for s in samples if wanted_qualities is None or s.quality in wanted_qualities]


def _import_nibabel():
    try:
        import nibabel
    except ImportError:
        return None
    return nibabel


def _import_sitk(path: Path):
    try:
        import SimpleITK
    except ImportError:
        raise BadInputError(f"reading {path} needs SimpleITK (pip install SimpleITK)"
                            + ("" if path.suffix == ".mhd" else " or nibabel (pip install nibabel)")) from None
    return SimpleITK


def read_volume(path) -> np.ndarray:
    """A CAMUS sequence file -> uint8 [T, H, W], row 0 at the top of the image (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"CAMUS sequence {path} does not exist")
    nibabel = None if path.suffix == ".mhd" else _import_nibabel()
    sitk = _import_sitk(path) if nibabel is None else None
    try:
        if nibabel is not None:
            array = np.asarray(nibabel.load(str(path)).dataobj)
            array = array.transpose(tuple(reversed(range(array.ndim))))  # [x, y, t] -> [t, y, x]
        else:
            array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # already [t, y, x]
    except Exception as e:  # nibabel / ITK / gzip each have their own error types for a bad file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BadInputError(f"cannot read CAMUS sequence {path}: {reason}") from None
    while array.ndim > 3 and array.shape[0] == 1:  # e.g. [1, T, H, W] from a 4D header
        array = array[0]
    if array.ndim != 3:
        raise BadInputError(f"CAMUS sequence {path} has shape {array.shape}: expected frames [T, H, W]")
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return array


def even_indices(n: int, frames: int) -> np.ndarray:
    """round(linspace(0, n - 1, frames)): even subsampling, or even repetition when n < frames."""
    return np.round(np.linspace(0, n - 1, frames)).astype(np.int64)


def load_frames(sample: CamusSample, frames: int | None = 32) -> np.ndarray:
    """uint8 [frames, 112, 112] going ED -> ES (frames=None keeps the ED..ES frames as they are)."""
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1):
        raise ValueError(f"frames must be None or a positive int, got {frames!r}")
    volume = read_volume(sample.path)
    if len(volume) != sample.n_frames:
        raise BadInputError(f"{sample.path} holds {len(volume)} frames but {sample.cfg} says NbFrame {sample.n_frames}")
    if sample.ed < sample.es:
        clip = volume[sample.ed - 1:sample.es]
    else:  # ED stored last: play it backwards so the clip still goes ED -> ES
        clip = volume[sample.es - 1:sample.ed][::-1]
    if frames is not None:
        clip = clip[even_indices(len(clip), int(frames))]
    return np.stack([cv2.resize(frame, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for frame in clip])
