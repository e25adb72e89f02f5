"""datasets.sources.any_video: any echo video (AVI/MP4/DICOM) -> 112x112 model frames.

Real EchoNet sample videos (../shared/data/echonet_samples; tests skip without it) must come out
bit-identical to the project's decoder, also when stored as a DICOM. Everything else is written
by the tests: DICOMs with pydicom (uncompressed; MONOCHROME2, RGB, YBR_FULL_422) and a 640x480
30 fps MP4 with a moving sector, burnt-in text, a static logo, a thin ECG trace and a black
border. This OpenCV build (the opencv-python-headless wheel ships FFmpeg) writes 'mp4v' MP4s;
where a build cannot, the test falls back to an MJPG AVI, which exercises the same code path.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import (ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLSLossless,  # noqa: E402
                         UltrasoundMultiFrameImageStorage, generate_uid)

from datasets.sources.any_video import (expand_inputs, find_moving_sector, load_echo_video, parse_crop,  # noqa: E402
                                        resample_frames)
from datasets.sources.dicom import dicom_frame_rate  # noqa: E402
from datasets.video import decode_video  # noqa: E402
from utils.script.errors import BadInputError, MissingInputError  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "echonet_samples"
SAMPLE_VIDEOS = sorted((SAMPLES / "Videos").glob("*.avi"))
needs_samples = pytest.mark.skipif(not SAMPLE_VIDEOS, reason=f"EchoNet sample videos not found in {SAMPLES}")


# ---------------------------------------------------------------- writers

def write_dicom(path, frames, photometric="MONOCHROME2", pixel_bytes=None, bits=8, transfer_syntax=None,
                **tags):
    """A multi-frame ultrasound DICOM; `frames` uint8 [F, H, W] (grey) or [F, H, W, 3]; `pixel_bytes`
    replaces the stored bytes (subsampled or compressed layouts); `tags` e.g. FrameTime=20."""
    frames = np.asarray(frames)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.SamplesPerPixel = 3 if frames.ndim == 4 else 1
    if frames.ndim == 4:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.PixelData = frames.tobytes() if pixel_bytes is None else pixel_bytes
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def sector_mask(height, width, apex=(320, 90), radius=330, half_angle=38):
    """Boolean mask of an ultrasound fan: apex at the top, opening downwards."""
    ys, xs = np.mgrid[0:height, 0:width]
    dx, dy = xs - apex[0], ys - apex[1]
    return (np.hypot(dx, dy) <= radius) & (np.abs(np.degrees(np.arctan2(dx, dy))) <= half_angle) & (dy >= 0)


def box_of(mask):
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def intersection(a, b):
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, width) * max(0, height)


TEXT = "ACME ECHO  HR 72  12:34:56"
TEXT_ORIGIN = (40, 52)  # bottom-left of the text
LOGO = (560, 120, 50, 180)  # x, y, w, h of a static grey bar
ECG_ROWS = (440, 460)


def write_screen_recording(folder: Path, n_frames=30, fps=30):
    """640x480 grey echo 'screen': moving speckle fan (with a beating dark cavity) on a dark screen
    inside a black border, static text and logo, a growing 2-px ECG trace. -> (path, boxes)."""
    height, width = 480, 640
    path = folder / "screen.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():  # an OpenCV build without an MPEG-4 encoder
        path = folder / "screen.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    fan = sector_mask(height, width)
    (text_w, text_h), baseline = cv2.getTextSize(TEXT, cv2.FONT_HERSHEY_SIMPLEX, 0.9, 2)
    rng = np.random.default_rng(0)
    for t in range(n_frames):
        frame = np.zeros((height, width), np.uint8)
        frame[24:-24, 24:-24] = 20  # screen background; 24 px of black border around it
        speckle = rng.integers(0, 200, (height, width), dtype=np.uint8)
        frame[fan] = speckle[fan]
        cv2.circle(frame, (320, 260), 50 + int(15 * np.sin(2 * np.pi * t / 15)), 5, -1)
        cv2.putText(frame, TEXT, TEXT_ORIGIN, cv2.FONT_HERSHEY_SIMPLEX, 0.9, 255, 2)
        x, y, w, h = LOGO
        frame[y:y + h, x:x + w] = 128
        xs = np.arange(40, 40 + (18 * t) % 560)
        ys = (450 + 6 * np.sin(xs / 9.0)).astype(int)
        frame[ys, xs] = frame[ys + 1, xs] = 230
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    text_box = (TEXT_ORIGIN[0], TEXT_ORIGIN[1] - text_h, text_w, text_h + baseline)
    return path, {"sector": box_of(fan), "text": text_box, "logo": LOGO,
                  "ecg": (40, ECG_ROWS[0], 560, ECG_ROWS[1] - ECG_ROWS[0])}


# ---------------------------------------------------------------- EchoNet videos

@needs_samples
def test_echonet_avis_are_bit_identical_to_the_dataset_decoder():
    for video in SAMPLE_VIDEOS:
        expected = decode_video(video)
        frames, info = load_echo_video(video)
        assert frames.dtype == np.uint8 and frames.shape == expected.shape, video.name
        assert np.array_equal(frames, expected), video.name
        assert info.crop is None and info.crop_text == ""
        assert (info.source_fps, info.fps, info.n_frames_original, info.n_frames) == (50.0, 50.0, len(expected),
                                                                                      len(expected))


@needs_samples
@pytest.mark.parametrize("name, rate_tag", [("clip.dcm", {"FrameTime": 20}),
                                            ("IM000001", {"RecommendedDisplayFrameRate": 50})])
def test_dicom_of_an_echonet_video_gives_its_grey_frames(tmp_path, name, rate_tag):
    """The DICOM stores the AVI's decoded green channel (grey, MONOCHROME2, multi-frame). Result:
    exactly that channel in all three channels; so it differs from the AVI's RGB frames by at most
    the AVI's own channel spread (MJPG decoding makes R and B differ from G by up to 2 levels)."""
    avi = decode_video(SAMPLE_VIDEOS[0])
    path = write_dicom(tmp_path / name, avi[..., 1], **rate_tag)
    frames, info = load_echo_video(path)
    assert np.array_equal(frames, np.repeat(avi[..., 1:2], 3, axis=-1))
    spread = np.abs(avi.astype(int) - avi[..., 1:2]).max()
    assert 0 < spread <= 2
    assert np.abs(frames.astype(int) - avi).max() == spread
    assert info.source_fps == pytest.approx(50.0) and info.n_frames == len(avi)
    assert f"frame rate from DICOM {next(iter(rate_tag))}" in info.notes


