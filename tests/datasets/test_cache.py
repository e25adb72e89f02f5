"""datasets/cache.py: the decoded-video cache gives bit-identical clips from grey entries plus a colour table
(three channels where black is not kept), is renewed when a video changes or an entry is damaged, and survives
racing writers."""
import os
import threading

import numpy as np
import torch

from conftest import index_frames, make_dataset, write_avi
from datasets import EchoNet, EchoNetRNC, decode_video, open_cached
from datasets.cache import colour_table


def test_cache_is_bit_identical_grey_and_mmap(indexed_echonet, tmp_path):
    cache = tmp_path / "cache"
    plain = EchoNetRNC(indexed_echonet, "train", frames=8, frequency=3, aug=True, seed=4)
    cached = EchoNetRNC(indexed_echonet, "train", frames=8, frequency=3, aug=True, seed=4, cache_dir=cache)
    for _ in range(2):  # first pass fills the cache, second reads it
        for i in range(len(plain)):
            for a, b in zip(plain[i], cached[i]):
                assert torch.equal(a["image"], b["image"])
    entries = sorted(p.name for p in cache.iterdir())
    assert "headers" in entries  # the split's frame counts (datasets/headers.py)
    entries.remove("headers")
    assert len(entries) == 6 and not [e for e in entries if e.endswith(".tmp")]
    entry = open_cached(indexed_echonet / "Videos" / "V000.avi", cache)
    assert isinstance(entry.frames, np.memmap) and entry.frames.shape == (60, 112, 112, 1)  # grey: 1 channel
    decoded = decode_video(indexed_echonet / "Videos" / "V000.avi")
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


def test_cache_survives_racing_writers(indexed_echonet, tmp_path):
    results, errors = [], []

    def fill():
        try:
            results.append(np.array(open_cached(indexed_echonet / "Videos" / "V001.avi", tmp_path).read(np.arange(50))))
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
