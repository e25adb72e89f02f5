"""What kind of loop is it, before any model runs: ultrasound regions (the crop is the 2D tissue box, never the
ECG strip; colour flow, spectral, M-mode, no 2D -> skipped), ImageType anatomy and mode bitmap (missing values
decide nothing), colour flow in the pixels of any file (AVI), and the real vendor files in ../shared, each beside
a generated twin in its layout (palette colour, regions with a waveform region, ImageType; a dithered GIF)."""
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from conftest import SHARED, write_avi, write_dicom
from datasets.sources.any_video import load_echo_video
from datasets.synthetic import colour_loops as loops
from scoring.archive_clips import SCORED, SKIPPED, ArchiveClips, ShortLoopSettings
from scoring.study_objects import screen_dicom

REAL = SHARED / "data" / "real_ultrasound"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real ultrasound files not found in {REAL} (the [generated] "
                                                           "twin runs)")
RULES = ShortLoopSettings(min_frames=2, min_seconds=0)


def region(spatial_format, data_type, x0, y0, x1, y1):
    item = Dataset()
    item.RegionSpatialFormat, item.RegionDataType = spatial_format, data_type
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    return item


def loop_dicom(path, regions=(), image_type=None, colour=False):
    """A 12-frame 400x300 RGB loop (grey speckle, or with a colour Doppler box) with these regions/ImageType."""
    rng = np.random.default_rng(0)
    frames = loops.grey_loop(rng, 12)
    if colour:
        frames = loops.add_flow(frames, rng, 0.2)
    tags = {"SequenceOfUltrasoundRegions": list(regions)} if regions else {}
    if image_type is not None:
        tags["ImageType"] = image_type
    return str(write_dicom(path, frames, "RGB", FrameTime=20, **tags))


def test_crop_is_the_2d_tissue_region_without_the_ecg_strip(tmp_path):
    """2D tissue region x 40..359, y 10..289 (320 x 280); an ECG region over rows 260..299 overlaps its bottom:
    the crop keeps rows 10..259 (250 rows), never an ECG row."""
    path = loop_dicom(tmp_path / "a4c.dcm", [region(1, 1, 40, 10, 359, 289), region(4, 10, 0, 260, 399, 299)])
    _, info = load_echo_video(path)
    assert info.crop == (40, 10, 320, 250) and info.crop_source == "region"
    assert any("crop from the DICOM 2D tissue region 40,10,320,250" in note for note in info.notes)
    item = ArchiveClips([path], 4, 1, rules=RULES)[0]
    assert (item["status"], item["crop"], item["crop_source"]) == (SCORED, "40,10,320,250", "region")


def test_region_outside_the_frame_falls_back_to_the_auto_crop(tmp_path):
    path = loop_dicom(tmp_path / "resized.dcm", [region(1, 1, 84, 31, 595, 414)])  # a 640x480 box on 400x300
    _, info = load_echo_video(path)
    assert info.crop_source == "auto"
    assert any("lies outside the 400x300 frame: auto crop used" in note for note in info.notes)


@pytest.mark.parametrize("regions, reason", [
    ([region(1, 1, 0, 0, 399, 299), region(1, 2, 100, 50, 300, 200)], "colour Doppler: an ultrasound region"),
    ([region(1, 1, 0, 0, 399, 149), region(2, 1, 0, 150, 399, 299)], "M-mode: an ultrasound region"),
    ([region(1, 1, 0, 0, 399, 149), region(3, 3, 0, 150, 399, 299)], "spectral Doppler"),
    ([region(3, 4, 0, 150, 399, 299)], "spectral Doppler"),
    ([region(4, 10, 0, 260, 399, 299), region(0, 13, 0, 0, 20, 100)], "no 2D tissue image among the ultrasound"),
])
def test_regions_that_are_no_greyscale_2d_loop_are_skipped(tmp_path, regions, reason):
    path = loop_dicom(tmp_path / "loop.dcm", regions)
    assert screen_dicom(path).skip.startswith(reason)
    item = ArchiveClips([path], 4, 1, rules=RULES)[0]
    assert item["status"] == SKIPPED and item["error"].startswith(reason) and item["crop_source"] == ""


