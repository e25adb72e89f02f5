"""scoring/results_stream.py: rows appended whole, a row cut by a power loss dropped on reopening, a row cut by
a full disk truncated away before the error."""
import errno
import os

import numpy as np
import pytest

from scoring.results_stream import RowStream, read_rows
from utils.script.errors import BadInputError, OutputError


def test_row_stream_keeps_complete_rows_only(tmp_path):
    path = tmp_path / "rows.csv"
    with RowStream(path, ["file", "ef", "n"]) as rows:
        rows.write({"file": "a,b.dcm", "ef": 55.123456789, "n": np.int64(3)})
        rows.write({"file": "c.avi", "ef": float("nan")})
    with open(path, "a") as f:
        f.write("d.avi,61.2")  # a row cut by a power loss: no newline
    with RowStream(path, ["file", "ef", "n"]) as rows:  # reopened: the cut row is dropped
        rows.write({"file": "e.avi", "ef": 1.0, "n": 1})
    assert path.read_text() == 'file,ef,n\n"a,b.dcm",55.12346,3\nc.avi,,\ne.avi,1.00000,1\n'
    assert read_rows(path, ["file", "ef", "n"])["file"].tolist() == ["a,b.dcm", "c.avi", "e.avi"]
    with pytest.raises(BadInputError, match="rows.csv holds other columns than this run writes"):
        RowStream(path, ["file", "ef"])


def test_row_cut_by_a_full_disk_is_truncated_away(tmp_path, monkeypatch):
    path = tmp_path / "rows.csv"
    rows = RowStream(path, ["file", "ef"])
    rows.write({"file": "a.avi", "ef": 1.0})
    real_write, calls = os.write, []

    def short_then_full(fd, data):  # the last free blocks take a few bytes, then the disk is full
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[:3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(OutputError, match=f"^no space left on device while writing {path}$"):
        rows.write({"file": "b.avi", "ef": 2.0})
    monkeypatch.undo()
    rows.close()
    assert calls == [len("b.avi,2.00000\n"), len("b.avi,2.00000\n") - 3]
    assert path.read_text() == "file,ef\na.avi,1.00000\n"
