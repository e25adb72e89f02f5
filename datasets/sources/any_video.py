"""Read any echo video (AVI/MP4/MOV/MKV or DICOM) and turn it into EchoNet-Dynamic model input, as the
EchoNet authors prepared theirs (grey, 112x112, ~50 fps, only the ultrasound sector). `load_echo_video`:

1. decodes once, every frame turned grey at once (DICOM through `datasets.sources.dicom`);
2. crops the sector: 'auto' takes a DICOM's 2D tissue region (`ultrasound_regions`), else finds the MOVING
   sector from a per-pixel motion map with a hysteresis; 'none' keeps the frame; or a box x,y,w,h; the share of
   coloured pixels in the crop is measured on the way (`colour_flow`: colour Doppler is skipped by scoring/);
3. pads the crop square with black (centred, never stretched) and resizes it to 112x112 (INTER_AREA);
4. resamples to `target_fps` (default 50) by nearest frame, never blending two heart phases.
A 112x112 video (an EchoNet AVI) skips 1-3, so its frames are bit-identical to the test pipeline's.
`expand_inputs` turns files, folders and globs into the list of files to read. Errors are one line naming the
file: MissingInputError, BadInputError. The measured memory, the auto crop's thresholds and its check on the
EchoNet samples are in the README ("Use a trained model on your own videos").
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

import cv2
import numpy as np

from utils.script.errors import BadInputError, MissingInputError
from utils.script.validators import positive_or_none

from ..video import SIZE, VIDEO_EXTENSIONS, decode_video
from .colour_flow import ColourMeter
from .dicom import DICOM_EXTENSIONS, MIN_FRAMES, dicom_frame_rate, dicom_frames, is_dicom_file, read_dicom_header
from .ultrasound_regions import Region, read_regions, tissue_crop

DEFAULT_FPS = 50.0  # EchoNet-Dynamic frame rate
FPS_TOLERANCE = 0.005  # rates within 0.5% of the target are not resampled

# auto crop
MOTION_FLOOR = 1.0  # grey levels of mean frame-to-frame change that surely are motion
MOTION_RELATIVE = 0.1  # ... and this fraction of the strong (99th percentile) motion
WEAK_MOTION = 0.3  # any change above codec noise: grows the sector into its dark parts
BLUR_FRACTION = 0.01  # blur side / frame side: fills speckle holes in the motion map
OPEN_FRACTION = 0.02  # opening side / frame side: removes moving lines thinner than this
MIN_SECTOR_FRACTION = 0.01  # a sector covers at least this part of the frame
# a folder or glob also lists GIFs (OpenCV reads them; echo datasets are shared as GIFs too)
LISTED_TEXT = " ".join(VIDEO_EXTENSIONS)

Box = tuple[int, int, int, int]  # x, y, width, height in source pixels
CropMode = Union[str, Box]


@dataclass
class EchoVideoInfo:
    """What `load_echo_video` did to one file (for the output CSV and the user)."""

    path: str
    source_fps: float | None  # rate found in the file; None if none
    fps: float | None  # rate of the returned frames
    n_frames_original: int
    n_frames: int
    frame_size: tuple[int, int]  # source width, height
    crop: Box | None  # box used; None when a 112x112 video was taken as it is
    notes: list[str] = field(default_factory=list)
    crop_source: str = "none"  # 'region' (DICOM 2D tissue region), 'auto' (moving sector), 'none', 'given'
    colour_fraction: float = 0.0  # median share of coloured pixels in the crop (colour_flow)

    @property
    def crop_text(self) -> str:
        """The crop box as 'x,y,w,h' ('' when no crop was applied), e.g. for a CSV cell."""
        return "" if self.crop is None else ",".join(map(str, self.crop))


# ---------------------------------------------------------------- finding the input files

def _is_video_file(folder: str, name: str) -> bool:
    """Folder/glob rule: a video or DICOM extension, or any other file with the DICM marker. On strings: Path
    objects would cost seconds in a listing of 100,000 files."""
    if name.startswith(".") or name.upper() == "DICOMDIR":  # hidden files, DICOM indexes
        return False
    suffix = os.path.splitext(name)[1].lower()
    return suffix in VIDEO_EXTENSIONS or suffix in DICOM_EXTENSIONS or is_dicom_file(os.path.join(folder, name))


def _looks_like_video(path: Path) -> bool:
    return _is_video_file(os.fspath(path.parent), path.name)


def _videos_in_folder(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(root)  # parsed once per folder, not once per file
        found += [base / name for name in files if _is_video_file(root, name)]
    return found


def _resolver():
    """path -> os.path.realpath(path), resolving each folder once (a file that is no link needs no more)."""
    folders: dict[str, str] = {}

    def resolve(path: Path) -> str:
        folder = os.path.dirname(os.path.abspath(path))
        if folder not in folders:
            folders[folder] = os.path.realpath(folder)
        return os.path.realpath(path) if os.path.islink(path) else os.path.join(folders[folder], path.name)
    return resolve


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Video files named by `inputs`, sorted, without duplicates.

    A file given by name is always tried (whatever its extension). A folder is searched
    recursively and a glob pattern ('**' allowed) is expanded; there only videos (.avi .mp4 .mov
    .mkv .gif), .dcm/.dicom files and files with the DICOM marker are kept (so .csv/.txt/.png/.json
    and DICOMDIR are skipped). A missing path, a glob without matches or a folder/glob without
    videos is a one-line error naming it.
    """
    chosen: dict[str, Path] = {}  # resolved -> as given
    resolve = _resolver()
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = _videos_in_folder(path)
            if not found:
                raise BadInputError(f"folder {text} holds no video files ({LISTED_TEXT} or DICOM)")
        elif any(c in text for c in "*?["):  # a glob pattern
            matches = [Path(m) for m in glob.glob(text, recursive=True)]
            if not matches:
                raise MissingInputError(f"no file matches {text}")
            found = [m for m in matches if m.is_file() and _looks_like_video(m)]
            for folder in (m for m in matches if m.is_dir()):
                found += _videos_in_folder(folder)
            if not found:
                raise BadInputError(f"{text} matches no video files ({LISTED_TEXT} or DICOM)")
        else:
            raise MissingInputError(f"input {text} does not exist")
        for video in found:
            chosen.setdefault(resolve(video), video)
    return sorted(chosen.values(), key=str)


