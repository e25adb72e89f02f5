"""scoring/results_stream.py: rows appended whole, a row cut by a power loss dropped on reopening."""
import numpy as np
import pytest

from scoring.results_stream import RowStream, read_rows
from utils.script.errors import BadInputError


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
