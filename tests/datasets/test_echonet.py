"""datasets/echonet.py: EchoNet items (keys, labels, clip frames, zero padding, the shift augmentation, two RnC
views from one decode), seeds and data-loader workers, fixed clips and start files, the released keywords, and
one-line errors for bad folders, lists and tracings."""
import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import expected_clip, frame_number, make_dataset
from datasets import MEAN, STD, EchoNet, EchoNetFixedClips, EchoNetRNC, EchoNetTest, decode_video, save_start_indexes
from datasets.clips import NORMALISED
from utils.script.errors import BadInputError


def to_uint8(image):
    """Invert the normalisation: float [3, T, H, W] -> uint8 [T, H, W, 3]."""
    x = image.double().numpy() * STD[:, None, None, None] + MEAN[:, None, None, None]
    assert np.abs(x - np.rint(x)).max() < 1e-3  # values are normalised uint8 levels
    return np.rint(x).astype(np.uint8).transpose(1, 2, 3, 0)


# ---------------------------------------------------------------- items


def test_item_shapes_keys_and_labels(tmp_path):
    root, names = make_dataset(tmp_path, [40, 40, 40], splits=["TRAIN", "VAL", "TEST"], efs=[12.5, 50.0, 77.25],
                               filelist_avi=True)
    ds = EchoNet(root, split="TRAIN", frames=8, frequency=3)
    assert ds.vnames == [names[0]] and ds.labels.dtype == np.float32
    item = ds[0]
    assert set(item) == {"name", "image", "label", "ef"}
    assert item["name"] == "V000.avi"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 8, 112, 112)
    assert item["label"].dtype == torch.float32 and item["label"].shape == (1,)
    assert item["label"].item() == 12.5 and torch.equal(item["ef"], item["label"])
    everything = EchoNet(root, split="all", frames=8, frequency=3)
    assert everything.vnames == names and everything.labels.tolist() == [12.5, 50.0, 77.25]
    assert EchoNet(root, split="Test", frames=8, frequency=3).vnames == [names[2]]
    view1, view2 = EchoNetRNC(root, split="val", frames=8, frequency=3, aug=True)[0]
    for view in (view1, view2):
        assert view["image"].shape == (3, 8, 112, 112) and view["label"].item() == 50.0


def test_clip_frames_are_start_plus_frequency_steps(indexed_echonet):
    ds = EchoNet(indexed_echonet, "train", frames=12, frequency=3, seed=5)
    starts = {}
    for epoch in range(15):
        ds.set_epoch(epoch)
        for index in range(len(ds)):
            item = ds[index]
            decoded = decode_video(indexed_echonet / "Videos" / item["name"])
            clip = to_uint8(item["image"])
            numbers = [frame_number(f) for f in clip]
            start = numbers[0]
            assert numbers == [start + 3 * t for t in range(12)]
            assert np.array_equal(clip, decoded[start + 3 * np.arange(12)])
            starts.setdefault(item["name"], set()).add(start)
    # uniform in [0, F - 11 * 3): the largest start is F - 34
    for name, length in zip(ds.vnames, [60, 50, 40]):
        assert min(starts[name]) >= 0 and max(starts[name]) <= length - 34
        assert len(starts[name]) > 1
    # the global-RNG mode is reproducible with torch.manual_seed
    free = EchoNet(indexed_echonet, "train", frames=12, frequency=3)
    torch.manual_seed(0)
    first = free[0]["image"]
    torch.manual_seed(0)
    assert torch.equal(free[0]["image"], first)


def test_short_video_is_zero_padded(indexed_echonet):
    # 20 frames, 16 x 2 = 32 needed: padded to 32, starts in {0, 1}
    ds = EchoNet(indexed_echonet, "val", frames=16, frequency=2, seed=0)
    zero = torch.from_numpy(NORMALISED[:, 0]).view(3, 1, 1)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        image = ds[0]["image"]
        start = frame_number(to_uint8(image)[0])
        seen.add(start)
        decoded = decode_video(indexed_echonet / "Videos" / "V003.avi")
        assert torch.allclose(image, expected_clip(decoded, start, 16, 2), atol=1e-6)
        for t in range(16):
            if start + 2 * t >= 20:  # a padding frame: exactly the normalised 0
                assert torch.equal(image[:, t], zero.expand(3, 112, 112))
            else:
                assert frame_number(to_uint8(image)[t]) == start + 2 * t
    assert seen == {0, 1}
    assert torch.allclose(zero.flatten().double(), torch.from_numpy(-MEAN / STD), atol=1e-6)


