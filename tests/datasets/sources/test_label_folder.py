"""datasets/sources/label_folder.py: a folder of videos with labels.csv: rows read and checked, one-line errors
naming the row."""
import pytest

from datasets.sources import label_folder


def test_label_folder_reads_rows_and_checks_them(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.avi", "sub/b.mp4"):
        (tmp_path / name).write_bytes(b"")
    labels = tmp_path / "labels.csv"
    labels.write_text(" File , Label ,extra\na.avi,55.5,x\nsub/b.mp4, 1 ,y\n")
    rows = label_folder.read_label_folder(tmp_path)
    assert [(r.path, r.label, r.row) for r in rows] == [(tmp_path / "a.avi", 55.5, 1), (tmp_path / "sub/b.mp4", 1.0, 2)]

    labels.write_text("file,ef\na.avi,55\n")
    with pytest.raises(ValueError, match=r"labels\.csv lacks column\(s\) label"):
        label_folder.read_label_folder(tmp_path)
    labels.write_text("file,label\na.avi,55\nc.avi,40\n")
    with pytest.raises(FileNotFoundError, match=r"data row 2: video .*c\.avi does not exist"):
        label_folder.read_label_folder(tmp_path)
    labels.write_text("file,label\na.avi,high\n")
    with pytest.raises(ValueError, match=r"data row 1 \(a\.avi\): label 'high' is not a finite number"):
        label_folder.read_label_folder(tmp_path)
    labels.write_text("file,label\na.avi,1\na.avi,2\n")
    with pytest.raises(ValueError, match="listed twice"):
        label_folder.read_label_folder(tmp_path)
    labels.unlink()
    with pytest.raises(FileNotFoundError, match=r"labels\.csv does not exist"):
        label_folder.read_label_folder(tmp_path)
