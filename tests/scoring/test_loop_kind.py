"""What kind of loop is it, before any model runs: ultrasound regions (the crop is the 2D tissue box, never the
ECG strip; colour flow, spectral, M-mode, no 2D -> skipped), ImageType anatomy and mode bitmap (missing values
decide nothing), colour flow in the pixels of any file (AVI), and the real vendor files in ../shared."""
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
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real ultrasound files not found in {REAL}")
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


# ---------------------------------------------------------------- real vendor files (../shared)


@needs_real
@pytest.mark.parametrize("name, reason", [
    ("US1_UNCR.dcm", "ImageType anatomy SMALL PARTS: not the heart"),
    ("gdcm-US-ALOKA-16.dcm", "ImageType anatomy ABDOM/RAD: not the heart"),
    ("OBXXXX1A_2frame.dcm", "ImageType anatomy OBSTETRICAL: not the heart"),
])
def test_real_vendor_files_are_skipped_for_their_anatomy(name, reason):
    item = ArchiveClips([REAL / name], 4, 1, rules=RULES)[0]
    assert (item["status"], item["error"]) == (SKIPPED, reason)


@needs_real
def test_real_philips_loop_crop_is_its_2d_region_clipped_to_the_frame():
    """OBXXXX1A: 2D region x 120..800 (one past the 800-column frame), y 60..518; ECG region below it (y 522+):
    the crop is x 120..799, y 60..518."""
    import pydicom
    from datasets.sources.ultrasound_regions import read_regions, tissue_crop

    header = pydicom.dcmread(REAL / "OBXXXX1A_2frame.dcm", stop_before_pixels=True)
    assert tissue_crop(read_regions(header), 800, 600)[0] == (120, 60, 680, 459)


@needs_real
def test_real_greyscale_gif_with_an_ecg_is_scored():
    item = ArchiveClips([REAL / "ES0001_CH2_1.gif"], 4, 1, rules=RULES)[0]
    assert item["status"] == SCORED and item["crop_source"] == "auto" and item["n_frames"] > 42
    _, info = load_echo_video(Path(REAL / "ES0001_CH2_1.gif"))
    assert info.colour_fraction < 0.001
