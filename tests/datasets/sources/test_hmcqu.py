"""datasets/sources/hmcqu.py: HMC-QU label sheets paired with their videos: names as typed, unmatched rows and
videos reported once, configurable columns, .xlsx and CSV, the published layout (two header rows, MI / non-MI
words, '*' marks, annotated cycles), bad cells named by row and column, patient ids of the release."""
import warnings

import openpyxl
import pandas as pd
import pytest

from datasets.sources import hmcqu
from datasets.synthetic.transfer import generated_labels, make_synthetic_hmcqu


@pytest.fixture(scope="module")
def hmcqu_root(tmp_path_factory):
    return make_synthetic_hmcqu(tmp_path_factory.mktemp("hmcqu"), n=6, seed=5, n_frames=6, with_unmatched=True,
                                sheet_format="csv")


def test_hmcqu_matches_odd_names_and_reports_unmatched_once(hmcqu_root):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        listing = hmcqu.list_recordings(hmcqu_root, "A4C")  # finds A4C.csv and HMC-QU/A4C by default
    sheet = generated_labels(hmcqu_root / "A4C.csv")
    expected = {sheet["echo"][i - 1]: sheet["mi"][i - 1] for i in range(1, 7)}  # names as typed: 'ES0002 N_4CH_1
    assert {r.recording: r.label for r in listing.recordings} == expected
    assert 0 < sum(expected.values()) < 6
    assert [r.patient for r in listing.recordings] == [f"ES{i:04d}" for i in range(1, 7)]
    assert all(r.path.is_file() and r.view == "A4C" for r in listing.recordings)
    assert listing.unmatched_rows == ["ES9999 _4CH_1"]
    assert [v.name for v in listing.unmatched_videos] == ["ES9998 _4CH_1.avi"]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert sum("ES9999" in m for m in messages) == 1 and sum("ES9998" in m for m in messages) == 1


def test_hmcqu_configurable_columns_and_errors(tmp_path):
    videos = tmp_path / "clips"
    videos.mkdir()
    for name in ("Rec A.avi", "rec_b.MP4"):
        (videos / name).write_bytes(b"")
    sheet = tmp_path / "labels.csv"
    sheet.write_text("File Name,s 1,S2,notes\nREC A,0,0,x\nrec_b.avi,0,1,y\n")
    listing = hmcqu.list_recordings(tmp_path, labels_file=sheet, video_dir=videos, video_column="file name",
                                    label_columns=["S1", "s2"])
    assert [(r.path.name, r.label, r.row) for r in listing.recordings] == [("Rec A.avi", 0, 1), ("rec_b.MP4", 1, 2)]
    assert listing.unmatched_rows == [] and listing.unmatched_videos == []

    with pytest.raises(ValueError, match=r"labels\.csv has no column 'ECHO'"):
        hmcqu.list_recordings(tmp_path, labels_file=sheet, video_dir=videos)
    sheet.write_text("ECHO,SEG1,SEG2\nRec A,0,0\nrec_b,yes,1\n")
    with pytest.raises(ValueError, match=r"labels\.csv data row 2 \(rec_b\), column 'SEG1': 'yes' is not 0 or 1"):
        hmcqu.list_recordings(tmp_path, labels_file=sheet, video_dir=videos)
    sheet.write_text("ECHO,SEG1\nRec A,0\nrecA.avi,1\n")
    with pytest.raises(ValueError, match="data rows 1 and 2"):
        hmcqu.list_recordings(tmp_path, labels_file=sheet, video_dir=videos)
    sheet.write_text("ECHO,notes\nRec A,x\n")
    with pytest.raises(ValueError, match="no segment columns"):
        hmcqu.list_recordings(tmp_path, labels_file=sheet, video_dir=videos)


def test_hmcqu_xlsx_with_one_header_row_reads(tmp_path):
    (tmp_path / "HMC-QU" / "A4C").mkdir(parents=True)
    (tmp_path / "HMC-QU" / "A4C" / "ES0001 _4CH_1.avi").write_bytes(b"")
    pd.DataFrame({"ECHO": ["ES0001 _4CH_1"], "SEG1": [1], "SEG2": [0]}).to_excel(tmp_path / "A4C.xlsx", index=False)
    assert [r.label for r in hmcqu.list_recordings(tmp_path).recordings] == [1]


def test_hmcqu_patient_id_strips_view_tag():
    assert hmcqu.patient_id("ES0001 _4CH_1") == hmcqu.patient_id("ES0001 _2CH_1.avi") == "ES0001"
    assert hmcqu.normalise_name(" ES0001 _4CH_1.AVI ") == hmcqu.normalise_name("es0001_4ch_1") == "es0001_4ch_1"


