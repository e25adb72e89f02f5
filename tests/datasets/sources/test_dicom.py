"""datasets/sources/dicom.py: DICOM echo videos through load_echo_video: grey (MONOCHROME1/2), RGB, YBR_FULL_422
and JPEG Baseline pixel data, the frame rate from the acquisition timing tags, and the package to install when a
compressed syntax has no decoder. The DICOMs are written with pydicom (conftest.write_dicom, uncompressed unless
the test encapsulates frames); two take their frames from an EchoNet sample AVI, a real one (../shared; skipped
without it) and a generated one in its layout (conftest's `samples`)."""
import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, JPEGLSLossless

from conftest import assert_one_line_naming, write_dicom
from datasets.sources.any_video import load_echo_video
from datasets.sources.dicom import dicom_frame_rate
from datasets.video import decode_video
from utils.script.errors import BadInputError

def first_video(samples):
    """The first AVI of an EchoNet sample folder (conftest's `samples`: the real ones, or their generated twin)."""
    return sorted((samples / "Videos").glob("*.avi"))[0]


@pytest.mark.parametrize("name, rate_tag", [("clip.dcm", {"FrameTime": 20}),
                                            ("IM000001", {"RecommendedDisplayFrameRate": 50})])
def test_dicom_of_an_echonet_video_gives_its_grey_frames(tmp_path, samples, name, rate_tag):
    """The DICOM stores the AVI's decoded green channel (grey, MONOCHROME2, multi-frame). Result:
    exactly that channel in all three channels; so it differs from the AVI's RGB frames by at most
    the AVI's own channel spread (MJPG decoding makes R and B differ from G by up to 2 levels)."""
    avi = decode_video(first_video(samples))
    path = write_dicom(tmp_path / name, avi[..., 1], **rate_tag)
    frames, info = load_echo_video(path)
    assert np.array_equal(frames, np.repeat(avi[..., 1:2], 3, axis=-1))
    spread = np.abs(avi.astype(int) - avi[..., 1:2]).max()
    assert 0 < spread <= 2
    assert np.abs(frames.astype(int) - avi).max() == spread
    assert info.source_fps == pytest.approx(50.0) and info.n_frames == len(avi)
    assert f"frame rate from DICOM {next(iter(rate_tag))}" in info.notes


# ---------------------------------------------------------------- colour DICOMs


def test_rgb_dicom_is_made_grey_square_and_112(tmp_path, samples):
    """224x160 RGB frames, each pixel of an EchoNet grey crop repeated 2x2: padding to 224x224
    (32 black rows on each side, centred) and INTER_AREA halving must give back the crop exactly
    between 16 black rows at the top and at the bottom. CineRate 25 -> 50 fps doubles each frame."""
    grey = decode_video(first_video(samples))[:10, 16:96, :, 1]  # [10, 80, 112]
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


# ---------------------------------------------------------------- errors


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


def test_palette_colour_dicom_is_read_through_its_lookup_tables(tmp_path):
    """8-bit indices i with 16-bit tables red = 257 i, green = 257 (255 - i), blue = 257 * 128: each pixel must
    read (i, 255 - i, 128) (the tables' high byte), as pydicom's apply_color_lut gives."""
    cells = np.random.default_rng(0).integers(0, 256, (3, 10, 15), dtype=np.uint8)
    indices = np.repeat(np.repeat(cells, 4, axis=1), 4, axis=2)  # 4x4 cells: the colour meter's blocks
    ramp = np.arange(256, dtype=np.uint16)
    tables = {"Red": ramp * 257, "Green": (255 - ramp) * 257, "Blue": np.full(256, 128 * 257, np.uint16)}
    path = write_dicom(tmp_path / "palette.dcm", indices, "PALETTE COLOR", FrameTime=20)
    ds = pydicom.dcmread(path)
    for colour, table in tables.items():
        ds.add_new(f"{colour}PaletteColorLookupTableDescriptor", "US", [256, 0, 16])
        ds.add_new(f"{colour}PaletteColorLookupTableData", "OW", table.tobytes())
    ds.save_as(path)
    frames, info = load_echo_video(path, crop="none", target_fps=0)
    expected_rgb = np.stack([indices, 255 - indices, np.full_like(indices, 128)], -1)
    expected = np.stack([cv2.resize(np.pad(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), ((10, 10), (0, 0))), (112, 112),
                                    interpolation=cv2.INTER_AREA) for f in expected_rgb])
    assert np.array_equal(frames[..., 0], expected) and info.crop_source == "none"
    assert info.colour_fraction > 0.5  # (i, 255 - i, 128) has a chroma >= 48 for |i - 127.5| >= 24
