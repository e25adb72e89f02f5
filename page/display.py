"""What the page writes about each file, built from the file's CSV row (scoring.rows.csv_row), so a column added
there shows here once it is known below: the EF with its range, or why the file was skipped or failed; where
the crop came from (`crop_source`); the familiarity check (`unfamiliar`, `distance`, `ef_knn`) beside the EF,
or once in the summary why it is off (`NO_REFERENCE`). A column a row lacks is left out of the text."""
import html
import math

from scoring.archive_clips import SCORED, SKIPPED
from scoring.familiarity import THRESHOLD_QUANTILE

# what the flag means (scoring.familiarity: distance above the validation videos' 99th percentile) and does not
UNFAMILIAR = (f"unfamiliar: this loop lies farther from the training videos than {THRESHOLD_QUANTILE * 100:g} % of "
              "the validation videos did — an unfamiliar video, not a judgement of image quality or a diagnosis")
NO_REFERENCE = ("No familiarity check: the page runs without a familiarity reference of its model (its log says "
                "why), so distance, unfamiliar and ef_knn are empty.")
CROP_SOURCES = {"region": "from the DICOM's ultrasound region", "auto": "found from the moving sector",
                "given": "as given", "none": "the whole frame"}


def given(value) -> bool:
    """False for a cell left empty (None, '', NaN)."""
    return not (value is None or value == "" or (isinstance(value, float) and math.isnan(value)))


def is_true(value) -> bool:
    return given(value) and str(value).strip().lower() in ("1", "1.0", "true", "yes")


def ef_range(ef):
    """The range of an EF (%), judged on the value shown (one decimal): (label, CSS class)."""
    shown = round(float(ef), 1)
    if shown >= 50:
        return "normal (≥ 50 %)", "ef-normal"
    if shown > 40:
        return "mildly reduced (41-49 %)", "ef-mild"
    return "reduced (≤ 40 %)", "ef-reduced"


def crop_text(row, asked=None) -> str:
    """'crop x,y,w,h (from ...)', or how a 112x112 video was used; `asked` the page's crop option, shown when
    the row does not say where its crop came from."""
    if not given(row.get("crop")):
        return "used as it is (112x112)"
    source = row.get("crop_source")
    source = CROP_SOURCES.get(source, source) if given(source) else asked
    return f"crop {row['crop']}" + (f" ({source})" if source else "")


def meta_text(row) -> str:
    fps, used = row.get("fps"), row.get("fps_used")
    return (f"{row['n_clips']} clip(s) of {row['n_frames']} frames; "
            + (f"{fps} fps found" if given(fps) else "no frame rate found")
            + (f", {used} fps used; " if given(used) else ", frames used as they are; ") + crop_text(row))


def familiarity_html(row) -> str:
    """The familiarity check beside the EF: the nearest training videos' EF, the flag and its meaning."""
    parts = []
    if given(row.get("ef_knn")):
        parts.append(f'<span class="ef-knn">EF of the nearest training videos {float(row["ef_knn"]):.1f} %</span>')
    if is_true(row.get("unfamiliar")):
        distance = f" (distance {float(row['distance']):.3g})" if given(row.get("distance")) else ""
        parts.append(f'<div class="ef-unfamiliar">{html.escape(UNFAMILIAR + distance)}</div>')
    return "".join(parts)


def row_html(row) -> str:
    """One file's row on the page: its EF in large type with its range, or the one line why it has none."""
    name = f'<span class="ef-name">{html.escape(str(row["file"]))}</span>'
    if row["status"] != SCORED:  # skipped (not a cine loop, too short) or failed: the one line why
        why = row.get("error") or row.get("skip_reason") or "no reason given"
        line = f"{row['file']}: skipped: {why}" if row["status"] == SKIPPED else why
        return f'<div class="ef-row">{name}<span class="ef-error">{html.escape(line)}</span></div>'
    ef, sd = float(row["ef"]), float(row["ef_std"])
    label, kind = ef_range(ef)
    notes = "".join(f"<div>{html.escape(note)}</div>" for note in str(row.get("notes") or "").split("; ") if note)
    return (f'<div class="ef-row">{name}<span class="ef-value">{ef:.1f} ± {sd:.1f} %</span>'
            f'<span class="ef-range {kind}">{label}</span>{familiarity_html(row)}'
            f'<div class="ef-meta">{html.escape(meta_text(row))}</div><div class="ef-notes">{notes}</div></div>')


def summary_html(rows, familiarity_off=False) -> str:
    """Every row; with `familiarity_off` (no reference) and a file scored, one note why its columns are empty."""
    note = familiarity_off and any(row["status"] == SCORED for row in rows)
    return ('<div id="ef-rows">' + "".join(row_html(row) for row in rows) + "</div>"
            + (f'<div class="ef-notes" id="familiarity-off">{html.escape(NO_REFERENCE)}</div>' if note else ""))