def find_shift(plain, augmented):
    """All (dy, dx) with augmented[..., y, x] == plain[..., y + dy, x + dx] (normalised 0 outside)."""
    fill = torch.from_numpy(NORMALISED[:, 0]).view(3, 1, 1, 1)
    found = []
    for dy in range(-6, 7):
        for dx in range(-6, 7):
            shifted = fill.expand_as(plain).clone()
            ys, xs = slice(max(0, -dy), 112 - max(0, dy)), slice(max(0, -dx), 112 - max(0, dx))
            yp, xp = slice(max(0, dy), 112 - max(0, -dy)), slice(max(0, dx), 112 - max(0, -dx))
            shifted[..., ys, xs] = plain[..., yp, xp]
            if torch.equal(shifted, augmented):
                found.append((dy, dx))
    return found


def test_augmentation_shifts_the_whole_clip_with_zero_padding(indexed_echonet):
    plain = EchoNet(indexed_echonet, "train", frames=6, frequency=4, aug=False, seed=11)
    augmented = EchoNet(indexed_echonet, "train", frames=6, frequency=4, aug=True, seed=11)
    shifts = []
    for epoch in range(6):
        plain.set_epoch(epoch)
        augmented.set_epoch(epoch)
        a, b = plain[1]["image"], augmented[1]["image"]
        found = find_shift(a, b)  # one shift for the whole clip (all frames, all channels)
        assert len(found) == 1
        shifts.append(found[0])
        dy, dx = found[0]
        fill = torch.from_numpy(NORMALISED[:, 0]).view(3, 1, 1)
        if dy > 0:  # zeros entered at the bottom
            assert torch.equal(b[:, :, -dy:, :], fill.unsqueeze(1).expand(3, 6, dy, 112))
    assert len(set(shifts)) > 1


def test_crop_offsets_cover_exactly_0_to_12(indexed_echonet):
    ds = EchoNet(indexed_echonet, "train", frames=4, frequency=2, aug=True, seed=0)
    generator = torch.Generator().manual_seed(0)
    offsets = np.array([ds._crop_offset(generator) for _ in range(2000)])
    assert set(offsets[:, 0]) == set(range(13)) and set(offsets[:, 1]) == set(range(13))
    assert EchoNet(indexed_echonet, "train", frames=4, frequency=2, aug=False)._crop_offset(generator) is None


def test_rnc_views_differ_but_come_from_one_decode(indexed_echonet, monkeypatch):
    opened = []
    original = cv2.VideoCapture

    def counting(*args, **kwargs):
        opened.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(cv2, "VideoCapture", counting)
    ds = EchoNetRNC(indexed_echonet, "train", frames=8, frequency=2, aug=True, seed=3)
    for index in range(len(ds)):
        opened.clear()
        view1, view2 = ds[index]
        assert len(opened) == 1  # one decode per item
        assert not torch.equal(view1["image"], view2["image"])
        assert view1["name"] == view2["name"] and torch.equal(view1["label"], view2["label"])


def test_rnc_views_are_independent_starts_and_crops(indexed_echonet):
    ds = EchoNetRNC(indexed_echonet, "train", frames=8, frequency=2, aug=False, seed=3)
    pairs = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        view1, view2 = ds[0]
        s1, s2 = (frame_number(to_uint8(v["image"])[0]) for v in (view1, view2))
        pairs.add((s1, s2))
        decoded = decode_video(indexed_echonet / "Videos" / view1["name"])
        assert torch.allclose(view1["image"], expected_clip(decoded, s1, 8, 2), atol=1e-6)
        assert torch.allclose(view2["image"], expected_clip(decoded, s2, 8, 2), atol=1e-6)
    assert any(s1 != s2 for s1, s2 in pairs)


