"""The objects of a DICOM study export: which are cine loops worth scoring, which are skipped and why, and what
ties a row back to its exam without patient data.

An echo study folder holds, beside the cine loops, single-frame images, structured reports, PDFs, secondary
captures and presentation states. `screen_dicom` reads a header (never the pixels) and says whether the object
is a loop; when it is not, the reason (`skip`): no image, a secondary capture, another modality than
ultrasound, another kind of loop (scoring.loop_kind: anatomy, Doppler / M-mode modes, regions), a single frame,
fewer than `min_frames` frames or shorter than `min_seconds`. A header that
cannot be read at all raises BadInputError (a real failure). `dicom_identity`: study, series and SOP instance
UIDs, the frame time and the pixel spacing in mm, never a patient's or physician's field; pydicom's warnings,
which may quote such values, are kept quiet (`quiet_pydicom`).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field

from datasets.sources.dicom import dicom_frame_rate, is_dicom_file
from utils.script.errors import BadInputError, one_line
from utils.script.validators import positive_or_none

from .loop_kind import loop_kind

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and .7.1-.7.4, the multi-frame secondary captures
IMAGE_CLASSES = ("Image Storage", "Volume Storage")  # SOP class names of objects that hold pixels
CM_UNITS = 3  # PhysicalUnitsXDirection: 3 = cm
COMPRESSED_SYNTAXES = {  # transfer syntax UID -> short name
    "1.2.840.10008.1.2.4.50": "JPEG Baseline", "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless", "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-lossless", "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000", "1.2.840.10008.1.2.5": "RLE Lossless"}
IDENTITY_COLUMNS = ["study_uid", "series_uid", "sop_uid", "frame_time_ms", "pixel_spacing_x_mm",
                    "pixel_spacing_y_mm"]


@dataclass
class StudyObject:
    """What the header of one DICOM object says: `skip` is '' for a cine loop to score, else the reason."""

    identity: dict = field(default_factory=dict)  # IDENTITY_COLUMNS -> value ('' when absent)
    skip: str = ""
    frames: int = 0
    fps: float | None = None
    notes: list[str] = field(default_factory=list)  # what the header says about a loop that is scored


@contextlib.contextmanager
def quiet_pydicom():
    """No pydicom warning or log record while reading: they may quote a tag's value (a patient's name)."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _spacing_mm(header) -> tuple[float | None, float | None]:
    """(x, y) mm per source pixel: PixelSpacing (row spacing = y, column spacing = x), else the first 2D
    ultrasound region calibrated in cm; (None, None) when the header has neither."""
    spacing = header.get("PixelSpacing")
    if spacing is not None and len(spacing) == 2:
        y, x = positive_or_none(spacing[0]), positive_or_none(spacing[1])
        if x and y:
            return x, y
    for region in header.get("SequenceOfUltrasoundRegions") or []:
        if region.get("RegionSpatialFormat") == 1 and region.get("PhysicalUnitsXDirection") == CM_UNITS \
                and region.get("PhysicalUnitsYDirection") == CM_UNITS:
            x, y = positive_or_none(region.get("PhysicalDeltaX")), positive_or_none(region.get("PhysicalDeltaY"))
            if x and y:
                return 10 * x, 10 * y
    return None, None


def dicom_identity(header) -> dict:
    """The IDENTITY_COLUMNS of a header: UIDs, frame time (ms, from the acquisition timing as the frame rate
    is read), pixel spacing in mm; '' for what the header lacks. Nothing about the patient."""
    fps, _ = dicom_frame_rate(header)
    x, y = _spacing_mm(header)
    return {"study_uid": _text(header.get("StudyInstanceUID")), "series_uid": _text(header.get("SeriesInstanceUID")),
            "sop_uid": _text(header.get("SOPInstanceUID")), "frame_time_ms": f"{1000 / fps:.6g}" if fps else "",
            "pixel_spacing_x_mm": f"{x:.6g}" if x else "", "pixel_spacing_y_mm": f"{y:.6g}" if y else ""}


def _class_name(header) -> str:
    uid = header.get("SOPClassUID")
    return getattr(uid, "name", None) or _text(uid) or "no SOP class"


def short_reason(frames: int, fps: float | None, min_frames: int, min_seconds: float) -> str:
    """Why a loop of `frames` frames at `fps` (None: unknown) is too short to score, or ''."""
    if frames < 2:
        return "single frame: not a cine loop" if frames else "no frames: not a cine loop"
    if frames < min_frames:
        return f"{frames} frames: fewer than --min_frames {min_frames}"
    if fps and frames / fps < min_seconds:
        return f"{frames / fps:.2f} s long: shorter than --min_seconds {min_seconds:g}"
    return ""


def _skip_reason(path: str, header, frames: int, fps: float | None, min_frames: int, min_seconds: float,
                 kind: str) -> str:
    if "SOPClassUID" not in header and "Rows" not in header:  # nothing a DICOM object must have
        raise BadInputError(f"{path}: not a readable DICOM file (no SOP class and no image in it)")
    if "Rows" not in header or "Columns" not in header:
        if any(kind in _class_name(header) for kind in IMAGE_CLASSES):  # an image object cut short
            raise BadInputError(f"{path}: DICOM {_class_name(header)} without Rows/Columns: truncated or corrupt")
        return f"no image ({_class_name(header)}): not a cine loop"
    sop_class = _text(header.get("SOPClassUID"))
    if sop_class == SECONDARY_CAPTURE or sop_class.startswith(SECONDARY_CAPTURE + "."):
        return f"secondary capture ({_class_name(header)}): not a cine loop"
    modality = _text(header.get("Modality")).upper()
    if modality and modality != "US":
        return f"modality {modality} ({_class_name(header)}): not an ultrasound loop"
    if kind:  # what kind of loop it is says more than its length
        return kind
    reason = short_reason(frames, fps, min_frames, min_seconds)
    return f"{reason} ({_class_name(header)})" if frames < 2 else reason


def screen_dicom(path: str, min_frames: int = 2, min_seconds: float = 0.0) -> StudyObject:
    """Read the header of the DICOM file `path` (no pixels) -> StudyObject (identity, skip reason, frames, fps).
    BadInputError naming the file when it is no readable DICOM at all."""
    import pydicom  # only needed for DICOM input
    from pydicom.errors import InvalidDicomError

    with quiet_pydicom():
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, force=not is_dicom_file(path))
            identity = dicom_identity(header)
            fps, _ = dicom_frame_rate(header)
            # no NumberOfFrames: a single image
            frames = int(positive_or_none(header.get("NumberOfFrames")) or 0) if "NumberOfFrames" in header else 1
            kind, notes = loop_kind(header)
        except (InvalidDicomError, OSError, ValueError, KeyError, EOFError, TypeError, AttributeError) as e:
            raise BadInputError(f"{path}: not a readable DICOM file ({one_line(e)})") from None
        skip = _skip_reason(path, header, frames, fps, min_frames, min_seconds, kind)
    return StudyObject(identity, skip, frames, fps, notes if not skip else [])


def decodable_syntaxes() -> tuple[list[str], list[str]]:
    """(short names of the compressed transfer syntaxes pydicom decodes with the installed packages, those it
    cannot), for the log: a loop in a syntax of the second list fails with the package to install."""
    from pydicom.pixels import get_decoder

    found, missing = [], []
    for uid, name in COMPRESSED_SYNTAXES.items():
        try:
            available = get_decoder(uid).is_available
        except (NotImplementedError, ValueError):
            available = False
        (found if available else missing).append(name)
    return found, missing
