"""scoring/studies.py: one row per study (DICOM study UID, else the folder), counts by status and skip reason, the
EF over the scored loops the familiarity check did not flag."""
import pandas as pd

from scoring.studies import STUDY_COLUMNS, skip_category, write_studies

ROWS = [  # OUT.csv as text: (file, status, ef, unfamiliar, error, study_uid)
    ("/a/STUDY1/IM1", "scored", "50.00000", "0", "", "1.2.3"),
    ("/a/STUDY1/IM2", "scored", "60.00000", "0", "", "1.2.3"),
    ("/a/STUDY1/IM3", "scored", "10.00000", "1", "", "1.2.3"),  # flagged: counted, not averaged
    ("/a/STUDY1/IM4", "skipped", "", "", "single frame: not a cine loop", "1.2.3"),
    ("/a/STUDY1/SR1", "skipped", "", "", "no image (Basic Text SR Storage): not a cine loop", "1.2.3"),
    ("/a/STUDY1/loop.avi", "scored", "40.00000", "", "", ""),  # no UID: its folder, no reference: unflagged
    ("/a/STUDY1/cut.avi", "failed", "", "", "cut.avi: cannot be opened as a video", ""),
    ("/a/STUDY2/IM1", "skipped", "", "", "5 frames: fewer than --min_frames 8", "9.9"),
    ("/a/STUDY2/IM2", "skipped", "", "", "3 frames: fewer than --min_frames 8", "9.9"),
]


def test_study_table_counts_and_ef_of_unflagged_loops(tmp_path):
    rows = pd.DataFrame(ROWS, columns=["file", "status", "ef", "unfamiliar", "error", "study_uid"])
    path = tmp_path / "ef.studies.csv"
    write_studies(rows, path)
    assert path.read_text().splitlines() == [
        ",".join(STUDY_COLUMNS),
        "1.2.3,study_uid,5,3,2,0,no image: 1; single frame: 1,1,55.00000,7.07107,2",  # SD of 50, 60 (n - 1)
        "/a/STUDY1,folder,2,1,0,1,,0,40.00000,,1",
        "9.9,study_uid,2,0,2,0,fewer than --min_frames: 2,0,,,0",
    ]


def test_skip_categories_drop_the_numbers_of_one_file():
    assert skip_category("0.40 s long: shorter than --min_seconds 0.5") == "shorter than --min_seconds"
    assert skip_category("secondary capture (Secondary Capture Image Storage): not a cine loop") == "secondary capture"
    assert skip_category("modality CT (CT Image Storage): not an ultrasound loop") == "modality CT"