@pytest.mark.parametrize("image_type, reason", [
    (["ORIGINAL", "PRIMARY", "OBSTETRICAL"], "ImageType anatomy OBSTETRICAL: not the heart"),
    (["ORIGINAL", "PRIMARY", "ABDOM/RAD", "0001"], "ImageType anatomy ABDOM/RAD: not the heart"),
    (["ORIGINAL", "PRIMARY", "FETAL HEART"], "ImageType anatomy FETAL HEART: a fetal heart"),
    (["ORIGINAL", "PRIMARY", "TRANSESOPHAGEAL"], "ImageType anatomy TRANSESOPHAGEAL: the heart seen through"),
    (["ORIGINAL", "PRIMARY", "TRANSTHORACIC", "0011"], "ImageType modes 0011: colour Doppler, not a greyscale"),
    (["ORIGINAL", "PRIMARY", "", "0003"], "ImageType modes 0003: M-mode"),
    (["ORIGINAL", "PRIMARY", "CARDIAC", "0008"], "ImageType modes 0008: PW Doppler"),
    (["ORIGINAL", "PRIMARY", "CARDIAC", "0200"], "ImageType modes 0200: no 2D imaging"),
])
def test_image_type_anatomy_and_modes_skip(tmp_path, image_type, reason):
    assert screen_dicom(loop_dicom(tmp_path / "loop.dcm", image_type=image_type)).skip.startswith(reason)


@pytest.mark.parametrize("image_type", [None, ["ORIGINAL", "PRIMARY"], ["ORIGINAL", "PRIMARY", "", ""],
                                        ["ORIGINAL", "PRIMARY", "TRANSTHORACIC", "0001"],
                                        ["DERIVED", "PRIMARY", "CARDIOLOGY", "not hex"]])
def test_missing_or_unknown_image_type_values_decide_nothing(tmp_path, image_type):
    study = screen_dicom(loop_dicom(tmp_path / "loop.dcm", image_type=image_type))
    assert study.skip == "" and study.notes == []


def test_epicardial_is_scored_with_a_note(tmp_path):
    path = loop_dicom(tmp_path / "epi.dcm", image_type=["ORIGINAL", "PRIMARY", "EPICARDIAL", "0001"])
    item = ArchiveClips([path], 4, 1, rules=RULES)[0]
    assert item["status"] == SCORED
    assert item["notes"][0].startswith("ImageType anatomy EPICARDIAL: the heart through another window")


def test_colour_flow_in_the_pixels_is_skipped_greyscale_scored(tmp_path):
    """AVIs have no header: a colour Doppler box over 20 % of the sector (40 % of it flowing: ~8 % of the
    crop) is skipped, the same loop in grey (with an ECG trace and yellow labels) is scored."""
    rng = np.random.default_rng(1)
    grey = loops.add_text(loops.add_ecg(loops.grey_loop(rng, 12)))
    write_avi(tmp_path / "grey.avi", grey, fps=25)
    write_avi(tmp_path / "colour.avi", loops.add_flow(grey.copy(), rng, 0.2), fps=25)
    grey_item, colour_item = ArchiveClips([tmp_path / "grey.avi", tmp_path / "colour.avi"], 4, 1, rules=RULES)
    assert grey_item["status"] == SCORED and grey_item["crop_source"] == "auto"
    assert colour_item["status"] == SKIPPED and colour_item["crop_source"] == "auto"
    assert colour_item["error"].startswith("colour Doppler in the pixels: ")
    share = float(colour_item["error"].split(": ")[1].split(" %")[0])
    assert 4 < share < 12


