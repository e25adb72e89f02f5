"""Which uploads the page reads: the videos predict.py lists in a folder (GIFs too), DICOM by name or by marker."""
from page.scoring import accepted


def test_uploads_the_page_reads(tmp_path):
    for name in ("loop.avi", "loop.MP4", "loop.mov", "loop.mkv", "ES0001_CH2_1.gif", "IM1.dcm", "IM2.DICOM"):
        (tmp_path / name).write_bytes(b"x")
        assert accepted(tmp_path / name), name
    marked = tmp_path / "IM0001"  # a study export's extension-less file: the DICOM marker at byte 128
    marked.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    assert accepted(marked)
    for name in ("report.pdf", "frame.png", "notes.txt", "IM0002"):
        (tmp_path / name).write_bytes(b"\0" * 200)
        assert not accepted(tmp_path / name), name