def test_hmcqu_reads_the_published_sheets(published):
    root, extension = published
    listings = {}
    for view in hmcqu.VIEWS:
        sheet = generated_labels(root / f"{view}.{extension}")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every row has its video and every video its row
            listing = hmcqu.list_recordings(root, view, cycle=True)
        assert len(listing.recordings) == len(sheet) == len(list((root / "HMC-QU" / view).glob("*.avi")))
        truth = {echo.rstrip("*"): (mi, (first, last), echo.endswith("*"))
                 for echo, mi, first, last in sheet.itertuples(index=False)}
        assert {r.recording: (r.label, r.cycle, r.tau) for r in listing.recordings} == truth
        assert 0 < sum(r.label for r in listing.recordings) == sheet["mi"].sum() < len(sheet)
        listings[view] = listing
    names = [r.recording for listing in listings.values() for r in listing.recordings]
    assert any(" N_4CH_" in n for n in names) and any(" n_4CH_" in n for n in names)  # normal-subject tags
    assert any("_CH2_" in n for n in names) and any(r.tau for r in listings["A2C"].recordings)
    patients = {view: {r.patient for r in listing.recordings} for view, listing in listings.items()}
    assert patients["A4C"] == {f"ES000{i}" for i in range(1, 10)}
    assert patients["A2C"] < patients["A4C"] and len(patients["A2C"]) == 7  # a patient's views share the id


def _edited_copy(root, extension, tmp_path, row, column, value):
    """A4C sheet of `root` with the cell at (1-based sheet row, column) replaced, saved in tmp_path."""
    copy = tmp_path / f"A4C.{extension}"
    if extension == "xlsx":
        import openpyxl

        book = openpyxl.load_workbook(root / "A4C.xlsx")
        book.active.cell(row, column).value = value
        book.save(copy)
    else:
        lines = (root / "A4C.csv").read_text(encoding="utf-8-sig").splitlines()
        cells = lines[row - 1].split(",")
        cells[column - 1] = value
        lines[row - 1] = ",".join(cells)
        copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return copy


@pytest.mark.parametrize("row, column, value, message", [
    (4, 3, "maybe", r"data row 2 \(ES0002[^)]*\), column 'SEG9': 'maybe' is not 0 or 1 \(nor MI / non-MI\)"),
    (3, 2, "", r"data row 1 \(ES0001[^)]*\), column 'SEG3': '' is not 0 or 1"),
    (5, 9, "x", r"data row 3 \(ES0003[^)]*\), column 'End of Cycle': 'x' is not a frame number"),
    (5, 8, "0", r"data row 3 \(ES0003[^)]*\), column 'Reference Frame': '0' is not a frame number"),
    (6, 8, "99", r"data row 4 \(ES0004[^)]*\), column 'End of Cycle': \d+ is not after the reference frame 99"),
])
def test_hmcqu_bad_cells_are_named(published, tmp_path, row, column, value, message):
    root, extension = published
    sheet = _edited_copy(root, extension, tmp_path, row, column, value)
    with pytest.raises(ValueError, match=rf"A4C\.{extension} {message}") as error:
        hmcqu.list_recordings(root, labels_file=sheet, cycle=True)
    assert "\n" not in str(error.value)


def test_hmcqu_cycle_needs_its_columns(hmcqu_root, tmp_path):
    sheet = tmp_path / "A4C.csv"
    sheet.write_text(f"ECHO,SEG1\n{generated_labels(hmcqu_root / 'A4C.csv')['echo'][0]},non-MI\n")
    with pytest.warns(UserWarning, match="have no row"):
        assert len(hmcqu.list_recordings(hmcqu_root, labels_file=sheet).recordings) == 1  # whole recordings
    with pytest.raises(ValueError, match=r"no column 'Reference Frame'.*--hmcqu_frames all"):
        hmcqu.list_recordings(hmcqu_root, labels_file=sheet, cycle=True)


def test_hmcqu_names_of_the_release():
    assert hmcqu.patient_id("ES000100 N_4CH_1") == hmcqu.patient_id("ES000100_CH2_1") == "ES000100"
    assert hmcqu.patient_id("ES000153 n_4CH_3") == "ES000153" and hmcqu.patient_id("ES000120_4CH_1") == "ES000120"
    assert hmcqu.patient_id("ES00010_CH2_2*") == "ES00010" != hmcqu.patient_id("ES0001_CH2_1") == "ES0001"
    assert hmcqu.normalise_name("ES00010_CH2_2*") == hmcqu.normalise_name("ES00010_CH2_2.avi") == "es00010_ch2_2"


