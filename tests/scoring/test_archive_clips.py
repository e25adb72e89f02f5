"""scoring/archive_clips.py: predict.py's default loop settings on a vendor cine and generated DICOMs."""
import numpy as np
import torch
from pydicom.data import get_testdata_file

from conftest import write_dicom
from scoring.archive_clips import ArchiveClips, ShortLoopSettings


def test_default_rules_skip_short_loops_and_repeat_the_vendor_cine(tmp_path):
    """predict.py's defaults (ShortLoopSettings()): under 10 frames or 0.5 s skipped; the SonoSite 1 s cine (30
    frames at 30 fps -> 50 at 50 fps) is shorter than one 8 x 8 clip and played again to fill it."""
    grey = np.random.default_rng(3).integers(0, 256, (20, 16, 16), dtype=np.uint8)
    paths = [get_testdata_file("examples_ybr_color.dcm"), write_dicom(tmp_path / "nine.dcm", grey[:9], FrameTime=100),
             write_dicom(tmp_path / "fast.dcm", grey, FrameTime=20)]
    items = list(ArchiveClips(paths, 8, 8, crop="none", rules=ShortLoopSettings()))
    assert [item["status"] for item in items] == ["scored", "skipped", "skipped"]
    assert items[1]["error"] == "9 frames: fewer than --min_frames 10"
    assert items[2]["error"] == "0.40 s long: shorter than --min_seconds 0.5"
    vendor = items[0]
    assert vendor["n_frames"] == 50 and vendor["starts"].tolist() == [0, 7] and vendor["image"].shape[0] == 2
    assert "shorter than one clip (50 < 8 x 8 frames): the loop played 1.28 times" in vendor["notes"][-1]
    assert vendor["identity"]["frame_time_ms"] == "33.333" and items[1]["identity"]["frame_time_ms"] == "100"
    padded = ArchiveClips(paths[:1], 8, 8, crop="none", rules=ShortLoopSettings("pad"))[0]
    assert "zero-padded at the end to 64 frames" in padded["notes"][-1]
    assert not torch.equal(padded["image"], vendor["image"])  # black frames vs the loop again