# ---------------------------------------------------------------- colour DICOMs

@needs_samples
def test_rgb_dicom_is_made_grey_square_and_112(tmp_path):
    """224x160 RGB frames, each pixel of an EchoNet grey crop repeated 2x2: padding to 224x224
    (32 black rows on each side, centred) and INTER_AREA halving must give back the crop exactly
    between 16 black rows at the top and at the bottom. CineRate 25 -> 50 fps doubles each frame."""
    grey = decode_video(SAMPLE_VIDEOS[0])[:10, 16:96, :, 1]  # [10, 80, 112]
    big = np.repeat(np.repeat(grey, 2, axis=1), 2, axis=2)  # [10, 160, 224]
    path = write_dicom(tmp_path / "rgb.dcm", np.repeat(big[..., None], 3, axis=-1), "RGB", CineRate=25)
    frames, info = load_echo_video(path, crop="none")
    expected = np.zeros((10, 112, 112), np.uint8)
    expected[:, 16:96] = grey
    expected = np.repeat(expected, 2, axis=0)  # 25 -> 50 fps: frame k shows source frame k // 2
    assert np.array_equal(frames, np.repeat(expected[..., None], 3, axis=-1))
    assert info.crop == (0, 0, 224, 160) and info.frame_size == (224, 160)
    assert (info.source_fps, info.fps, info.n_frames_original, info.n_frames) == (25.0, 50.0, 10, 20)