# ---------------------------------------------------------------- crop, square, resize

def parse_crop(value: str | Sequence[int]) -> CropMode:
    """'auto', 'none' or a box 'x,y,w,h' (text or 4 ints) -> the crop mode load_echo_video takes."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "none"):
            return text
        try:
            box = tuple(int(part) for part in text.split(","))
        except ValueError:
            box = ()
    else:
        parts = tuple(value) if isinstance(value, (tuple, list)) else ()
        box = parts if all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in parts) else ()
    if len(box) != 4 or min(box[:2]) < 0 or min(box[2:]) <= 0:
        raise BadInputError(f"crop must be 'auto', 'none' or x,y,w,h (integers, x, y >= 0, w, h > 0), got {value!r}")
    return tuple(int(v) for v in box)


def _odd(n: float) -> int:
    return max(3, int(round(n)) | 1)


def motion_map(grey_frames: Sequence[np.ndarray]) -> np.ndarray:
    """Per pixel mean |frame[t] - frame[t-1]| over the video, float32 [H, W]."""
    total = np.zeros(grey_frames[0].shape, np.float32)
    for previous, current in zip(grey_frames[:-1], grey_frames[1:]):
        total += cv2.absdiff(previous, current)  # uint8 -> float32 accumulation
    return total / max(1, len(grey_frames) - 1)


def find_moving_sector(grey_frames: Sequence[np.ndarray]) -> Box | None:
    """Bounding box (x, y, w, h) of the largest moving region of a grey video, or None if
    nothing moves over at least 1% of the frame (see the module docstring for the method)."""
    if len(grey_frames) < 2:
        return None
    height, width = grey_frames[0].shape
    side = min(height, width)
    motion = cv2.blur(motion_map(grey_frames), (_odd(BLUR_FRACTION * side),) * 2)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_odd(OPEN_FRACTION * side),) * 2)

    def moving(threshold: float) -> np.ndarray:
        mask = cv2.morphologyEx((motion > threshold).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)

    # the strongly moving core of the sector: its largest component
    strong = moving(max(MOTION_FLOOR, MOTION_RELATIVE * float(np.percentile(motion, 99))))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(strong, connectivity=8)
    if count < 2:  # label 0 is the background
        return None
    core = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if core.sum() < MIN_SECTOR_FRACTION * height * width:
        return None
    # grown by the weakly moving parts touching it (dark near field at the apex, dim edges)
    _, labels = cv2.connectedComponents(moving(WEAK_MOTION) | core.astype(np.uint8), connectivity=8)
    sector = labels == labels[core][0]
    ys, xs = np.nonzero(sector)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def square_and_resize(grey: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Pad the shorter side with black (content centred), then resize to size x size (INTER_AREA)."""
    height, width = grey.shape
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    square = cv2.copyMakeBorder(grey, top, side - height - top, left, side - width - left,
                                cv2.BORDER_CONSTANT, value=0)
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- time

