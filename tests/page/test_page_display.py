"""page.display: the page's text comes from the file's CSV row (scoring.rows.csv_row), so the columns of the
loop-kind and familiarity checks show once a row has them: the skip reason, the crop's source, the flag and
ef_knn beside the EF, or once why they are empty. Rows are made here as csv_row writes them (every CSV column,
empty ones None), with the new columns added where a test needs them."""
import html

from page.display import NO_REFERENCE, UNFAMILIAR, summary_html
from scoring.rows import CSV_COLUMNS


def csv_like(**cells):
    return {**{column: None for column in CSV_COLUMNS}, **cells}


def test_a_scored_row_shows_ef_range_meta_and_the_columns_it_has():
    row = csv_like(file="loop.dcm", status="scored", ef=62.0, ef_std=2.0, n_clips=2, n_frames=96, fps="49.5",
                   fps_used="50", crop="10,20,300,280", notes="first note; second note", error="")
    text = summary_html([row])
    assert "62.0 ± 2.0 %" in text and "normal (≥ 50 %)" in text and "unfamiliar" not in text
    assert "2 clip(s) of 96 frames; 49.5 fps found, 50 fps used; crop 10,20,300,280<" in text
    assert "<div>first note</div><div>second note</div>" in text
    # the loop-kind and familiarity columns, as the checks being added will write them
    row.update(crop_source="region", unfamiliar=True, distance=3.25, ef_knn=55.04)
    text = summary_html([row])
    assert "crop 10,20,300,280 (from the DICOM&#x27;s ultrasound region)" in text
    assert "EF of the nearest training videos 55.0 %" in text
    # the flag's threshold is the 99th percentile of the validation videos' distances (scoring.familiarity)
    assert UNFAMILIAR == ("unfamiliar: this loop lies farther from the training videos than 99 % of the validation "
                          "videos did — an unfamiliar video, not a judgement of image quality or a diagnosis")
    assert html.escape(UNFAMILIAR + " (distance 3.25)") in text
    assert text.index("62.0 ± 2.0 %") < text.index("EF of the nearest") < text.index("ef-meta")  # beside the EF
    for flag in (False, 0, "False", "", None, float("nan")):  # as read back from a CSV too
        assert "unfamiliar:" not in summary_html([{**row, "unfamiliar": flag}])
    assert "unfamiliar:" in summary_html([{**row, "unfamiliar": "True"}])


def test_skipped_and_failed_rows_say_why_and_nothing_is_markup():
    skipped = csv_like(file="sc.dcm", status="skipped", n_clips=0, crop_source="none",
                       error="secondary capture (SC Image Storage): not a cine loop")
    failed = {"file": "<b>notes</b>.txt", "n_clips": 0, "status": "failed",
              "error": "<b>notes</b>.txt: not a video this page reads (AVI/MP4/MOV/MKV or DICOM)"}
    text = summary_html([skipped, failed])
    assert '<span class="ef-error">sc.dcm: skipped: secondary capture (SC Image Storage): not a cine loop</span>' \
        in text
    assert "&lt;b&gt;notes&lt;/b&gt;.txt: not a video this page reads" in text and "<b>" not in text
    assert text.count('class="ef-row"') == 2 and "ef-value" not in text


def test_without_a_reference_the_summary_says_once_why_the_columns_are_empty():
    scored = csv_like(file="a.avi", status="scored", ef=35.0, ef_std=1.0, n_clips=1, n_frames=40, error="")
    failed = {"file": "b.txt", "n_clips": 0, "status": "failed", "error": "b.txt: not a video this page reads"}
    assert "distance, unfamiliar and ef_knn are empty" in NO_REFERENCE
    text = summary_html([scored, {**scored, "file": "c.avi"}], familiarity_off=True)
    assert text.count(html.escape(NO_REFERENCE)) == 1 and text.endswith(html.escape(NO_REFERENCE) + "</div>")
    assert NO_REFERENCE not in summary_html([scored])  # a reference: its columns speak
    assert "familiarity" not in summary_html([failed], familiarity_off=True)  # nothing scored: nothing to explain