def test_ybr_full_422_dicom_is_read_as_rgb(tmp_path):
    """YBR_FULL_422 stored natively: per row, every pixel pair is Y1 Y2 Cb Cr. Grey content
    (Cb = Cr = 128) must come back exactly; a red patch with chroma shared by each pixel pair
    within the rounding of the YCbCr round trip; 112x112 keeps its colour."""
    rng = np.random.default_rng(1)
    n, size = 4, 112
    luma = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    cb = np.full((n, size, size // 2), 128, np.uint8)
    cr = cb.copy()
    red = np.array([200.0, 40.0, 60.0])  # RGB of the patch (rows 10-29, columns 20-59)
    y_red = 0.299 * red[0] + 0.587 * red[1] + 0.114 * red[2]  # DICOM YBR_FULL (ITU-R BT.601, full range)
    luma[:, 10:30, 20:60] = round(y_red)
    cb[:, 10:30, 10:30] = round(128 - 0.168736 * red[0] - 0.331264 * red[1] + 0.5 * red[2])
    cr[:, 10:30, 10:30] = round(128 + 0.5 * red[0] - 0.418688 * red[1] - 0.081312 * red[2])
    packed = np.stack([luma[..., 0::2], luma[..., 1::2], cb, cr], axis=-1)  # [n, rows, pairs, 4]
    full = np.zeros((n, size, size, 3), np.uint8)  # only for the header's shape
    path = write_dicom(tmp_path / "ybr.dcm", full, "YBR_FULL_422", pixel_bytes=packed.tobytes(),
                       RecommendedDisplayFrameRate=50)
    frames, info = load_echo_video(path)
    outside = np.ones((size, size), bool)
    outside[10:30, 20:60] = False
    assert np.array_equal(frames[:, outside], np.repeat(luma[:, outside][..., None], 3, axis=-1))
    assert np.abs(frames[:, 10:30, 20:60].astype(float) - red).max() <= 2
    assert info.crop is None and info.n_frames == n


def test_jpeg_baseline_dicom_is_decoded(tmp_path):
    """JPEG Baseline, the usual compressed ultrasound syntax, through pydicom's decoder (Pillow here):
    the frames OpenCV's own JPEG decoder gives, give or take 1 level between JPEG libraries."""
    from pydicom.pixels import get_decoder
    if not get_decoder(JPEGBaseline8Bit).is_available:
        pytest.skip("no JPEG Baseline decoder for pydicom installed")
    grey = cv2.GaussianBlur(np.random.default_rng(4).integers(0, 256, (112, 112, 3), dtype=np.uint8), (5, 5), 0)
    grey = grey.transpose(2, 0, 1).copy()  # 3 smooth grey frames
    jpegs = [cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for frame in grey]
    expected = np.stack([cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_GRAYSCALE) for j in jpegs])
    path = write_dicom(tmp_path / "jpeg.dcm", grey, transfer_syntax=JPEGBaseline8Bit,
                       pixel_bytes=encapsulate(jpegs), CineRate=50)
    frames, info = load_echo_video(path)
    assert frames.shape == (3, 112, 112, 3) and np.abs(frames[..., 0].astype(int) - expected).max() <= 1
    assert np.array_equal(frames[..., 0], frames[..., 2]) and info.source_fps == 50.0


def test_monochrome1_is_inverted(tmp_path):
    frames_in = np.random.default_rng(2).integers(0, 256, (3, 112, 112), dtype=np.uint8)
    frames, info = load_echo_video(write_dicom(tmp_path / "m1.dcm", frames_in, "MONOCHROME1"))
    assert np.array_equal(frames[..., 0], 255 - frames_in) and info.source_fps is None
    assert any("frame rate unknown" in note for note in info.notes)


# ---------------------------------------------------------------- screen recording: auto crop

def test_auto_crop_finds_the_moving_sector_of_a_screen_recording(tmp_path):
    path, boxes = write_screen_recording(tmp_path)
    frames, info = load_echo_video(path)
    assert frames.shape == (50, 112, 112, 3) and frames.dtype == np.uint8  # 30 frames at 30 -> 50 fps
    assert (info.source_fps, info.fps, info.n_frames_original) == (30.0, 50.0, 30)
    assert np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 0], frames[..., 2])
    box, sector = info.crop, boxes["sector"]
    for overlay in ("text", "logo", "ecg"):
        assert intersection(box, boxes[overlay]) == 0, (overlay, box, boxes[overlay])
    assert intersection(box, sector) >= 0.97 * sector[2] * sector[3]  # nearly all of the sector ...
    assert box[2] * box[3] <= 1.15 * sector[2] * sector[3]  # ... and not much more
    assert info.crop_text == ",".join(map(str, box))

    # resampling 30 -> 50 fps: output frame k is source frame floor(k * 30 / 50)
    at_source_rate, info_0 = load_echo_video(path, target_fps=0)
    assert len(at_source_rate) == 30 and info_0.fps == 30.0 and info_0.crop == box
    assert np.array_equal(frames, at_source_rate[np.floor(np.arange(50) * 0.6 + 1e-6).astype(int)])