def resample_frames(frames: np.ndarray, source_fps: float | None, target_fps: float = DEFAULT_FPS
                    ) -> tuple[np.ndarray, float | None, str | None]:
    """Frames at `target_fps` by nearest-frame sampling -> (frames, fps of the result, note or None).

    Output frame k is source frame floor(k * source_fps / target_fps) (the one on screen at time
    k / target_fps); the count is round(n * target_fps / source_fps), so the duration is kept.
    Unknown `source_fps`, `target_fps` 0 (disabled) or a rate within 0.5% of the target keep the
    frames unchanged.
    """
    if not target_fps:
        return frames, source_fps, "temporal resampling disabled: frames kept at the source rate"
    if source_fps is None:
        return frames, None, (f"frame rate unknown: frames kept as they are (the model expects "
                              f"~{target_fps:g} fps)")
    if abs(source_fps - target_fps) <= FPS_TOLERANCE * target_fps:
        return frames, source_fps, None
    n_out = max(1, int(round(len(frames) * target_fps / source_fps)))
    # tiny epsilon: k * 30 / 50 must give 3, not 2.9999999
    indices = np.floor(np.arange(n_out) * (source_fps / target_fps) + 1e-6).astype(np.int64)
    indices = np.minimum(indices, len(frames) - 1)
    return frames[indices], float(target_fps), f"resampled {source_fps:g} -> {target_fps:g} fps (nearest frame)"


# ---------------------------------------------------------------- OpenCV containers

def _open_capture(path: str) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise BadInputError(f"{path}: cannot be opened as a video (corrupt, or neither a video OpenCV reads "
                            "nor DICOM)")
    return capture


def _opencv_fps(capture: cv2.VideoCapture) -> float | None:
    rate = positive_or_none(capture.get(cv2.CAP_PROP_FPS))
    return rate if rate is not None and rate < 1000 else None  # some containers report nonsense


def _opencv_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """RGB frames (their grey is BGR2GRAY's, bit for bit): the colour is measured before they turn grey."""
    while True:
        ok, bgr = capture.read()
        if not ok:
            return
        yield bgr if bgr.ndim == 2 else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------- the entry point

@dataclass
class _Source:
    """An opened video: header facts and a one-pass iterator over its frames."""

    dicom: bool
    width: int
    height: int
    fps: float | None
    frames: Iterator[np.ndarray]  # [H, W] grey or [H, W, 3] RGB, uint8
    notes: list[str]
    capture: cv2.VideoCapture | None = None  # released by the caller
    regions: list[Region] = field(default_factory=list)  # a DICOM's ultrasound regions


def _open_source(path: str) -> _Source:
    if is_dicom_file(path) or Path(path).suffix.lower() in DICOM_EXTENSIONS:
        header = read_dicom_header(path)
        fps, tag = dicom_frame_rate(header)
        note = f"frame rate from DICOM {tag}" if tag else "no frame rate in the DICOM header"
        return _Source(True, int(header.Columns), int(header.Rows), fps, dicom_frames(path, header), [note],
                       regions=read_regions(header))
    capture = _open_capture(path)
    return _Source(False, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                   _opencv_fps(capture), _opencv_frames(capture), [], capture)


def _to_grey(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame[..., None], 3, axis=-1) if frame.ndim == 2 else frame


def first_frame(path: str | os.PathLike) -> np.ndarray:
    """The first frame of the original file, RGB uint8 [H, W, 3], read as load_echo_video reads it (the frame
    its sector crop is found on)."""
    source = _open_source(os.fspath(path))
    try:
        return _to_rgb(next(source.frames)).copy()
    finally:
        if source.capture is not None:
            source.capture.release()


def _as_decoded(path: str, source: _Source) -> np.ndarray:
    """A 112x112 video as it is: the project's decoder for OpenCV files (bit-identical frames)."""
    if not source.dicom:
        source.capture.release()
        return decode_video(path)
    frames = [_to_rgb(frame) for frame in source.frames]
    return np.stack(frames) if frames else np.zeros((0, SIZE, SIZE, 3), np.uint8)