def test_seeded_items_are_reproducible(indexed_echonet):
    a = EchoNetRNC(indexed_echonet, "train", frames=8, frequency=2, aug=True, seed=7)
    b = EchoNetRNC(indexed_echonet, "train", frames=8, frequency=2, aug=True, seed=7)
    b_items = [b[i] for i in reversed(range(len(b)))][::-1]  # other order, other object
    for i in range(len(a)):
        for va, vb in zip(a[i], b_items[i]):
            assert torch.equal(va["image"], vb["image"])
    a.set_epoch(1)
    assert not torch.equal(a[0][0]["image"], b[0][0]["image"])
    b.set_epoch(1)
    assert torch.equal(a[0][0]["image"], b[0][0]["image"])
    c = EchoNetRNC(indexed_echonet, "train", frames=8, frequency=2, aug=True, seed=8)
    assert not torch.equal(c[0][0]["image"], b[0][0]["image"])


def test_seeded_items_do_not_depend_on_workers(indexed_echonet):
    ds = EchoNet(indexed_echonet, "train", frames=8, frequency=2, aug=True, seed=1)
    ds.set_epoch(3)
    single = torch.cat([batch["image"] for batch in torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)])
    workers = torch.cat([batch["image"] for batch in torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)])
    assert torch.equal(single, workers)


def test_set_epoch_reaches_persistent_workers(indexed_echonet):
    ds = EchoNet(indexed_echonet, "train", frames=8, frequency=2, aug=True, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, persistent_workers=True)
    for epoch in range(3):
        ds.set_epoch(epoch)
        through_workers = torch.cat([batch["image"] for batch in loader])
        fresh = EchoNet(indexed_echonet, "train", frames=8, frequency=2, aug=True, seed=1)
        fresh.set_epoch(epoch)
        assert torch.equal(through_workers, torch.stack([fresh[i]["image"] for i in range(len(fresh))]))


# ---------------------------------------------------------------- fixed clips (validation, test) and start files


def test_test_set_generated_starts(indexed_echonet):
    ds = EchoNetFixedClips(indexed_echonet, "train", frames=12, frequency=3, n_clips=4, seed=2)
    again = EchoNetFixedClips(indexed_echonet, "train", frames=12, frequency=3, n_clips=4, seed=2)
    other = EchoNetFixedClips(indexed_echonet, "train", frames=12, frequency=3, n_clips=4, seed=3)
    assert ds.n_clips == 4
    for name, length in zip(ds.vnames, [60, 50, 40]):
        starts = ds.start_indexes[name]
        assert starts.dtype == np.int64 and starts.shape == (4,)
        assert starts.min() >= 0 and starts.max() <= length - 34
        assert np.array_equal(starts, again.start_indexes[name])
    assert any(not np.array_equal(ds.start_indexes[n], other.start_indexes[n]) for n in ds.vnames)
    item = ds[1]
    assert set(item) == {"name", "image", "starts", "label", "ef"}
    assert item["image"].shape == (4, 3, 12, 112, 112) and item["starts"].dtype == torch.int64
    decoded = decode_video(indexed_echonet / "Videos" / item["name"])
    for j, start in enumerate(item["starts"].tolist()):
        assert torch.allclose(item["image"][j], expected_clip(decoded, start, 12, 3), atol=1e-6)


def test_test_set_with_start_file_json_csv_and_errors(indexed_echonet, tmp_path):
    starts = {"V000.avi": [0, 26], "V001": [5, 16], "V002.avi": [6, 0]}
    save_start_indexes(starts, tmp_path / "starts.json")
    assert json.loads((tmp_path / "starts.json").read_text())["V001.avi"] == [5, 16]
    assert not list(tmp_path.glob("*.tmp"))
    pd.DataFrame({"FileName": ["V000", "V001", "V002"], "start0": [0, 5, 6], "start1": [26, 16, 0]}).to_csv(
        tmp_path / "starts.csv", index=False)
    for path in (tmp_path / "starts.json", tmp_path / "starts.csv"):
        ds = EchoNetFixedClips(indexed_echonet, "train", 12, 3, path_test_start_indexes=path, n_clips=7)
        assert ds.n_clips == 2  # taken from the file
        item = ds[1]
        assert item["starts"].tolist() == [5, 16]
        assert [frame_number(to_uint8(clip)[0]) for clip in item["image"]] == [5, 16]

    save_start_indexes({"V000.avi": [0, 1]}, tmp_path / "partial.json")
    with pytest.raises(ValueError, match=r"partial.json has no start indexes for 2 video\(s\).*V001.avi, V002.avi"):
        EchoNetFixedClips(indexed_echonet, "train", 12, 3, path_test_start_indexes=tmp_path / "partial.json")
    # V002 has 40 frames: 40 - 33 = 7 valid starts, 7 is out of range
    save_start_indexes({"V000.avi": [0, 1], "V001.avi": [0, 1], "V002.avi": [7, 0]}, tmp_path / "far.json")
    with pytest.raises(ValueError, match=r"far.json: start 7 of V002.avi is out of range \[0, 7\)"):
        EchoNetFixedClips(indexed_echonet, "train", 12, 3, path_test_start_indexes=tmp_path / "far.json")
    save_start_indexes({"V000.avi": [-1, 1], "V001.avi": [0, 1], "V002.avi": [0, 0]}, tmp_path / "neg.json")
    with pytest.raises(ValueError, match=r"start -1 of V000.avi"):
        EchoNetFixedClips(indexed_echonet, "train", 12, 3, path_test_start_indexes=tmp_path / "neg.json")