# ---------------------------------------------------------------- sheets typed here, cell by cell

MASKS = "LV Wall Ground-truth Segmentation Masks"
SEGMENTS = {"A4C": ["SEG3", "SEG9", "SEG14", "SEG16", "SEG12", "SEG6"],
            "A2C": ["SEG4", "SEG10", "SEG15", "SEG13", "SEG7", "SEG1"]}
# ECHO as typed in the release, its six segment words, Reference Frame, End of Cycle, the mask cell
TYPED_ROWS = {
    "A4C": [["ES0001 _4CH_1", "MI", "non-MI", "non-MI", "non-MI", "non-MI", "non-MI", 3, 30, "\u2714"],
            ["ES000100 N_4CH_1", "non-MI", "non-MI", "non-MI", "non-MI", "non-MI", "non-MI", 1, 25, "\u2718"],
            ["ES00010_4CH_2*", "non-MI", "non-MI", "non-MI", "non-MI", "non-MI", "MI", 12, 40, "\u2714"],
            ["ES0003 n_4CH_3", "non-MI", "non-MI", "non-MI", "non-MI", "non-MI", "non-MI", 5, 29, "\u2714"]],
    "A2C": [["ES0001_CH2_1", "non-MI", "MI", "MI", "non-MI", "non-MI", "non-MI", 2, 28, "\u2714"],
            ["ES000100_CH2_1", "non-MI", "non-MI", "non-MI", "non-MI", "non-MI", "non-MI", 4, 31, "\u2718"],
            ["ES00010_CH2_2*", "MI", "non-MI", "non-MI", "non-MI", "non-MI", "non-MI", 1, 20, "\u2714"]],
}
# what the reader must make of them: recording (the video's name) -> (label, patient, cycle, TAU mark, data row)
EXPECTED = {
    "A4C": {"ES0001 _4CH_1": (1, "ES0001", (3, 30), False, 1),
            "ES000100 N_4CH_1": (0, "ES000100", (1, 25), False, 2),
            "ES00010_4CH_2": (1, "ES00010", (12, 40), True, 3),
            "ES0003 n_4CH_3": (0, "ES0003", (5, 29), False, 4)},
    "A2C": {"ES0001_CH2_1": (1, "ES0001", (2, 28), False, 1),
            "ES000100_CH2_1": (0, "ES000100", (4, 31), False, 2),
            "ES00010_CH2_2": (1, "ES00010", (1, 20), True, 3)},
}


def write_published_sheet(path, view):
    """The release's sheet, cell by cell: two header rows with merged ECHO / LABEL / cycle cells, the data rows,
    a blank row and the TAU footnote."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet["A1"], sheet["B1"], sheet["H1"], sheet["J1"] = "ECHO", "LABEL", "One cardiac-cycle frames", MASKS
    for column, name in zip("BCDEFG", SEGMENTS[view]):
        sheet[f"{column}2"] = name
    sheet["H2"], sheet["I2"], sheet["J2"] = "Reference Frame", "End of Cycle", "\u2714 / \u2718"
    for cells in ("A1:A2", "B1:G1", "H1:I1"):
        sheet.merge_cells(cells)
    for r, row in enumerate(TYPED_ROWS[view], start=3):
        for column, value in zip("ABCDEFGHIJ", row):
            sheet[f"{column}{r}"] = value
    sheet[f"A{len(TYPED_ROWS[view]) + 4}"] = "* indicates HMC-QU-TAU"  # after one blank row
    book.save(path)


def test_hmcqu_reads_sheets_typed_as_published(tmp_path):
    for view in hmcqu.VIEWS:
        write_published_sheet(tmp_path / f"{view}.xlsx", view)
        (tmp_path / "HMC-QU" / view).mkdir(parents=True)
        for name in EXPECTED[view]:  # the videos are named without the '*'
            (tmp_path / "HMC-QU" / view / f"{name}.avi").write_bytes(b"")
    patients = {}
    for view in hmcqu.VIEWS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every row has its video and every video its row
            listing = hmcqu.list_recordings(tmp_path, view, cycle=True)
        got = {r.recording: (r.label, r.patient, r.cycle, r.tau, r.row) for r in listing.recordings}
        assert got == EXPECTED[view]
        assert [r.recording for r in listing.recordings] == sorted(EXPECTED[view])
        assert all(r.view == view and r.path == tmp_path / "HMC-QU" / view / f"{r.recording}.avi"
                   for r in listing.recordings)
        patients[view] = {r.patient for r in listing.recordings}
    # a patient's two views share the id (what keeps them in one fold)
    assert patients["A2C"] == {"ES0001", "ES000100", "ES00010"} < patients["A4C"]