def _choose_box(path: str, source: _Source, crop: CropMode, grey: list[np.ndarray]) -> tuple[Box, str]:
    """(crop box, where it came from: 'region', 'auto', 'none' or 'given') for the decoded frames."""
    whole = (0, 0, source.width, source.height)
    if crop == "none":
        return whole, "none"
    if isinstance(crop, tuple):
        x, y, w, h = crop
        if x + w > source.width or y + h > source.height:
            raise BadInputError(f"{path}: crop box x={x},y={y},w={w},h={h} exceeds the frame "
                                f"({source.width}x{source.height})")
        return crop, "given"
    box, note = tissue_crop(source.regions, source.width, source.height)  # the standard's own answer first
    if note:
        source.notes.append(note)
    if box is not None:
        return box, "region"
    box = find_moving_sector(grey)
    if box is None:
        source.notes.append("auto crop found no moving sector: whole frame used")
        return whole, "auto"
    return box, "auto"


def _cropped_to_model(path: str, source: _Source, crop: CropMode, colour: ColourMeter
                      ) -> tuple[np.ndarray, Box, str]:
    """Grey frames -> crop box -> square -> 112x112 in three channels; `colour` sees every frame before."""
    grey = []
    for frame in source.frames:
        colour.add(frame)
        grey.append(_to_grey(frame))
    if grey:  # the decoded size is the truth (a container header may say otherwise)
        source.height, source.width = grey[0].shape
    box, crop_source = _choose_box(path, source, crop, grey)
    x, y, w, h = box
    frames = np.empty((len(grey), SIZE, SIZE, 3), np.uint8)
    for i, frame in enumerate(grey):
        frames[i] = square_and_resize(frame[y:y + h, x:x + w])[..., None]
        grey[i] = None  # free each full-size frame once used
    return frames, box, crop_source


def load_echo_video(path: str | os.PathLike, crop: CropMode = "auto", target_fps: float = DEFAULT_FPS
                    ) -> tuple[np.ndarray, EchoVideoInfo]:
    """Model input frames of any echo video -> (uint8 RGB [F, 112, 112, 3], EchoVideoInfo).

    `crop`: 'auto' (a DICOM's 2D tissue region, else the moving sector), 'none' (whole frame) or a box (x, y, w,
    h) in source pixels; info.crop_source says which, info.colour_fraction how coloured the crop is.
    `target_fps`: frame rate of the result (0: keep the source rate). See the module docstring.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingInputError(f"video file {path} does not exist")
    if not os.path.isfile(path):
        raise BadInputError(f"{path} is not a file")
    crop = parse_crop(crop)
    if positive_or_none(target_fps) is None and target_fps != 0:
        raise BadInputError(f"target_fps must be a positive number of frames per second, or 0, got {target_fps!r}")

    source = _open_source(path)
    colour = ColourMeter()
    try:
        if (source.width, source.height) == (SIZE, SIZE) and not isinstance(crop, tuple):
            source.notes.append(f"already {SIZE}x{SIZE}: frames used as decoded (no grey conversion, crop or resize)")
            frames, box, crop_source = _as_decoded(path, source), None, "none"
            for frame in frames:
                colour.add(frame)
        else:
            frames, box, crop_source = _cropped_to_model(path, source, crop, colour)
    finally:
        if source.capture is not None:
            source.capture.release()

    if len(frames) < MIN_FRAMES:
        raise BadInputError(f"{path}: video has no frames" if len(frames) == 0 else
                            f"{path}: video has only 1 frame; at least {MIN_FRAMES} are needed")
    n_original = len(frames)
    frames, fps, note = resample_frames(frames, source.fps, target_fps)
    if len(frames) < MIN_FRAMES:  # a very short clip filmed far faster than the target rate
        raise BadInputError(f"{path}: {n_original} frames at {source.fps:g} fps leave {len(frames)} at "
                            f"{target_fps:g} fps; at least {MIN_FRAMES} are needed")
    if note:
        source.notes.append(note)
    info = EchoVideoInfo(path=path, source_fps=source.fps, fps=fps, n_frames_original=n_original,
                         n_frames=len(frames), frame_size=(source.width, source.height), crop=box, notes=source.notes,
                         crop_source=crop_source,
                         colour_fraction=colour.fraction(box or (0, 0, source.width, source.height)))
    return frames, info