def test_released_keyword_calls_keep_working(indexed_echonet, tmp_path):
    """The released classes' keywords: EchoNet/EchoNetRNC(root, split, frames, frequency) and
    EchoNetTest(root, frames, frequency, path_test_start_indexes, trial) giving the clip at start `trial`."""
    save_start_indexes({"V000.avi": [0, 26], "V001.avi": [5, 16], "V002.avi": [6, 0]}, tmp_path / "starts.json")
    assert EchoNet(root=indexed_echonet, split="train", frames=12, frequency=3)[0]["image"].shape == (3, 12, 112, 112)
    view1, view2 = EchoNetRNC(root=indexed_echonet, split="train", frames=12, frequency=3)[0]
    assert view1["image"].shape == view2["image"].shape == (3, 12, 112, 112)
    for trial, expected in ((0, [0, 5, 6]), (1, [26, 16, 0])):
        ds = EchoNetTest(root=indexed_echonet, split="train", frames=12, frequency=3,
                         path_test_start_indexes=tmp_path / "starts.json", trial=trial)
        items = [ds[i] for i in range(len(ds))]
        assert all(item["image"].shape == (3, 12, 112, 112) for item in items)  # one clip, as released
        assert [frame_number(to_uint8(item["image"])[0]) for item in items] == expected
    with pytest.raises(ValueError, match=r"trial must lie in \[0, 2\)"):
        EchoNetTest(root=indexed_echonet, split="train", frames=12, frequency=3,
                    path_test_start_indexes=tmp_path / "starts.json", trial=2)


# ---------------------------------------------------------------- bad input


def test_bad_arguments(indexed_echonet):
    for bad in (0, -1, 2.5, "4", True, None):
        with pytest.raises(ValueError, match="frames must be a positive int"):
            EchoNet(indexed_echonet, frames=bad)
        with pytest.raises(ValueError, match="frequency must be a positive int"):
            EchoNet(indexed_echonet, frequency=bad)
    with pytest.raises(ValueError, match="split must be one of.*'training'"):
        EchoNet(indexed_echonet, split="training")


