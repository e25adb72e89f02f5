"""DICOM echo videos, read with pydicom: the header (checked for an 8-bit multi-frame video, its frame rate)
and the frames, one at a time.

A file is DICOM by its extension (.dcm/.dicom) or by the 'DICM' marker at byte 128, so extension-less files
work too. Frames are read one by one (`pydicom.pixels.iter_pixels` on the path): 8-bit MONOCHROME1/2 (1 is
inverted), RGB, YBR_FULL(_422) (pydicom removes the 4:2:2 subsampling and converts YBR to RGB) and PALETTE
COLOR (8- or 16-bit indices through the header's lookup tables, pydicom's apply_color_lut, to 8-bit RGB).
Compressed transfer syntaxes go through pydicom's decoder plugins; a missing plugin is reported in one line
with the package to pip install. Errors are one line naming the file (BadInputError).
"""
from __future__ import annotations

import os
import re
from typing import Iterator

import numpy as np

from utils.script.errors import BadInputError, one_line
from utils.script.validators import positive_or_none


DICOM_EXTENSIONS = (".dcm", ".dicom")
MIN_FRAMES = 2  # a single image has no motion and is no video


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True if the file carries the DICOM Part 10 marker 'DICM' after its 128-byte preamble."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


# pydicom names plugin requirements by import name; on PyPI gdcm is python-gdcm
_PIP_NAMES = {"gdcm": "python-gdcm"}


def _pip_name(requirement: str) -> str:
    """'gdcm>=3.0.10' -> 'python-gdcm>=3.0.10' (the version part is kept)."""
    name = re.match(r"[A-Za-z0-9_.\-]*", requirement).group(0)
    return _PIP_NAMES.get(name, name) + requirement[len(name):]


def _missing_decoder_message(path: str, transfer_syntax: str, pydicom_message: str) -> str:
    """pydicom's 'all plugins are missing dependencies:\\n\\tNAME - requires A and B' -> one line
    with pip commands, the pylibjpeg option first (pure pip wheels)."""
    options = []
    for line in pydicom_message.splitlines()[1:]:
        if " - requires " in line:
            needs = [r.strip() for r in line.split(" - requires ", 1)[1].split(" and ")]
            needs = [_pip_name(r) for r in needs if r != "numpy"]
            options.append("pip install " + " ".join(f'"{r}"' if ">" in r or "<" in r else r for r in needs))
    options.sort(key=lambda o: "pylibjpeg" not in o)
    how = " or ".join(options) if options else "install a pydicom pixel-data plugin (see pydicom's docs)"
    return f"{path}: DICOM pixel data is compressed ({transfer_syntax}) and no decoder is installed: {how}"


def dicom_frame_rate(header) -> tuple[float | None, str | None]:
    """(frames per second, tag it came from), acquisition timing first: 1000 / FrameTime (ms per frame),
    1000 / the mean of FrameTimeVector's increments, CineRate, then RecommendedDisplayFrameRate (a playback
    hint, which a scanner may set apart from the acquisition rate); (None, None) if none is positive."""
    frame_time = positive_or_none(header.get("FrameTime"))
    if frame_time is not None:
        return 1000.0 / frame_time, "FrameTime"
    try:  # ms since the previous frame, the first entry 0
        increments = [float(v) for v in list(header.get("FrameTimeVector") or [])[1:]]
    except (TypeError, ValueError):
        increments = []
    mean = positive_or_none(np.mean(increments)) if increments else None
    if mean is not None:
        return 1000.0 / mean, "FrameTimeVector"
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = positive_or_none(header.get(keyword))
        if rate is not None:
            return rate, keyword
    return None, None


_SUPPORTED_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT",
                          "PALETTE COLOR")
PALETTE = "PALETTE COLOR"


