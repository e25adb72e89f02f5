"""The ultrasound regions of a DICOM header (SequenceOfUltrasoundRegions, PS3.3 C.8.5.5): what each part of the
frame holds, and the box of the 2D tissue image, the crop the standard itself gives.

`read_regions` lists them; `region_skip_reason` says why a loop whose regions hold colour flow, spectral Doppler,
M-mode or no 2D tissue image is not an EchoNet-like greyscale loop ('' when it is, or when there are no regions:
absent regions decide nothing); `tissue_crop` is the box of the largest 2D tissue region, clipped to the frame
and cut clear of any waveform region (an ECG strip) that overlaps it.
"""
from __future__ import annotations

from dataclasses import dataclass

# RegionSpatialFormat (C.8.5.5.1.1)
FORMAT_2D, FORMAT_M_MODE, FORMAT_SPECTRAL, FORMAT_WAVEFORM = 1, 2, 3, 4
# RegionDataType (C.8.5.5.1.2)
TISSUE, COLOUR_FLOW, PW_SPECTRAL, CW_SPECTRAL = 1, 2, 3, 4
DOPPLER_TRACES = (5, 6, 7)  # mean, mode, max trace of a spectral Doppler display
ECG_TRACE = 10
EDGE_TOLERANCE = 0.02  # a box may overrun the frame by this fraction of its side (Philips: MaxX1 = Columns)

Box = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class Region:
    spatial_format: int | None
    data_type: int | None
    box: Box | None  # None when the location is missing or empty


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read_regions(header) -> list[Region]:
    """The regions of a pydicom header, in order ([] when it has none)."""
    regions = []
    for item in header.get("SequenceOfUltrasoundRegions") or []:
        corners = [_int(item.get(k)) for k in ("RegionLocationMinX0", "RegionLocationMinY0",
                                               "RegionLocationMaxX1", "RegionLocationMaxY1")]
        box = None
        if None not in corners and corners[2] >= corners[0] and corners[3] >= corners[1]:
            x0, y0, x1, y1 = corners  # inclusive corners
            box = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
        regions.append(Region(_int(item.get("RegionSpatialFormat")), _int(item.get("RegionDataType")), box))
    return regions


def region_skip_reason(regions: list[Region]) -> str:
    """Why the regions say this is no greyscale 2D loop, or '' (also when there are no regions)."""
    if not regions:
        return ""
    kinds = {r.data_type for r in regions}
    formats = {r.spatial_format for r in regions}
    if COLOUR_FLOW in kinds:
        return "colour Doppler: an ultrasound region holds colour flow (RegionDataType 2)"
    if kinds & {PW_SPECTRAL, CW_SPECTRAL, *DOPPLER_TRACES} or FORMAT_SPECTRAL in formats:
        return "spectral Doppler: an ultrasound region holds a Doppler spectrum or trace"
    if FORMAT_M_MODE in formats:
        return "M-mode: an ultrasound region is an M-mode display (RegionSpatialFormat 2)"
    if not any(r.spatial_format == FORMAT_2D and r.data_type == TISSUE for r in regions):
        return "no 2D tissue image among the ultrasound regions"
    return ""


def _clip(box: Box, width: int, height: int) -> Box | None:
    """The box inside the frame, or None when it overruns the frame by more than EDGE_TOLERANCE."""
    x, y, w, h = box
    if x < 0 or y < 0 or x + w > width * (1 + EDGE_TOLERANCE) or y + h > height * (1 + EDGE_TOLERANCE):
        return None
    w, h = min(w, width - x), min(h, height - y)
    return (x, y, w, h) if w > 0 and h > 0 else None


def _cut_away(box: Box, other: Box) -> Box:
    """`box` without the rows (or columns) of `other` where the two overlap, keeping the larger part."""
    x, y, w, h = box
    ox, oy, ow, oh = other
    if ox >= x + w or ox + ow <= x or oy >= y + h or oy + oh <= y:
        return box
    keeps = [(x, y, w, oy - y), (x, oy + oh, w, y + h - oy - oh),  # above, below the strip
             (x, y, ox - x, h), (ox + ow, y, x + w - ox - ow, h)]  # left, right of it
    return max(keeps, key=lambda b: max(0, b[2]) * max(0, b[3]))


def tissue_crop(regions: list[Region], width: int, height: int) -> tuple[Box | None, str]:
    """(crop box, note): the largest 2D tissue region inside a width x height frame, with no waveform region
    (ECG, pulse, Doppler trace) in it; (None, why) when the header offers no usable box."""
    tissue = [r.box for r in regions if r.spatial_format == FORMAT_2D and r.data_type == TISSUE and r.box]
    if not tissue:
        return None, ""
    largest = max(tissue, key=lambda b: b[2] * b[3])
    box = _clip(largest, width, height)
    if box is None:
        return None, (f"the 2D tissue region {','.join(map(str, largest))} lies outside the {width}x{height} frame: "
                      "auto crop used")
    for other in (r.box for r in regions if r.spatial_format == FORMAT_WAVEFORM and r.box):
        box = _cut_away(box, other)
    if box[2] <= 0 or box[3] <= 0:
        return None, "the 2D tissue region lies under a waveform region: auto crop used"
    note = f"crop from the DICOM 2D tissue region {','.join(map(str, box))}"
    if len(tissue) > 1:
        note += f" (the largest of {len(tissue)} 2D tissue regions)"
    return box, note