def test_missing_or_empty_data_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        EchoNet(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty is empty"):
        EchoNet(tmp_path / "empty")


def test_missing_csv_files(tmp_path):
    root, _ = make_dataset(tmp_path / "a", [30, 30])
    (root / "FileList.csv").unlink()
    with pytest.raises(FileNotFoundError, match="FileList.csv does not exist"):
        EchoNet(root)
    root, _ = make_dataset(tmp_path / "b", [30, 30])
    (root / "VolumeTracings.csv").unlink()
    with pytest.raises(FileNotFoundError, match="VolumeTracings.csv does not exist"):
        EchoNet(root)


def edit_filelist(root, fn):
    table = pd.read_csv(root / "FileList.csv", dtype=str)
    table = fn(table)
    table.to_csv(root / "FileList.csv", index=False)


@pytest.mark.parametrize("edit, error, message", [
    (lambda t: t.drop(columns=["EF", "Split"]), ValueError, r"FileList.csv lacks required column\(s\) EF, Split"),
    (lambda t: t.assign(FileName=["V000", "V000.avi"]), ValueError, "FileName V000.avi appears more than once"),
    (lambda t: t.assign(EF=["55", "abc"]), ValueError, r"data row 2 \(FileName V001.avi\): EF 'abc' is not a number"),
    (lambda t: t.assign(EF=["nan", "55"]), ValueError, r"data row 1 \(FileName V000.avi\): EF 'nan' is missing"),
    (lambda t: t.assign(EF=["55", ""]), ValueError, r"data row 2 \(FileName V001.avi\): EF '' is missing"),
    (lambda t: t.assign(EF=["120", "55"]), ValueError,
     r"data row 1 \(FileName V000.avi\): EF '120' is outside \[0, 100\]"),
    (lambda t: t.assign(EF=["55", "-3"]), ValueError, r"EF '-3' is outside"),
])
def test_bad_filelist(tmp_path, edit, error, message):
    root, _ = make_dataset(tmp_path, [30, 30])
    edit_filelist(root, edit)
    with pytest.raises(error, match=message):
        EchoNet(root)


def test_malformed_csv_files_fail_in_one_line_naming_the_file(tmp_path):
    root, _ = make_dataset(tmp_path, [30, 30])
    filelist = (root / "FileList.csv").read_text()
    (root / "FileList.csv").write_text(filelist.rstrip("\n") + ",extra\n")  # one row with a field too many
    with pytest.raises(BadInputError, match=r"^cannot read \S*FileList.csv: .*fields"):
        EchoNet(root)
    (root / "FileList.csv").write_text(filelist)
    tracings = (root / "VolumeTracings.csv").read_text().split("\n", 1)
    (root / "VolumeTracings.csv").write_text("FileName ,X1,Y1,X2,Y2, Frame\n" + tracings[1])  # spaced header
    assert len(EchoNet(root)) == 2
    (root / "VolumeTracings.csv").write_bytes(b"\xff\xfe" + "\n".join(tracings).encode("utf-16-le"))
    with pytest.raises(BadInputError, match="VolumeTracings.csv"):
        EchoNet(root)


def test_missing_videos_are_listed_in_one_error(tmp_path):
    root, _ = make_dataset(tmp_path, [30] * 8)
    for i in (1, 2, 3, 4, 5, 6):
        (root / "Videos" / f"V00{i}.avi").unlink()
    listed = r"V001.avi, V002.avi, V003.avi, V004.avi, V005.avi, \.\.\.$"
    with pytest.raises(FileNotFoundError, match=r"^6 video\(s\) of split 'train'.*" + listed):
        EchoNet(root)


def test_tracings_of_unknown_videos_warn_and_bad_tracings_fail(tmp_path):
    root, _ = make_dataset(tmp_path, [30, 30])
    tracings = pd.read_csv(root / "VolumeTracings.csv")
    extra = pd.DataFrame([("GHOST.avi", 0, 0, 1, 1, 3)], columns=tracings.columns)
    pd.concat([tracings, extra]).to_csv(root / "VolumeTracings.csv", index=False)
    with pytest.warns(UserWarning, match=r"tracings of 1 video\(s\) not in FileList.csv are ignored: GHOST.avi"):
        assert len(EchoNet(root)) == 2
    tracings.rename(columns={"Frame": "frame"}).to_csv(root / "VolumeTracings.csv", index=False)
    with pytest.raises(ValueError, match="header must be exactly FileName,X1,Y1,X2,Y2,Frame"):
        EchoNet(root)
    tracings.assign(Frame=["x"] + list(tracings["Frame"][1:])).to_csv(root / "VolumeTracings.csv", index=False)
    with pytest.raises(ValueError, match=r"data row 1 \(FileName V000.avi\): Frame 'x'"):
        EchoNet(root)


def test_videos_need_two_traced_frames_and_empty_split_fails(tmp_path):
    root, _ = make_dataset(tmp_path, [30, 30, 30], splits=["TRAIN", "TRAIN", "VAL"])
    tracings = pd.read_csv(root / "VolumeTracings.csv")
    keep = ~((tracings["FileName"] == "V001.avi") & (tracings["Frame"] == 1))
    keep &= ~((tracings["FileName"] == "V002.avi") & (tracings["Frame"] == 1))
    tracings[keep].to_csv(root / "VolumeTracings.csv", index=False)
    assert EchoNet(root, "train").vnames == ["V000.avi"]
    with pytest.raises(ValueError, match=r"split 'val' of .* has no video with >= 2 traced frames \(1 listed"):
        EchoNet(root, "val")
    with pytest.raises(ValueError, match=r"split 'test' .*\(0 listed"):
        EchoNet(root, "test")