def test_crop_none_and_explicit_box(tmp_path):
    path, boxes = write_screen_recording(tmp_path, n_frames=4)
    _, info = load_echo_video(path, crop="none", target_fps=0)
    assert info.crop == (0, 0, 640, 480)
    frames, info = load_echo_video(path, crop="117,90,407,330", target_fps=0)
    assert info.crop == (117, 90, 407, 330) and frames.shape == (4, 112, 112, 3)
    with pytest.raises(BadInputError, match=f"{path}: crop box .* exceeds the frame \\(640x480\\)"):
        load_echo_video(path, crop=(600, 0, 100, 100))


def test_find_moving_sector_ignores_static_and_thin_moving_things():
    rng = np.random.default_rng(3)
    frames = []
    for t in range(6):
        frame = np.full((200, 300), 40, np.uint8)  # static grey everywhere
        frame[50:150, 100:220] = rng.integers(0, 255, (100, 120))  # the moving region
        frame[180, :(t + 1) * 40] = 255  # a 1-px line that grows (ECG sweep)
        frames.append(frame)
    x, y, w, h = find_moving_sector(frames)
    # the region (100, 50, 120, 100), give or take the 3-px blur of the motion map
    assert np.abs(np.array([x, y, x + w, y + h]) - [100, 50, 220, 150]).max() <= 1
    assert find_moving_sector([np.zeros((50, 50), np.uint8)] * 5) is None  # nothing moves


def test_parse_crop():
    assert parse_crop("auto") == "auto" and parse_crop(" None ") == "none"
    assert parse_crop("1, 2,30,40") == (1, 2, 30, 40) and parse_crop((0, 0, 5, 6)) == (0, 0, 5, 6)
    for bad in ("1,2,3", "1,2,0,4", "-1,0,4,4", "a,b,c,d", (1.5, 2, 3, 4), "square"):
        with pytest.raises(BadInputError, match="crop must be 'auto', 'none' or x,y,w,h"):
            parse_crop(bad)


# ---------------------------------------------------------------- time

def test_dicom_frame_rate_prefers_the_acquisition_timing():
    header = pydicom.Dataset()
    assert dicom_frame_rate(header) == (None, None)
    header.RecommendedDisplayFrameRate = 30  # a playback hint only
    assert dicom_frame_rate(header) == (30.0, "RecommendedDisplayFrameRate")
    header.CineRate = 25
    assert dicom_frame_rate(header) == (25.0, "CineRate")
    header.FrameTimeVector = [0, 20, 20, 20]
    assert dicom_frame_rate(header) == (pytest.approx(50.0), "FrameTimeVector")
    header.FrameTime = 40
    assert dicom_frame_rate(header) == (25.0, "FrameTime")
    header.FrameTime, header.FrameTimeVector = 0, [0]  # unusable values are skipped
    assert dicom_frame_rate(header) == (25.0, "CineRate")


def test_resample_frames():
    frames = np.arange(6)
    out, fps, note = resample_frames(frames, 30, 50)
    assert out.tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 4, 5] and fps == 50.0 and "30 -> 50" in note
    out, fps, _ = resample_frames(np.arange(10), 100, 50)
    assert out.tolist() == [0, 2, 4, 6, 8] and fps == 50.0
    for source, target, fps_out, words in ((None, 50, None, "frame rate unknown"),
                                           (30, 0, 30, "disabled"), (50.1, 50, 50.1, None)):
        out, fps, note = resample_frames(frames, source, target)
        assert out is frames and fps == fps_out
        assert (note is None) if words is None else (words in note)


# ---------------------------------------------------------------- errors, one line naming the file

def assert_one_line_naming(error, path):
    message = str(error.value)
    assert str(path) in message and "\n" not in message, message


