"""What kind of ultrasound loop a DICOM header says it is, before any pixel is read or any model runs.

- ImageType value 3 names the anatomy (PS3.3 C.8.5.6.1.1 defined terms): another organ (OBSTETRICAL,
  ABDOMINAL, SMALL PARTS, ...) or a fetal heart is skipped; the heart through the oesophagus or from inside
  (TRANSESOPHAGEAL, INTRACARDIAC: other views than the apical ones EchoNet holds) is skipped; EPICARDIAL (the
  probe on the heart, apical-like views) is scored with a note. Vendors' loose spellings are matched by prefix.
- ImageType value 4 is a hexadecimal bitmap of the imaging modes: no 2D bit, or any Doppler / M-mode / 3D /
  spatially-related-frames bit, is skipped.
- The ultrasound regions (datasets.sources.ultrasound_regions): colour flow, spectral, M-mode or no 2D tissue
  region is skipped.
A value that is missing, empty or unknown decides nothing. `loop_kind` -> (skip reason or '', notes).
"""
from __future__ import annotations

from datasets.sources.ultrasound_regions import read_regions, region_skip_reason

# value 3: prefixes of anatomy words that are not the adult heart seen through the chest wall
NOT_HEART = ("ABDOM", "BREAST", "ENDOCAVITARY", "ENDORECTAL", "ENDOVAGINAL", "GYN", "INTRAVASCULAR",
             "MUSCULOSKELETAL", "NEONATAL HEAD", "OBSTET", "OPHTHALM", "PELVI", "RETROPERITONEAL", "SCROT",
             "SMALL PARTS", "TRANSCRANIAL", "TRANSRECTAL", "TRANSVAGINAL", "UROLOG", "VASCULAR")
OTHER_VIEWS = ("TRANSESOPHAGEAL", "INTRACARDIAC")  # the heart, but not in the views the model was trained on
NOTED_WINDOWS = ("EPICARDIAL",)  # the heart through another window that gives apical-like views
FETAL_HEART = "FETAL HEART"

# value 4 bits (C.8.5.6.1.1): 0x0001 is 2D imaging; these make a loop something else than greyscale 2D
MODE_BITS = {0x0002: "M-mode", 0x0004: "CW Doppler", 0x0008: "PW Doppler", 0x0010: "colour Doppler",
             0x0020: "colour M-mode", 0x0040: "3D rendering", 0x0100: "colour power mode",
             0x0400: "spatially related frames (a sweep, not a loop in time)"}
IMAGING_2D = 0x0001


def _image_type(header) -> list[str]:
    value = header.get("ImageType")
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [str(v).strip().upper() for v in values]


def anatomy_reason(anatomy: str) -> tuple[str, str]:
    """(skip reason, note) of ImageType value 3; ('', '') when it decides nothing."""
    if not anatomy:
        return "", ""
    if anatomy.startswith(FETAL_HEART):
        return f"ImageType anatomy {anatomy}: a fetal heart, not an adult transthoracic loop", ""
    if anatomy.startswith(NOT_HEART):
        return f"ImageType anatomy {anatomy}: not the heart", ""
    if anatomy.startswith(OTHER_VIEWS):
        return (f"ImageType anatomy {anatomy}: the heart seen through another window than the chest wall, in "
                "views the model was not trained on (it learnt transthoracic apical loops)"), ""
    if anatomy.startswith(NOTED_WINDOWS):
        return "", (f"ImageType anatomy {anatomy}: the heart through another window than the chest wall; scored "
                    "(apical-like views), less certain than a transthoracic loop")
    return "", ""


def modes_reason(bitmap: str) -> str:
    """The skip reason of ImageType value 4 (a hexadecimal bitmap), '' when it is 2D alone or unreadable."""
    try:
        bits = int(bitmap, 16)
    except ValueError:
        return ""
    found = [name for bit, name in MODE_BITS.items() if bits & bit]
    if found:
        return f"ImageType modes {bitmap}: {', '.join(found)}, not a greyscale 2D loop"
    if not bits & IMAGING_2D:
        return f"ImageType modes {bitmap}: no 2D imaging"
    return ""


def loop_kind(header) -> tuple[str, list[str]]:
    """(skip reason or '', notes) from a pydicom header's ImageType and ultrasound regions."""
    values = _image_type(header)
    reason, note = anatomy_reason(values[2] if len(values) > 2 else "")
    if not reason and len(values) > 3:
        reason = modes_reason(values[3])
    if not reason:
        reason = region_skip_reason(read_regions(header))
    return reason, [note] if note and not reason else []
