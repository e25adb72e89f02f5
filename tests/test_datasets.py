"""Tests of datasets/: EchoNet loading, clip sampling, augmentation, seeds, start indexes, cache, errors."""
import json
import os
import pickle
import threading
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from datasets import (MEAN, STD, EchoNet, EchoNetFixedClips, EchoNetRNC, EchoNetTest, UnsafePickleError, VideoReader,
                      decode_video, frame_count, load_start_indexes, open_cached, save_start_indexes)
from datasets.cache import colour_table
from utils.script.errors import BadInputError
from datasets.clips import NORMALISED, cut_clips, normalise, shifted_crop

from conftest import OFFICIAL_STARTS, SAMPLES, read_all_frames

PATCH = slice(32, 80)  # block-aligned flat square: MJPG keeps its value (almost) exactly
STEP, BASE = 3, 20  # frame k has patch value BASE + STEP * k


# ---------------------------------------------------------------- helpers

def write_avi(path, frames, fps=50):
    """frames: uint8 [F, H, W] (grey) or [F, H, W, 3] (RGB)."""
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        conversion = cv2.COLOR_GRAY2BGR if frame.ndim == 2 else cv2.COLOR_RGB2BGR
        writer.write(cv2.cvtColor(frame, conversion))
    writer.release()


def index_frames(n_frames, seed=0, size=112):
    """Grey frames: static random texture, plus a flat patch whose value encodes the frame index."""
    texture = np.random.default_rng(seed).integers(0, 100, (size, size), dtype=np.uint8)
    frames = np.repeat(texture[None], n_frames, axis=0)
    frames[:, PATCH, PATCH] = (BASE + STEP * np.arange(n_frames)).astype(np.uint8)[:, None, None]
    return frames


def frame_number(frame_hwc):
    """Index encoded in a decoded frame (uint8 [H, W, C])."""
    return int(np.rint((frame_hwc[40:72, 40:72].mean() - BASE) / STEP))