def read_dicom_header(path: str):
    """DICOM header (everything before the pixel data), checked for a decodable 8-bit video."""
    import pydicom  # only needed for DICOM input
    from pydicom.errors import InvalidDicomError

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, force=not is_dicom_file(path))
    except (InvalidDicomError, OSError, ValueError, KeyError, EOFError, TypeError) as e:
        raise BadInputError(f"{path}: not a readable DICOM file ({one_line(e)})") from None
    if "Rows" not in header or "Columns" not in header:
        raise BadInputError(f"{path}: not a readable DICOM image (no Rows/Columns in its header)")
    # no NumberOfFrames: a single image
    frames = int(positive_or_none(header.get("NumberOfFrames")) or 0) if "NumberOfFrames" in header else 1
    if frames == 0:
        raise BadInputError(f"{path}: DICOM file has no frames")
    if frames < MIN_FRAMES:
        raise BadInputError(f"{path}: single-frame DICOM (one image); a video (multi-frame DICOM) is needed")
    photometric = str(header.get("PhotometricInterpretation", "")).strip()
    if photometric not in _SUPPORTED_PHOTOMETRIC:
        raise BadInputError(f"{path}: DICOM PhotometricInterpretation {photometric or '(missing)'} is not "
                            f"supported (supported: {', '.join(_SUPPORTED_PHOTOMETRIC)})")
    if header.get("BitsAllocated") != 8 and not (photometric == PALETTE and header.get("BitsAllocated") == 16):
        raise BadInputError(f"{path}: DICOM pixel data has {header.get('BitsAllocated')} bits allocated; "
                            "only 8-bit echo videos are supported")
    return header


def _dicom_pixel_frames(path: str, header, n_frames: int) -> Iterator[np.ndarray]:
    """pydicom's decoded frames, one at a time (YBR converted to RGB)."""
    from pydicom.pixels import iter_pixels, pixel_array

    transfer_syntax = header.file_meta.get("TransferSyntaxUID")
    if header.PhotometricInterpretation == "YBR_FULL_422" and not getattr(transfer_syntax, "is_encapsulated", True):
        # pydicom 3.0 iter_pixels finds frame 2+ of uncompressed (subsampled) 4:2:2 data at the
        # wrong offset; reading frame by frame by index is right and still one frame in memory
        for index in range(n_frames):
            yield pixel_array(path, index=index)
    else:
        yield from iter_pixels(path)


def _palette_rgb(indices: np.ndarray, header) -> np.ndarray:
    """Palette indices -> uint8 RGB through the header's lookup tables (16-bit entries keep their high byte)."""
    from pydicom.pixels import apply_color_lut

    rgb = apply_color_lut(indices, header)
    return (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb.astype(np.uint8)


def dicom_frames(path: str, header) -> Iterator[np.ndarray]:
    """Frames one at a time: [H, W] grey (MONOCHROME1 inverted) or [H, W, 3] RGB (PALETTE COLOR looked up),
    uint8."""
    transfer_syntax = header.file_meta.get("TransferSyntaxUID") if hasattr(header, "file_meta") else None
    syntax_name = getattr(transfer_syntax, "name", None) or str(transfer_syntax or "unknown transfer syntax")
    invert = header.PhotometricInterpretation == "MONOCHROME1"
    palette = header.PhotometricInterpretation == PALETTE
    try:
        for frame in _dicom_pixel_frames(path, header, int(header.NumberOfFrames)):
            frame = _palette_rgb(frame, header) if palette else np.asarray(frame, dtype=np.uint8)
            if frame.ndim == 3 and frame.shape[-1] == 1:
                frame = frame[..., 0]
            yield 255 - frame if invert else frame
    except Exception as e:  # pydicom raises RuntimeError/ValueError/NotImplementedError/...; make it one line
        message = str(e)
        if "missing dependencies" in message:
            raise BadInputError(_missing_decoder_message(path, syntax_name, message)) from None
        hint = "; MPEG video inside DICOM is not read here: export the clip as MP4/AVI" if "MPEG" in syntax_name else ""
        raise BadInputError(f"{path}: cannot decode DICOM pixel data ({syntax_name}): {one_line(e)}{hint}") from None
