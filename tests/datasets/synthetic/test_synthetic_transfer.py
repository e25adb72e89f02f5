"""datasets/synthetic/transfer.py: the generated HMC-QU sheets have the published .xlsx layout (merged header
cells, segment columns, MI / non-MI words, the HMC-QU-TAU footnote)."""
import pytest


@pytest.mark.parametrize("published", ["xlsx"], indirect=True)
def test_hmcqu_xlsx_has_the_published_header(published):
    import openpyxl

    root, _ = published

    sheet = openpyxl.load_workbook(root / "A2C.xlsx").active
    assert sorted(str(r) for r in sheet.merged_cells.ranges) == ["A1:A2", "B1:G1", "H1:I1"]
    assert [c.value for c in sheet[1]] == ["ECHO", "LABEL", None, None, None, None, None,
                                           "One cardiac-cycle frames", None, "LV Wall Ground-truth Segmentation Masks"]
    assert [c.value for c in sheet[2]][1:9] == ["SEG4", "SEG10", "SEG15", "SEG13", "SEG7", "SEG1", "Reference Frame",
                                                "End of Cycle"]
    assert sheet.cell(sheet.max_row, 1).value == "* indicates HMC-QU-TAU"
    assert {sheet.cell(row, 2).value for row in range(3, sheet.max_row - 1)} <= {"MI", "non-MI"}
