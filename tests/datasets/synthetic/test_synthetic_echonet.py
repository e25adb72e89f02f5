"""datasets/synthetic/echonet.py: a complete, loadable EchoNet-format dataset whose EF follows from the drawing."""
import hashlib
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT
from datasets import EchoNet, decode_video, make_synthetic_echonet
from datasets.cache import colour_table
from datasets.synthetic.echonet import PIXEL_MM

FILELIST_COLUMNS = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_echonet(tmp_path_factory.mktemp("synthetic") / "data", n=16, seed=0)


def disks(rows):
    """Method of disks from tracing rows [21, 4] (long axis first): volume in px^3."""
    length = np.hypot(rows[0, 2] - rows[0, 0], rows[0, 3] - rows[0, 1])
    diameters = np.hypot(rows[1:, 2] - rows[1:, 0], rows[1:, 3] - rows[1:, 1])
    return np.sum(np.pi * diameters ** 2 / 4 * length / 20)


def test_files_and_filelist(synthetic):
    table = pd.read_csv(synthetic / "FileList.csv")
    assert list(table.columns) == FILELIST_COLUMNS
    assert len(table) == 16 and table["FileName"].is_unique
    assert table["Split"].value_counts().to_dict() == {"TRAIN": 10, "VAL": 3, "TEST": 3}
    assert table["EF"].between(15, 85).all() and table["EF"].std() > 8
    assert (table[["FrameHeight", "FrameWidth"]] == 112).all().all() and (table["FPS"] == 50).all()
    assert table["NumberOfFrames"].between(100, 200).all()
    for name, n_frames in zip(table["FileName"][:4], table["NumberOfFrames"][:4]):
        path = synthetic / "Videos" / f"{name}.avi"
        capture = cv2.VideoCapture(str(path))
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
        assert fourcc == "MJPG" and capture.get(cv2.CAP_PROP_FPS) == 50
        video = decode_video(path)
        assert video.shape == (n_frames, 112, 112, 3)
        # grey content: channels differ only by the decoder's YUV->RGB rounding, as in real EchoNet
        assert colour_table(video) is not None and np.abs(video[..., 0].astype(int) - video[..., 2]).max() <= 2
        assert 5 < video.mean() < 80


def test_ef_follows_from_the_tracings(synthetic):
    table = pd.read_csv(synthetic / "FileList.csv").set_index("FileName")
    tracings = pd.read_csv(synthetic / "VolumeTracings.csv")
    assert list(tracings.columns) == ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
    assert set(tracings["FileName"]) == {f"{n}.avi" for n in table.index}
    for name, rows in tracings.groupby("FileName", sort=False):
        frames = list(dict.fromkeys(rows["Frame"]))  # file order: ES first, then ED
        assert len(frames) == 2 and all((rows["Frame"] == f).sum() == 21 for f in frames)
        es, ed = (disks(rows[rows["Frame"] == f][["X1", "Y1", "X2", "Y2"]].to_numpy()) for f in frames)
        row = table.loc[name[:-4]]
        assert ed > es
        assert abs(100 * (ed - es) / ed - row["EF"]) < 0.006
        assert abs(ed * PIXEL_MM ** 3 / 1000 - row["EDV"]) < 0.006
        assert abs(es * PIXEL_MM ** 3 / 1000 - row["ESV"]) < 0.006
        assert max(frames) < row["NumberOfFrames"]


def test_loadable_by_echonet(synthetic):
    everything = EchoNet(synthetic, "all", frames=16, frequency=4)
    assert len(everything) == 16
    table = pd.read_csv(synthetic / "FileList.csv")
    assert np.allclose(everything.labels, table["EF"])
    for split, count in (("train", 10), ("val", 3), ("test", 3)):
        assert len(EchoNet(synthetic, split, frames=16, frequency=4)) == count
    assert everything[0]["image"].shape == (3, 16, 112, 112)


def test_short_videos_and_frame_range(tmp_path):
    root = make_synthetic_echonet(tmp_path, n=6, seed=1, min_frames=100, max_frames=120)
    table = pd.read_csv(root / "FileList.csv")
    assert table["NumberOfFrames"].between(100, 120).all()  # all shorter than 36 x 4 = 144: padded clips
    assert set(table["Split"]) == {"TRAIN", "VAL", "TEST"} and (table["Split"].value_counts() == 2).all()
    assert EchoNet(root, "all", frames=36, frequency=4)[0]["image"].shape == (3, 36, 112, 112)
    with pytest.raises(ValueError, match="n must be >= 6"):
        make_synthetic_echonet(tmp_path / "tiny", n=5)


def test_traced_frames_lie_inside_even_the_shortest_videos(tmp_path):
    root = make_synthetic_echonet(tmp_path, n=8, seed=2, min_frames=90, max_frames=92)
    frames = pd.read_csv(root / "FileList.csv").set_index("FileName")["NumberOfFrames"]
    traced = pd.read_csv(root / "VolumeTracings.csv").groupby("FileName")["Frame"].agg(["min", "max", "nunique"])
    assert (traced["nunique"] == 2).all() and (traced["min"] >= 0).all()
    assert (traced["max"].to_numpy() < frames[traced.index.str.removesuffix(".avi")].to_numpy()).all()
    with pytest.raises(ValueError, match="90 <= min_frames"):
        make_synthetic_echonet(tmp_path / "short", n=6, min_frames=89, max_frames=100)


def test_deterministic_for_a_seed(synthetic, tmp_path):
    again = make_synthetic_echonet(tmp_path / "again", n=16, seed=0)
    other = make_synthetic_echonet(tmp_path / "other", n=16, seed=1)
    for name in ("FileList.csv", "VolumeTracings.csv"):
        assert (again / name).read_bytes() == (synthetic / name).read_bytes()
        assert (other / name).read_bytes() != (synthetic / name).read_bytes()
    digest = lambda root: sorted(hashlib.sha1(p.read_bytes()).hexdigest() for p in (root / "Videos").iterdir())
    assert digest(again) == digest(synthetic)
    assert not list((again / "Videos").glob(".*"))  # no temporary files left


def test_ef_is_visible_in_the_pool_area_change(synthetic):
    """The dark LV pool's area change within the video ranks the videos by EF."""
    table = pd.read_csv(synthetic / "FileList.csv")
    tracings = pd.read_csv(synthetic / "VolumeTracings.csv")
    amplitude = []
    for name in table["FileName"]:
        video = decode_video(synthetic / "Videos" / f"{name}.avi")[..., 1]
        rows = tracings[tracings["FileName"] == f"{name}.avi"]
        ed = rows[rows["Frame"] == rows["Frame"].iloc[-1]]
        x = ed[["X1", "X2"]].to_numpy()
        y = ed[["Y1", "Y2"]].to_numpy()
        box = video[:, int(y.min()):int(np.ceil(y.max())) + 1, int(x.min()):int(np.ceil(x.max())) + 1]
        area = (box < 15).sum(axis=(1, 2))
        amplitude.append(1 - area.min() / area.max())
    rank_correlation = np.corrcoef(np.argsort(np.argsort(amplitude)), np.argsort(np.argsort(table["EF"])))[0, 1]
    assert rank_correlation > 0.9


def test_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "datasets.synthetic", "--out", str(tmp_path / "cli"), "--n", "6",
                             "--seed", "3"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote 6 videos" in result.stdout and "RuntimeWarning" not in result.stderr
    assert len(pd.read_csv(tmp_path / "cli" / "FileList.csv")) == 6
    assert len(list((tmp_path / "cli" / "Videos").glob("*.avi"))) == 6