def make_dataset(root, lengths, splits=None, efs=None, traced_frames=2, filelist_avi=False):
    """EchoNet-format folder with index-encoding videos of the given lengths; returns (root, names)."""
    root = Path(root)
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    names = [f"V{i:03d}" for i in range(len(lengths))]
    splits = splits or ["TRAIN"] * len(lengths)
    efs = efs or [30.0 + 5 * i for i in range(len(lengths))]
    tracing_rows = []
    for i, (name, n) in enumerate(zip(names, lengths)):
        write_avi(root / "Videos" / f"{name}.avi", index_frames(n, seed=i))
        for frame in range(traced_frames):
            tracing_rows += [(f"{name}.avi", 1.0, 2.0, 3.0, 4.0, frame)] * 3
    pd.DataFrame({"FileName": [n + ".avi" if filelist_avi else n for n in names], "EF": efs,
                  "ESV": 1.0, "EDV": 2.0, "FrameHeight": 112, "FrameWidth": 112, "FPS": 50,
                  "NumberOfFrames": lengths, "Split": splits}).to_csv(root / "FileList.csv", index=False)
    pd.DataFrame(tracing_rows, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(
        root / "VolumeTracings.csv", index=False)
    return root, [n + ".avi" for n in names]


def to_uint8(image):
    """Invert the normalisation: float [3, T, H, W] -> uint8 [T, H, W, 3]."""
    x = image.double().numpy() * STD[:, None, None, None] + MEAN[:, None, None, None]
    assert np.abs(x - np.rint(x)).max() < 1e-3  # values are normalised uint8 levels
    return np.rint(x).astype(np.uint8).transpose(1, 2, 3, 0)


def expected_clip(decoded, start, frames, frequency):
    """Reference clip: pad the decoded video with zero frames, take the frames, normalise in float64."""
    length = max(len(decoded), frames * frequency)
    padded = np.zeros((length, *decoded.shape[1:]), np.uint8)
    padded[:len(decoded)] = decoded
    clip = padded[start + frequency * np.arange(frames)].astype(np.float64).transpose(3, 0, 1, 2)
    return torch.from_numpy((clip - MEAN[:, None, None, None]) / STD[:, None, None, None]).float()


def reference_decode(path):
    return np.stack(read_all_frames(path, rgb=True))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Train split: lengths 60, 50, 40 (>= 36 = 12 x 3); val: one 20-frame video (needs padding)."""
    root, names = make_dataset(tmp_path_factory.mktemp("echonet"), [60, 50, 40, 20],
                               splits=["TRAIN", "train", "Train", "VAL"])
    return root


# ---------------------------------------------------------------- decoding

def test_decode_matches_opencv_and_reader_picks_frames(data):
    path = data / "Videos" / "V000.avi"
    video = decode_video(path)
    reference = reference_decode(path)
    assert video.dtype == np.uint8 and video.shape == (60, 112, 112, 3)
    assert np.array_equal(video, reference)
    assert [frame_number(f) for f in video] == list(range(60))
    assert frame_count(path) == 60
    # colour order is RGB (OpenCV decodes to BGR)
    red = np.zeros((3, 112, 112, 3), np.uint8)
    red[..., 0] = 200
    write_avi(data / "red.avi", red)
    decoded = decode_video(data / "red.avi").reshape(-1, 3).mean(axis=0)
    (data / "red.avi").unlink()
    assert abs(decoded[0] - 200) < 4 and decoded[1] < 4 and decoded[2] < 4
    with VideoReader(path) as reader:
        picked = reader.read([7, 3, 3, 59])
    assert np.array_equal(picked, reference[[7, 3, 3, 59]])


def test_video_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.avi"):
        decode_video(tmp_path / "nothere.avi")
    (tmp_path / "garbage.avi").write_bytes(b"not a video" * 100)
    with pytest.raises(ValueError, match="garbage.avi.*cannot be opened"):
        decode_video(tmp_path / "garbage.avi")
    writer = cv2.VideoWriter(str(tmp_path / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 50, (112, 112))
    writer.release()
    with pytest.raises(ValueError, match="empty.avi"):
        decode_video(tmp_path / "empty.avi")
    # truncated: the header still promises 40 frames
    write_avi(tmp_path / "full.avi", index_frames(40))
    data_bytes = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data_bytes[: len(data_bytes) // 2])
    assert frame_count(tmp_path / "cut.avi") == 40
    with pytest.raises(ValueError, match=r"cut.avi: frame \d+ cannot be read"):
        decode_video(tmp_path / "cut.avi")


def test_other_frame_size_is_resized_with_warning(tmp_path):
    frames = np.full((5, 64, 80), 150, np.uint8)
    write_avi(tmp_path / "small.avi", frames)
    with pytest.warns(UserWarning, match=r"small.avi: frames are 80x64, resized to 112x112"):
        video = decode_video(tmp_path / "small.avi")
    assert video.shape == (5, 112, 112, 3)
    assert np.abs(video.astype(int) - 150).max() <= 2


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


def test_normalisation_of_a_known_frame(tmp_path):
    root = tmp_path
    (root / "Videos").mkdir()
    write_avi(root / "Videos" / "F.avi", np.full((10, 112, 112), 90, np.uint8))
    pd.DataFrame({"FileName": ["F"], "EF": [60], "Split": ["TRAIN"]}).to_csv(root / "FileList.csv", index=False)
    pd.DataFrame([("F.avi", 0, 0, 1, 1, 0), ("F.avi", 0, 0, 1, 1, 5)],
                 columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(root / "VolumeTracings.csv", index=False)
    assert np.allclose(MEAN, [0.12741163 * 255, 0.1279413 * 255, 0.12912785 * 255])
    assert np.allclose(STD, [0.19557191 * 255, 0.19562256 * 255, 0.1965878 * 255])
    decoded = decode_video(root / "Videos" / "F.avi")
    image = EchoNet(root, frames=4, frequency=2)[0]["image"]
    for c in range(3):
        expected = (decoded[0, :, :, c].astype(np.float64) - MEAN[c]) / STD[c]
        assert np.abs(image[c, 0].numpy() - expected).max() < 1e-6
    # grey level 90 lands near (90 - 32.49) / 49.87 = 1.153
    assert abs(image[0, 0, 50, 50].item() - (90 - MEAN[0]) / STD[0]) < 0.05


def test_clip_frames_are_start_plus_frequency_steps(data):
    ds = EchoNet(data, "train", frames=12, frequency=3, seed=5)
    starts = {}
    for epoch in range(15):
        ds.set_epoch(epoch)
        for index in range(len(ds)):
            item = ds[index]
            decoded = decode_video(data / "Videos" / item["name"])
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
    free = EchoNet(data, "train", frames=12, frequency=3)
    torch.manual_seed(0)
    first = free[0]["image"]
    torch.manual_seed(0)
    assert torch.equal(free[0]["image"], first)


def test_short_video_is_zero_padded(data):
    # 20 frames, 16 x 2 = 32 needed: padded to 32, starts in {0, 1}
    ds = EchoNet(data, "val", frames=16, frequency=2, seed=0)
    zero = torch.from_numpy(NORMALISED[:, 0]).view(3, 1, 1)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        image = ds[0]["image"]
        start = frame_number(to_uint8(image)[0])
        seen.add(start)
        decoded = decode_video(data / "Videos" / "V003.avi")
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


def test_augmentation_shifts_the_whole_clip_with_zero_padding(data):
    plain = EchoNet(data, "train", frames=6, frequency=4, aug=False, seed=11)
    augmented = EchoNet(data, "train", frames=6, frequency=4, aug=True, seed=11)
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


def test_crop_offsets_cover_exactly_0_to_12(data):
    ds = EchoNet(data, "train", frames=4, frequency=2, aug=True, seed=0)
    generator = torch.Generator().manual_seed(0)
    offsets = np.array([ds._random_offset(generator) for _ in range(2000)])
    assert set(offsets[:, 0]) == set(range(13)) and set(offsets[:, 1]) == set(range(13))
    assert EchoNet(data, "train", frames=4, frequency=2, aug=False)._random_offset(generator) is None


def test_shifted_crop_is_torchvisions_padded_random_crop():
    from torchvision.transforms.v2 import functional as TF
    clip = np.random.default_rng(0).integers(1, 256, (3, 2, 112, 112), dtype=np.uint8)
    for top in range(13):
        for left in range(13):
            expected = TF.crop(torch.from_numpy(clip), top - 6, left - 6, 112, 112).numpy()  # pads with zeros
            assert np.array_equal(shifted_crop(clip, top, left), expected), (top, left)
    assert (shifted_crop(clip, 12, 0)[..., -6:, :] == 0).all() and (shifted_crop(clip, 12, 0)[..., :-6, 6:] > 0).all()


def test_one_cutter_for_open_videos_and_decoded_frames(data, tmp_path):
    path = data / "Videos" / "V003.avi"  # 20 frames, padded to 8 x 3 = 24: the clips at 1 and 2 end in padding
    decoded = decode_video(path)
    starts, offsets = [0, 2, 1], [(0, 12), (6, 6), (12, 3)]
    plain = cut_clips(decoded, starts, 8, 3)
    assert plain.shape == (3, 3, 8, 112, 112) and plain.dtype == torch.float32
    for clip, start in zip(plain, starts):
        assert torch.allclose(clip, expected_clip(decoded, start, 8, 3), atol=1e-6)
    with VideoReader(path) as reader:
        assert torch.equal(cut_clips(reader, starts, 8, 3), plain)
    with open_cached(path, tmp_path) as cached:  # one grey channel and its colour table
        assert cached.colour_lut is not None and torch.equal(cut_clips(cached, starts, 8, 3), plain)
        cropped = cut_clips(cached, starts, 8, 3, offsets)
    padded = np.concatenate([decoded, np.zeros((4, 112, 112, 3), np.uint8)])
    for clip, start, offset in zip(cropped, starts, offsets):
        frames = shifted_crop(padded[start + 3 * np.arange(8)].transpose(3, 0, 1, 2), *offset)
        assert torch.equal(clip, torch.from_numpy(normalise(frames)))


def test_rnc_views_differ_but_come_from_one_decode(data, monkeypatch):
    opened = []
    original = cv2.VideoCapture

    def counting(*args, **kwargs):
        opened.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(cv2, "VideoCapture", counting)
    ds = EchoNetRNC(data, "train", frames=8, frequency=2, aug=True, seed=3)
    for index in range(len(ds)):
        opened.clear()
        view1, view2 = ds[index]
        assert len(opened) == 1  # one decode per item
        assert not torch.equal(view1["image"], view2["image"])
        assert view1["name"] == view2["name"] and torch.equal(view1["label"], view2["label"])


def test_rnc_views_are_independent_starts_and_crops(data):
    ds = EchoNetRNC(data, "train", frames=8, frequency=2, aug=False, seed=3)
    pairs = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        view1, view2 = ds[0]
        s1, s2 = (frame_number(to_uint8(v["image"])[0]) for v in (view1, view2))
        pairs.add((s1, s2))
        decoded = decode_video(data / "Videos" / view1["name"])
        assert torch.allclose(view1["image"], expected_clip(decoded, s1, 8, 2), atol=1e-6)
        assert torch.allclose(view2["image"], expected_clip(decoded, s2, 8, 2), atol=1e-6)
    assert any(s1 != s2 for s1, s2 in pairs)


def test_seeded_items_are_reproducible(data):
    a = EchoNetRNC(data, "train", frames=8, frequency=2, aug=True, seed=7)
    b = EchoNetRNC(data, "train", frames=8, frequency=2, aug=True, seed=7)
    b_items = [b[i] for i in reversed(range(len(b)))][::-1]  # other order, other object
    for i in range(len(a)):
        for va, vb in zip(a[i], b_items[i]):
            assert torch.equal(va["image"], vb["image"])
    a.set_epoch(1)
    assert not torch.equal(a[0][0]["image"], b[0][0]["image"])
    b.set_epoch(1)
    assert torch.equal(a[0][0]["image"], b[0][0]["image"])
    c = EchoNetRNC(data, "train", frames=8, frequency=2, aug=True, seed=8)
    assert not torch.equal(c[0][0]["image"], b[0][0]["image"])


def test_seeded_items_do_not_depend_on_workers(data):
    ds = EchoNet(data, "train", frames=8, frequency=2, aug=True, seed=1)
    ds.set_epoch(3)
    single = torch.cat([batch["image"] for batch in torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)])
    workers = torch.cat([batch["image"] for batch in torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)])
    assert torch.equal(single, workers)



def test_set_epoch_reaches_persistent_workers(data):
    ds = EchoNet(data, "train", frames=8, frequency=2, aug=True, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, persistent_workers=True)
    for epoch in range(3):
        ds.set_epoch(epoch)
        through_workers = torch.cat([batch["image"] for batch in loader])
        fresh = EchoNet(data, "train", frames=8, frequency=2, aug=True, seed=1)
        fresh.set_epoch(epoch)
        assert torch.equal(through_workers, torch.stack([fresh[i]["image"] for i in range(len(fresh))]))

# ---------------------------------------------------------------- fixed clips (validation, test) and start indexes

def test_test_set_generated_starts(data):
    ds = EchoNetFixedClips(data, "train", frames=12, frequency=3, n_clips=4, seed=2)
    again = EchoNetFixedClips(data, "train", frames=12, frequency=3, n_clips=4, seed=2)
    other = EchoNetFixedClips(data, "train", frames=12, frequency=3, n_clips=4, seed=3)
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
    decoded = decode_video(data / "Videos" / item["name"])
    for j, start in enumerate(item["starts"].tolist()):
        assert torch.allclose(item["image"][j], expected_clip(decoded, start, 12, 3), atol=1e-6)


def test_test_set_with_start_file_json_csv_and_errors(data, tmp_path):
    starts = {"V000.avi": [0, 26], "V001": [5, 16], "V002.avi": [6, 0]}
    save_start_indexes(starts, tmp_path / "starts.json")
    assert json.loads((tmp_path / "starts.json").read_text())["V001.avi"] == [5, 16]
    assert not list(tmp_path.glob("*.tmp"))
    pd.DataFrame({"FileName": ["V000", "V001", "V002"], "start0": [0, 5, 6], "start1": [26, 16, 0]}).to_csv(
        tmp_path / "starts.csv", index=False)
    for path in (tmp_path / "starts.json", tmp_path / "starts.csv"):
        ds = EchoNetFixedClips(data, "train", 12, 3, path_test_start_indexes=path, n_clips=7)
        assert ds.n_clips == 2  # taken from the file
        item = ds[1]
        assert item["starts"].tolist() == [5, 16]
        assert [frame_number(to_uint8(clip)[0]) for clip in item["image"]] == [5, 16]

    save_start_indexes({"V000.avi": [0, 1]}, tmp_path / "partial.json")
    with pytest.raises(ValueError, match=r"partial.json has no start indexes for 2 video\(s\).*V001.avi, V002.avi"):
        EchoNetFixedClips(data, "train", 12, 3, path_test_start_indexes=tmp_path / "partial.json")
    # V002 has 40 frames: 40 - 33 = 7 valid starts, 7 is out of range
    save_start_indexes({"V000.avi": [0, 1], "V001.avi": [0, 1], "V002.avi": [7, 0]}, tmp_path / "far.json")
    with pytest.raises(ValueError, match=r"far.json: start 7 of V002.avi is out of range \[0, 7\)"):
        EchoNetFixedClips(data, "train", 12, 3, path_test_start_indexes=tmp_path / "far.json")
    save_start_indexes({"V000.avi": [-1, 1], "V001.avi": [0, 1], "V002.avi": [0, 0]}, tmp_path / "neg.json")
    with pytest.raises(ValueError, match=r"start -1 of V000.avi"):
        EchoNetFixedClips(data, "train", 12, 3, path_test_start_indexes=tmp_path / "neg.json")


def test_released_keyword_calls_keep_working(data, tmp_path):
    """The released classes' keywords: EchoNet/EchoNetRNC(root, split, frames, frequency) and
    EchoNetTest(root, frames, frequency, path_test_start_indexes, trial) giving the clip at start `trial`."""
    save_start_indexes({"V000.avi": [0, 26], "V001.avi": [5, 16], "V002.avi": [6, 0]}, tmp_path / "starts.json")
    assert EchoNet(root=data, split="train", frames=12, frequency=3)[0]["image"].shape == (3, 12, 112, 112)
    view1, view2 = EchoNetRNC(root=data, split="train", frames=12, frequency=3)[0]
    assert view1["image"].shape == view2["image"].shape == (3, 12, 112, 112)
    for trial, expected in ((0, [0, 5, 6]), (1, [26, 16, 0])):
        ds = EchoNetTest(root=data, split="train", frames=12, frequency=3,
                         path_test_start_indexes=tmp_path / "starts.json", trial=trial)
        items = [ds[i] for i in range(len(ds))]
        assert all(item["image"].shape == (3, 12, 112, 112) for item in items)  # one clip, as released
        assert [frame_number(to_uint8(item["image"])[0]) for item in items] == expected
    with pytest.raises(ValueError, match=r"trial must lie in \[0, 2\)"):
        EchoNetTest(root=data, split="train", frames=12, frequency=3, path_test_start_indexes=tmp_path / "starts.json",
                    trial=2)


def test_start_index_file_validation(tmp_path):
    (tmp_path / "uneven.json").write_text(json.dumps({"a": [1, 2], "b": [1]}))
    with pytest.raises(ValueError, match="uneven.json: b has 1 starts"):
        load_start_indexes(tmp_path / "uneven.json")
    (tmp_path / "float.json").write_text(json.dumps({"a": [1.5, 2]}))
    with pytest.raises(ValueError, match="float.json: starts of a must be integers"):
        load_start_indexes(tmp_path / "float.json")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="list.json"):
        load_start_indexes(tmp_path / "list.json")
    (tmp_path / "starts.txt").write_text("x")
    with pytest.raises(ValueError, match="starts.txt: unknown start index format"):
        load_start_indexes(tmp_path / "starts.txt")
    with pytest.raises(FileNotFoundError, match="absent.pkl"):
        load_start_indexes(tmp_path / "absent.pkl")
    # plain pickles of numpy arrays, every protocol
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.pkl"
        with open(path, "wb") as f:
            pickle.dump({"x.avi": np.array([3, 1, 2]), "y": [np.int64(0), 4, 5]}, f, protocol=protocol)
        loaded = load_start_indexes(path)
        assert loaded.keys() == {"x.avi", "y.avi"} and loaded["x.avi"].tolist() == [3, 1, 2]
        assert loaded["y.avi"].dtype == np.int64


def test_csv_start_files_keep_names_as_written_and_name_the_bad_cell(tmp_path):
    (tmp_path / "numbers.csv").write_text("FileName,start0,start1,\n0001,2,3,\n1e5,4,5,\n")  # + trailing commas
    loaded = load_start_indexes(tmp_path / "numbers.csv")
    assert {name: starts.tolist() for name, starts in loaded.items()} == {"0001.avi": [2, 3], "1e5.avi": [4, 5]}
    (tmp_path / "hole.csv").write_text("FileName,start0,start1\na,1,2\nb,1,\n")
    with pytest.raises(BadInputError, match=r"hole.csv data row 2 \(FileName b\): start1 '' is not an integer"):
        load_start_indexes(tmp_path / "hole.csv")
    for name, text in (("empty.csv", ""), ("ragged.csv", "FileName,start0\na,1\nb,1,2,3\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(BadInputError, match=rf"^(cannot read )?\S*{name}"):
            load_start_indexes(tmp_path / name)
    (tmp_path / "latin1.json").write_bytes(b'{"\xff": [1, 2]}')
    with pytest.raises(BadInputError, match="latin1.json: not valid JSON"):
        load_start_indexes(tmp_path / "latin1.json")


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


class _EvilSystem:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _EvilEval:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (eval, (f"open({self.target!r}, 'w')",))


@pytest.mark.parametrize("evil, refused", [(_Evil, "io.open"), (_EvilSystem, "system"), (_EvilEval, "builtins.eval")])
def test_restricted_unpickler_refuses_code(tmp_path, evil, refused):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"a.avi": np.array([1, 2, 3]), "b.avi": evil(str(target))}))
    with pytest.raises(UnsafePickleError, match=rf"evil.pkl: refusing to unpickle global '.*{refused}'") as error:
        load_start_indexes(path)
    assert isinstance(error.value, pickle.UnpicklingError) and "\n" not in str(error.value)
    assert not target.exists()


@pytest.mark.skipif(not (SAMPLES.is_dir() and OFFICIAL_STARTS.is_file()), reason="shared EchoNet samples absent")
def test_official_start_indexes_on_real_samples(tmp_path):
    official = load_start_indexes(OFFICIAL_STARTS)
    assert len(official) == 1276 and official["0X10A28877E97DF540.avi"].tolist() == [6, 62, 35]
    ds = EchoNetTest(SAMPLES, frames=36, frequency=4, path_test_start_indexes=OFFICIAL_STARTS)
    cached = EchoNetTest(SAMPLES, frames=36, frequency=4, path_test_start_indexes=OFFICIAL_STARTS, cache_dir=tmp_path)
    assert len(ds) == 9 and ds.n_clips == 3
    reaches_padding = False
    for index in range(len(ds)):
        item = ds[index]
        name = item["name"]
        assert item["starts"].tolist() == official[name].tolist()
        decoded = reference_decode(SAMPLES / "Videos" / name)
        for j, start in enumerate(official[name].tolist()):
            assert torch.allclose(item["image"][j], expected_clip(decoded, start, 36, 4), atol=1e-5)
            reaches_padding |= start + 4 * 35 >= len(decoded)
        assert torch.equal(cached[index]["image"], item["image"])  # the cache is bit-identical
    assert reaches_padding  # 0X18BA5512BE5D6FFA (129 frames) and 0X129133A90A61A59D (133) are padded


# ---------------------------------------------------------------- cache

def test_cache_is_bit_identical_grey_and_mmap(data, tmp_path):
    cache = tmp_path / "cache"
    plain = EchoNetRNC(data, "train", frames=8, frequency=3, aug=True, seed=4)
    cached = EchoNetRNC(data, "train", frames=8, frequency=3, aug=True, seed=4, cache_dir=cache)
    for _ in range(2):  # first pass fills the cache, second reads it
        for i in range(len(plain)):
            for a, b in zip(plain[i], cached[i]):
                assert torch.equal(a["image"], b["image"])
    entries = sorted(p.name for p in cache.iterdir())
    assert "headers" in entries  # the split's frame counts (datasets/headers.py)
    entries.remove("headers")
    assert len(entries) == 6 and not [e for e in entries if e.endswith(".tmp")]
    entry = open_cached(data / "Videos" / "V000.avi", cache)
    assert isinstance(entry.frames, np.memmap) and entry.frames.shape == (60, 112, 112, 1)  # grey: 1 channel
    decoded = decode_video(data / "Videos" / "V000.avi")
    rebuilt = np.stack([entry.colour_lut[c][entry.frames[..., 0]] for c in range(3)], axis=-1)
    assert np.array_equal(rebuilt, decoded)


def test_colour_table_only_where_black_stays_black():
    """Padding is stored as level 0 and read through the table: a table tinting black would make cached
    clips differ from decoded ones, so such videos keep their three channels."""
    green = np.random.default_rng(0).integers(0, 250, (4, 8, 8), dtype=np.uint8)
    green[0, 0, 0] = 0
    grey = np.stack([green, green, green], axis=-1)
    assert colour_table(grey) is not None
    assert colour_table(np.stack([green, green, green + 5], axis=-1)) is None  # black decodes as (0, 0, 5)
    tinted_above_black = np.stack([green, green, np.where(green > 0, green + 5, 0).astype(np.uint8)], axis=-1)
    table = colour_table(tinted_above_black)
    assert table is not None and np.array_equal(table[2][green], tinted_above_black[..., 2])


def test_cache_keeps_three_channels_for_colour_video(tmp_path):
    rng = np.random.default_rng(0)
    write_avi(tmp_path / "colour.avi", rng.integers(0, 256, (6, 112, 112, 3), dtype=np.uint8))
    entry = open_cached(tmp_path / "colour.avi", tmp_path / "cache")
    assert entry.frames.shape == (6, 112, 112, 3) and entry.colour_lut is None
    assert np.array_equal(entry.read([5, 0]), decode_video(tmp_path / "colour.avi")[[5, 0]])
    again = open_cached(tmp_path / "colour.avi", tmp_path / "cache")
    assert isinstance(again.frames, np.memmap) and np.array_equal(again.frames, entry.frames)


def test_cache_is_invalidated_when_the_video_changes(tmp_path):
    root, names = make_dataset(tmp_path / "data", [30, 30])
    cache = tmp_path / "cache"
    ds = EchoNet(root, "train", frames=4, frequency=2, seed=0, cache_dir=cache)
    before = ds[0]["image"]
    old_entries = set(cache.iterdir())
    # rewrite V000 with other content (patch values shifted by 2 frames)
    path = root / "Videos" / "V000.avi"
    stat = path.stat()
    write_avi(path, index_frames(32, seed=9)[2:])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = ds[0]["image"]
    assert not torch.equal(before, after)
    uncached = EchoNet(root, "train", frames=4, frequency=2, seed=0)
    assert torch.equal(after, uncached[0]["image"])
    new_entries = set(cache.iterdir())
    assert not any(p.name.startswith("V000.") for p in old_entries & new_entries)  # stale entry removed
    assert len([p for p in new_entries if p.name.startswith("V000.")]) == 2


def test_entries_of_an_older_video_left_by_an_earlier_run_are_removed(tmp_path, monkeypatch):
    import datasets.cache as cache_module
    root, _ = make_dataset(tmp_path / "data", [30, 30])
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("V000.1.2.npy", "V000.1.2.colour.npy", "V0001.3.4.npy", "other.npy"):  # V0001: another video
        (cache / name).write_bytes(b"")
    monkeypatch.setattr(cache_module, "_entries_by_stem", {})  # a new process: it lists the folder once
    open_cached(root / "Videos" / "V000.avi", cache)
    names = sorted(p.name for p in cache.iterdir())
    assert "V000.1.2.npy" not in names and "V000.1.2.colour.npy" not in names
    assert "V0001.3.4.npy" in names and "other.npy" in names and len([n for n in names if n.startswith("V000.")]) == 2


def test_cache_entry_cut_short_is_decoded_again(tmp_path):
    root, _ = make_dataset(tmp_path / "data", [30, 30])
    cache = tmp_path / "cache"
    expected = EchoNet(root, "train", frames=4, frequency=2, seed=0)[0]["image"]
    EchoNet(root, "train", frames=4, frequency=2, seed=0, cache_dir=cache)[0]
    for entry in sorted(cache.glob("V000.*.npy")):  # as a power loss may leave them (no fsync): cut short, empty
        entry.write_bytes(entry.read_bytes()[:100])
    assert torch.equal(EchoNet(root, "train", frames=4, frequency=2, seed=0, cache_dir=cache)[0]["image"], expected)
    for entry in sorted(cache.glob("V000.*.npy")):
        entry.write_bytes(b"")
    assert torch.equal(EchoNet(root, "train", frames=4, frequency=2, seed=0, cache_dir=cache)[0]["image"], expected)


def test_cache_survives_racing_writers(data, tmp_path):
    results, errors = [], []

    def fill():
        try:
            results.append(np.array(open_cached(data / "Videos" / "V001.avi", tmp_path).read(np.arange(50))))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=fill) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    assert all(np.array_equal(r, results[0]) for r in results)
    assert not list(tmp_path.glob("*.tmp")) and len(list(tmp_path.iterdir())) == 2


# ---------------------------------------------------------------- bad input

def test_bad_arguments(data):
    for bad in (0, -1, 2.5, "4", True, None):
        with pytest.raises(ValueError, match="frames must be a positive int"):
            EchoNet(data, frames=bad)
        with pytest.raises(ValueError, match="frequency must be a positive int"):
            EchoNet(data, frequency=bad)
    with pytest.raises(ValueError, match="split must be one of.*'training'"):
        EchoNet(data, split="training")


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
