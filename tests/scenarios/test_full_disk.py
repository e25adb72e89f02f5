"""predict.py on a disk that fills up while it streams its CSVs: it stops with one line naming the file and the
reason, and leaves complete rows only (no half-written row, no temporary file).

The disk is simulated around the CLI (`run_main(predict.cli)`, in this process: a subprocess per case costs
seconds of imports): os.write to a file of the output folder succeeds for the first writes, then writes half of
its bytes (a short write, as write(2) does when the last free blocks fill) and then fails with ENOSPC, as a
real full disk answers. A tmpfs would need root and a mount; this works everywhere and cuts at a chosen row."""
import csv
import errno
import os

import numpy as np
import pytest

import predict
from conftest import write_avi, write_tiny_checkpoint
from utils.script.cli import run_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARGS = ["--model", "uniformer_tiny", "--frames", "8", "--frequency", "1", "--clip_stride", "4", "--crop", "none",
        "--target_fps", "0", "--min_frames", "8", "--min_seconds", "0", "--device", "cpu", "--num_workers", "0"]


def fill_disk_after(monkeypatch, folder, allowed, partial):
    """os.write to files under `folder`: `allowed` whole writes, then half of one when `partial`, then ENOSPC."""
    real_open, real_write, ours, count = os.open, os.write, set(), [0]
    folder = os.path.abspath(folder) + os.sep

    def tracked_open(path, flags, mode=0o777, *args, **kwargs):
        fd = real_open(path, flags, mode, *args, **kwargs)
        (ours.add if os.path.abspath(os.fspath(path)).startswith(folder) else ours.discard)(fd)
        return fd

    def full_write(fd, data):
        if fd not in ours:
            return real_write(fd, data)
        count[0] += 1
        if count[0] <= allowed:
            return real_write(fd, data)
        if partial and count[0] == allowed + 1 and len(data) > 1:
            return real_write(fd, bytes(data)[:len(data) // 2])  # the last free blocks
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "open", tracked_open)
    monkeypatch.setattr(os, "write", full_write)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(8)
    for k in range(2):  # 12 frames: clips start at frames 0 and 4, so 2 clip rows then 1 row per video
        write_avi(folder / f"loop{k}.avi", rng.integers(0, 256, (12, 32, 32), dtype=np.uint8))  # grey: no Doppler
    return folder, write_tiny_checkpoint(tmp_path_factory.mktemp("weights") / "best.pth")


# writes to the streams: 1 ef.csv header, 2 ef.clips.csv header, then per video its 2 clip rows and its row
# (loop0: 3, 4, 5; loop1: 6, 7, 8)
@pytest.mark.parametrize("allowed, partial, cut, clip_rows, rows", [
    (7, False, "ef.csv", 4, 1),  # loop1's row finds no space at all: its clip rows are in, the row is not
    (7, True, "ef.csv", 4, 1),  # loop1's row is cut in the middle: no half row may stay
    (5, True, "ef.clips.csv", 2, 1),  # loop1's first clip row is cut
    (0, True, "ef.csv", 0, 0),  # not even the header fits
])
def test_full_disk_stops_with_one_line_and_complete_rows(inputs, tmp_path, monkeypatch, capsys, allowed,
                                                          partial, cut, clip_rows, rows):
    videos, checkpoint = inputs
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr("sys.argv", ["predict.py", "--pretrained_weights", str(checkpoint), *ARGS, "--output",
                                     str(out / "ef.csv"), str(videos)])
    fill_disk_after(monkeypatch, out, allowed, partial)
    with pytest.raises(SystemExit) as exit_status:
        run_main(predict.cli)
    monkeypatch.undo()
    printed = capsys.readouterr()
    assert exit_status.value.code == 1
    errors = [line for line in printed.err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: no space left on device while writing {out / cut}"], printed.err[-3000:]
    assert "Traceback" not in printed.err + printed.out
    # complete rows only: every line ends with its newline and has the header's cells
    for name, expected in (("ef.csv", rows), ("ef.clips.csv", clip_rows)):
        path = out / name
        text = path.read_text() if path.exists() else ""
        assert text == "" or text.endswith("\n"), (name, text[-200:])
        table = list(csv.reader(text.splitlines()))
        assert all(len(line) == len(table[0]) for line in table), (name, text)
        assert max(0, len(table) - 1) == expected, (name, text)
    if rows:  # loop0 is in, as scored
        assert (out / "ef.csv").read_text().splitlines()[1].split(",")[0].endswith("loop0.avi")
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