def test_colour_flow_dicom_without_header_hints_is_skipped_by_its_pixels(tmp_path):
    path = loop_dicom(tmp_path / "cfm.dcm", colour=True)
    assert screen_dicom(path).skip == ""  # nothing in the header says colour
    item = ArchiveClips([path], 4, 1, rules=RULES)[0]
    assert item["status"] == SKIPPED and item["error"].startswith("colour Doppler in the pixels")


# ---------------------------------------------------------------- real vendor files (../shared) and their twins
# Each test runs on the real file (skipped without ../shared) and on a generated twin in the same layout (see
# ../shared/data/real_ultrasound/README.md): photometric, bits, frames, size, ImageType, regions, palette tables.

SOURCES = [pytest.param("real", marks=needs_real), "generated"]


def with_palette(path, entries, **tags):
    """Add 16-bit grey palette tables of `entries` entries (descriptor [entries mod 65536, 0, 16], as the real
    files') and `tags` (None deletes one, e.g. NumberOfFrames of a single-frame file)."""
    import pydicom

    ds = pydicom.dcmread(path)
    if entries:
        table = (np.arange(entries) * 65535 // (entries - 1)).astype(np.uint16)
        for colour in ("Red", "Green", "Blue"):
            ds.add_new(f"{colour}PaletteColorLookupTableDescriptor", "US", [entries % 65536, 0, 16])
            ds.add_new(f"{colour}PaletteColorLookupTableData", "OW", table.tobytes())
    for keyword, value in tags.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def write_vendor_twin(folder, name):
    """The generated twin of a real vendor file, by the name of the real one."""
    from pydicom.uid import ImplicitVRLittleEndian

    rng = np.random.default_rng(0)
    if name == "US1_UNCR.dcm":  # GE: one RGB frame 480x640, no regions
        frames = rng.integers(0, 256, (1, 480, 640, 3), dtype=np.uint8)
        path = write_dicom(folder / name, frames, "RGB", ImageType=["ORIGINAL", "PRIMARY", "SMALL PARTS"])
        return with_palette(path, 0, NumberOfFrames=None)
    if name == "gdcm-US-ALOKA-16.dcm":  # Aloka: one 16-bit palette frame 480x640, two 2D tissue regions + one more
        frames = rng.integers(0, 65536, (1, 480, 640), dtype=np.uint16)
        path = write_dicom(folder / name, frames, "PALETTE COLOR", bits=16, transfer_syntax=ImplicitVRLittleEndian,
                           ImageType=["ORIGINAL", "PRIMARY", "ABDOM/RAD", "0001"],
                           SequenceOfUltrasoundRegions=[region(1, 1, 32, 24, 335, 415), region(1, 1, 336, 24, 639, 415),
                                                        region(0, 13, 32, 40, 63, 103)])
        return with_palette(path, 65536, NumberOfFrames=None)
    if name == "OBXXXX1A_2frame.dcm":  # Philips: 2 palette frames 600x800, a 2D region one past the frame, a waveform
        frames = rng.integers(0, 256, (2, 600, 800), dtype=np.uint8)
        path = write_dicom(folder / name, frames, "PALETTE COLOR", ImageType=["ORIGINAL", "PRIMARY", "OBSTETRICAL"],
                           SequenceOfUltrasoundRegions=[region(1, 1, 120, 60, 800, 518),
                                                        region(4, 10, 176, 522, 743, 576)])
        return with_palette(path, 256)
    raise KeyError(name)


def write_echo_gif(path):
    """The generated twin of ES0001_CH2_1.gif: a 636x422 GIF of 42 frames, 30 ms each, Floyd-Steinberg dithered to a
    256-colour palette: a beating grey sector, a growing 1-px teal ECG trace overlapping the sector's box, yellow
    depth marks and label, a grey bar."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = np.zeros((42, 422, 636, 3), np.uint8)
    frames[:, 20:320, 118:518] = loops.grey_loop(rng, 42)  # the sector: x 152..485, y 40..300
    xs = np.arange(30, 260)
    ys = (285 - 18 * np.exp(-((xs % 110) - 55) ** 2 / 6.0)).astype(np.int32)
    for t, frame in enumerate(frames):
        cv2.polylines(frame, [np.stack([xs, ys], 1)[:40 + 5 * t]], False, (0, 176, 160), 1)
        for y in range(60, 300, 40):
            cv2.line(frame, (130, y), (136, y), (230, 220, 40), 1)
        cv2.putText(frame, "V", (330, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (230, 220, 40), 1)
        frame[30:110, 610:625] = np.linspace(255, 0, 80).astype(np.uint8)[:, None, None]
    images = [Image.fromarray(frame).quantize(256, dither=Image.Dither.FLOYDSTEINBERG) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=30, loop=0)
    return path


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real_ultrasound_twins")
    for name in ("US1_UNCR.dcm", "gdcm-US-ALOKA-16.dcm", "OBXXXX1A_2frame.dcm"):
        write_vendor_twin(folder, name)
    write_echo_gif(folder / "ES0001_CH2_1.gif")
    return folder


def source_file(source, name, request):
    return REAL / name if source == "real" else request.getfixturevalue("twins") / name


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name, reason", [
    ("US1_UNCR.dcm", "ImageType anatomy SMALL PARTS: not the heart"),
    ("gdcm-US-ALOKA-16.dcm", "ImageType anatomy ABDOM/RAD: not the heart"),
    ("OBXXXX1A_2frame.dcm", "ImageType anatomy OBSTETRICAL: not the heart"),
])
def test_real_vendor_files_are_skipped_for_their_anatomy(name, reason, source, request):
    item = ArchiveClips([source_file(source, name, request)], 4, 1, rules=RULES)[0]
    assert (item["status"], item["error"]) == (SKIPPED, reason)


@pytest.mark.parametrize("source", SOURCES)
def test_real_philips_loop_crop_is_its_2d_region_clipped_to_the_frame(source, request):
    """OBXXXX1A: 2D region x 120..800 (one past the 800-column frame), y 60..518; ECG region below it (y 522+):
    the crop is x 120..799, y 60..518."""
    import pydicom
    from datasets.sources.ultrasound_regions import read_regions, tissue_crop

    header = pydicom.dcmread(source_file(source, "OBXXXX1A_2frame.dcm", request), stop_before_pixels=True)
    assert (header.Columns, header.Rows, header.PhotometricInterpretation) == (800, 600, "PALETTE COLOR")
    assert tissue_crop(read_regions(header), 800, 600)[0] == (120, 60, 680, 459)


@pytest.mark.parametrize("source", SOURCES)
def test_real_greyscale_gif_with_an_ecg_is_scored(source, request):
    path = source_file(source, "ES0001_CH2_1.gif", request)
    item = ArchiveClips([path], 4, 1, rules=RULES)[0]
    assert item["status"] == SCORED and item["crop_source"] == "auto" and item["n_frames"] > 42
    _, info = load_echo_video(Path(path))
    assert (info.frame_size, info.n_frames_original, info.source_fps) == ((636, 422), 42, pytest.approx(100 / 3))
    assert info.colour_fraction < 0.001


@pytest.mark.parametrize("height, width", [(422, 636), (424, 636), (301, 403)])
def test_colour_blocks_lie_on_the_pixel_grid_whatever_the_frame_size(height, width):
    """Block k covers pixels 4k .. 4k + 3 for any frame size (422 rows: the real HMC-QU GIF's height), so a crop box
    in pixels selects the blocks it holds: an 8x8 red square at pixel (96, 200) is blocks 24-25 x 50-51, no other."""
    from datasets.sources.colour_flow import coloured_pixels
    frame = np.zeros((height, width, 3), np.uint8)
    frame[96:104, 200:208] = (200, 30, 30)
    expected = np.zeros((height // 4, width // 4), bool)
    expected[24:26, 50:52] = True
    np.testing.assert_array_equal(coloured_pixels(frame), expected)