@pytest.mark.parametrize("case, words", [
    ("corrupt.avi", "cannot be opened as a video"),
    ("corrupt.dcm", "not a readable DICOM"),
    ("zero_frames.avi", "has no frames"),
    ("zero_frames.dcm", "DICOM file has no frames"),
    ("single_frame.dcm", "single-frame DICOM"),
    ("no_frame_count.dcm", "single-frame DICOM"),
    ("sixteen_bits.dcm", "only 8-bit"),
    ("truncated.dcm", "cannot decode DICOM pixel data"),
    ("three_frames_at_200fps.avi", "3 frames at 200 fps leave 1 at 50 fps; at least 2"),
])
def test_bad_videos_give_one_line_errors(tmp_path, case, words):
    path = tmp_path / case
    frames = np.zeros((3, 16, 16), np.uint8)
    if case.startswith("corrupt"):
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    elif case == "zero_frames.avi":
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
        writer.release()  # a valid AVI header without frames
    elif case == "zero_frames.dcm":
        write_dicom(path, frames, pixel_bytes=b"", NumberOfFrames=0)
    elif case == "single_frame.dcm":
        write_dicom(path, frames[:1])
    elif case == "no_frame_count.dcm":
        write_dicom(path, frames[:1])
        dataset = pydicom.dcmread(path)
        del dataset.NumberOfFrames
        dataset.save_as(path)
    elif case == "sixteen_bits.dcm":
        write_dicom(path, frames.astype(np.uint16), bits=16)
    elif case == "truncated.dcm":
        write_dicom(path, frames, pixel_bytes=frames.tobytes()[:300])
    elif case == "three_frames_at_200fps.avi":  # resampled to 50 fps: one frame
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 200, (112, 112))
        for level in (40, 120, 200):
            writer.write(np.full((112, 112, 3), level, np.uint8))
        writer.release()
    with pytest.raises(BadInputError, match=words) as error:
        load_echo_video(path)
    assert_one_line_naming(error, path)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(MissingInputError) as error:
        load_echo_video(tmp_path / "absent.mp4")
    assert_one_line_naming(error, tmp_path / "absent.mp4")
    with pytest.raises(BadInputError, match="is not a file"):
        load_echo_video(tmp_path)
    path = write_dicom(tmp_path / "ok.dcm", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(BadInputError, match="target_fps must be a positive number"):
        load_echo_video(path, target_fps=-5)
    with pytest.raises(BadInputError, match="crop must be"):
        load_echo_video(path, crop="sector")


def test_missing_decoder_names_the_package(tmp_path):
    from pydicom.pixels import get_decoder
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    path = write_dicom(tmp_path / "jpegls.dcm", np.zeros((2, 8, 8), np.uint8), transfer_syntax=JPEGLSLossless,
                       pixel_bytes=encapsulate([b"\xff\xd8 not really JPEG-LS \xff\xd9"] * 2))
    with pytest.raises(BadInputError, match="JPEG-LS.*no decoder is installed: pip install") as error:
        load_echo_video(path)
    assert_one_line_naming(error, path)
    assert 'pip install "pylibjpeg>=2.0" "pylibjpeg-libjpeg>=2.1"' in str(error.value)  # pure-pip option first


# ---------------------------------------------------------------- finding the inputs

def test_expand_inputs(tmp_path, monkeypatch):
    frames = np.zeros((2, 8, 8), np.uint8)
    root = tmp_path / "study"
    (root / "a" / "b").mkdir(parents=True)
    for name in ("x.avi", "a/y.MP4", "a/b/z.mkv", "a/notes.txt", "list.csv", "a/b/.hidden.avi", "a/readme"):
        (root / name).write_bytes(b"not inspected")
    write_dicom(root / "a" / "b" / "IM0001", frames)  # DICOM without extension
    write_dicom(root / "DICOMDIR", frames)  # a DICOM index, not a video
    videos = [root / "a" / "b" / "IM0001", root / "a" / "b" / "z.mkv", root / "a" / "y.MP4", root / "x.avi"]

    assert expand_inputs([root]) == videos
    assert expand_inputs([root / "a", root / "x.avi", str(root / "x.avi")]) == videos  # no duplicates
    assert expand_inputs([root / "list.csv"]) == [root / "list.csv"]  # named explicitly: always tried
    assert expand_inputs([str(root / "**" / "*.avi")]) == [root / "x.avi"]  # hidden file skipped
    assert expand_inputs([str(root / "*")]) == videos  # the folder 'a' matched: searched; list.csv skipped
    monkeypatch.chdir(root)
    assert expand_inputs(["a/b/*"]) == [Path("a/b/IM0001"), Path("a/b/z.mkv")]

    with pytest.raises(MissingInputError, match="input .*nothing.avi does not exist"):
        expand_inputs([root / "nothing.avi"])
    with pytest.raises(MissingInputError, match="no file matches .*\\*.mov"):
        expand_inputs([str(root / "*.mov")])
    (root / "empty").mkdir()
    with pytest.raises(BadInputError, match="folder .*empty holds no video files"):
        expand_inputs([root / "empty"])
