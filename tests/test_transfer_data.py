"""Transfer-learning data: CAMUS reader (NIfTI and MHD), HMC-QU label pairing, labelled folders, folds."""
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from datasets.sources import camus, hmcqu, label_folder
from datasets.clips import MEAN, STD
from datasets.synthetic.transfer import (MARKER_BASE, MARKER_STEP, generated_labels, make_synthetic_camus,
                                         make_synthetic_hmcqu)
from utils.evaluation import folds

N_CAMUS = 4  # patients 1..4: EF spelled 'LVef' for patient0003, ED stored last for (i + view) odd


@pytest.fixture(scope="module")
def nifti_root(tmp_path_factory):
    pytest.importorskip("nibabel")
    return make_synthetic_camus(tmp_path_factory.mktemp("camus_nifti"), n=N_CAMUS, seed=3, layout="nifti")


@pytest.fixture(scope="module")
def mhd_root(tmp_path_factory):
    pytest.importorskip("SimpleITK")
    return make_synthetic_camus(tmp_path_factory.mktemp("camus_mhd"), n=2, seed=4, layout="mhd")


@pytest.fixture(scope="module")
def hmcqu_root(tmp_path_factory):
    return make_synthetic_hmcqu(tmp_path_factory.mktemp("hmcqu"), n=6, seed=5, n_frames=6, with_unmatched=True,
                                sheet_format="csv")


def _marker(frames):
    """Stored frame number encoded in the top-left block of each returned frame."""
    return (frames[:, 1, 1].astype(int) - MARKER_BASE) // MARKER_STEP


def _copy_patient(root, tmp_path, patient="patient0001"):
    folder = tmp_path / "camus" / patient
    shutil.copytree(root / "database_nifti" / patient, folder)
    return tmp_path / "camus", folder


# ---------------------------------------------------------------- CAMUS


def test_camus_lists_both_views_sorted_with_cfg_values(nifti_root):
    samples = camus.list_samples(nifti_root, views="both")
    assert [s.name for s in samples] == [f"patient{i:04d}_{v}" for i in range(1, N_CAMUS + 1) for v in ("4CH", "2CH")]
    for s in samples:
        cfg = camus.read_cfg(s.cfg)
        key = "LVef" if s.patient == "patient0003" else "EF"
        assert key in cfg and ({"EF", "LVef"} - {key}).isdisjoint(cfg)  # the generator wrote one spelling
        assert s.ef == float(cfg[key]) and 0 < s.ef < 100
        assert (s.n_frames, s.ed, s.es, s.quality) == (int(cfg["NbFrame"]), int(cfg["ED"]), int(cfg["ES"]),
                                                       cfg["ImageQuality"])
        assert s.path.name == f"{s.name}_half_sequence.nii.gz"
    # the root may be database_nifti/ itself or its parent
    assert camus.list_samples(nifti_root / "database_nifti", "both") == samples
    assert camus.camus_patients(nifti_root) == [f"patient{i:04d}" for i in range(1, N_CAMUS + 1)]


@pytest.mark.parametrize("layout", ["nifti", "mhd"])
def test_camus_clips_go_from_ed_to_es(layout, request):
    root = request.getfixturevalue(f"{layout}_root")
    samples = camus.list_samples(root, "both")
    assert any(s.ed > s.es for s in samples) and any(s.ed < s.es for s in samples)
    for s in samples:
        frames = camus.load_frames(s, frames=None)  # every frame from ED to ES
        assert frames.shape == (s.n_frames, 112, 112) and frames.dtype == np.uint8
        step = 1 if s.ed < s.es else -1
        assert _marker(frames).tolist() == list(range(s.ed - 1, s.es - 1 + step, step))
        clip = camus.load_frames(s, frames=32)  # resampled: starts at ED, ends at ES
        assert clip.shape == (32, 112, 112)
        assert _marker(clip).tolist() == _marker(frames)[camus.even_indices(s.n_frames, 32)].tolist()
        assert (_marker(clip)[0], _marker(clip)[-1]) == (s.ed - 1, s.es - 1)


def test_camus_orientation_top_left_stays_top_left(nifti_root):
    # the marker is 6 rows x 16 columns at the top left; a flip or a transpose would move or reshape it
    for s in camus.list_samples(nifti_root, "both"):
        frame = camus.load_frames(s, frames=None)[0]
        assert frame[1, 1] == frame[1, 10] == MARKER_BASE + MARKER_STEP * (s.ed - 1)
        assert frame[10, 1] == 0 and frame[-2, 1] == 0 and frame[1, -2] == 0


def test_camus_nifti_axes_agree_with_simpleitk(nifti_root):
    sitk = pytest.importorskip("SimpleITK")
    s = camus.list_samples(nifti_root, "4CH")[0]
    volume = camus.read_volume(s.path)  # nibabel, axes reversed to [T, H, W]
    assert np.array_equal(volume, sitk.GetArrayFromImage(sitk.ReadImage(str(s.path))))
    assert volume.shape[0] == s.n_frames and volume.shape[1] != volume.shape[2]


def test_camus_mhd_layout_reads_lvef(mhd_root):
    samples = camus.list_samples(mhd_root, "both")
    assert len(samples) == 4 and all(s.path.suffix == ".mhd" for s in samples)
    assert all(s.ef == float(camus.read_cfg(s.cfg)["LVef"]) for s in samples)


def test_camus_quality_and_view_filters(nifti_root):
    everything = camus.list_samples(nifti_root, "both")
    good = camus.list_samples(nifti_root, "both", qualities={"good"})
    assert good and [s for s in everything if s.quality == "Good"] == good
    two = camus.list_samples(nifti_root, "both", qualities=["Good", "POOR"])
    assert [s for s in everything if s.quality in ("Good", "Poor")] == two and len(two) < len(everything)
    assert [s.view for s in camus.list_samples(nifti_root, "4CH")] == ["4CH"] * N_CAMUS
    assert [s.view for s in camus.list_samples(nifti_root, "2ch")] == ["2CH"] * N_CAMUS
    with pytest.raises(ValueError, match="Excellent"):
        camus.list_samples(nifti_root, "both", qualities={"Excellent"})
    with pytest.raises(ValueError, match="3CH"):
        camus.list_samples(nifti_root, "3CH")


@pytest.mark.parametrize("edit, key", [
    (lambda text: "\n".join(line for line in text.splitlines() if not line.startswith("EF")), "EF"),
    (lambda text: text.replace("EF: ", "EF: abc"), "EF"),
    (lambda text: "\n".join(line for line in text.splitlines() if not line.startswith("ED")), "ED"),
    (lambda text: text.replace("NbFrame: ", "NbFrame: many"), "NbFrame"),
    (lambda text: text.replace("ImageQuality: ", "ImageQuality: Superb #"), "ImageQuality"),
])
def test_camus_bad_cfg_names_file_and_key(nifti_root, tmp_path, edit, key):
    root, folder = _copy_patient(nifti_root, tmp_path)
    cfg = folder / "Info_4CH.cfg"
    cfg.write_text(edit(cfg.read_text()))
    with pytest.raises(ValueError) as error:
        camus.list_samples(root, "4CH")
    message = str(error.value)
    assert str(cfg) in message and f"'{key}'" in message and "\n" not in message


def test_camus_missing_cfg_or_sequence_is_file_not_found(nifti_root, tmp_path):
    root, folder = _copy_patient(nifti_root, tmp_path)
    (folder / "Info_2CH.cfg").unlink()
    assert len(camus.list_samples(root, "4CH")) == 1  # the 4CH view does not need it
    with pytest.raises(FileNotFoundError, match="Info_2CH.cfg"):
        camus.list_samples(root, "both")
    (folder / "patient0001_4CH_half_sequence.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="4CH sequence"):
        camus.list_samples(root, "4CH")


def test_camus_dataset_items(nifti_root):
    dataset = camus.CAMUS(nifti_root, patients=["patient0002", "patient0004"], views="both", frames=8)
    assert [s.name for s in dataset.samples] == ["patient0002_4CH", "patient0002_2CH",
                                                 "patient0004_4CH", "patient0004_2CH"]
    item = dataset[1]
    assert item["name"] == "patient0002_2CH" and item["patient"] == "patient0002"
    assert item["image"].shape == (3, 8, 112, 112) and item["image"].dtype.is_floating_point
    assert item["label"].tolist() == item["ef"].tolist() == [pytest.approx(dataset.samples[1].ef)]
    grey = camus.load_frames(dataset.samples[1], 8).astype(np.float64)
    for c in range(3):  # EchoNet normalisation of the grey clip in every channel
        np.testing.assert_allclose(item["image"][c].numpy(), (grey - MEAN[c]) / STD[c], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="patient0099"):
        camus.CAMUS(nifti_root, patients=["patient0099"])


def test_even_indices_match_released_subsampling():
    for n in range(33, 70):  # the released preprocessing: Python round() of linspace
        assert camus.even_indices(n, 32).tolist() == [round(i) for i in np.linspace(0, n - 1, num=32)]
        assert len(set(camus.even_indices(n, 32).tolist())) == 32
    assert camus.even_indices(3, 5).tolist() == [round(i) for i in np.linspace(0, 2, 5)] == [0, 0, 1, 2, 2]  # ties
    repeated = camus.even_indices(10, 32)  # too few frames: all kept, in order, repeated
    assert repeated[0] == 0 and repeated[-1] == 9 and sorted(set(repeated.tolist())) == list(range(10))
    assert np.all(np.diff(repeated) >= 0) and np.bincount(repeated).max() <= 4


# ---------------------------------------------------------------- HMC-QU


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


def test_hmcqu_xlsx_needs_openpyxl_or_reads(tmp_path):
    (tmp_path / "HMC-QU" / "A4C").mkdir(parents=True)
    (tmp_path / "HMC-QU" / "A4C" / "ES0001 _4CH_1.avi").write_bytes(b"")
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        (tmp_path / "A4C.xlsx").write_bytes(b"PK not really")
        with pytest.raises(ValueError, match="openpyxl"):
            hmcqu.list_recordings(tmp_path)
    else:
        pd.DataFrame({"ECHO": ["ES0001 _4CH_1"], "SEG1": [1], "SEG2": [0]}).to_excel(tmp_path / "A4C.xlsx",
                                                                                      index=False)
        assert [r.label for r in hmcqu.list_recordings(tmp_path).recordings] == [1]


def test_hmcqu_patient_id_strips_view_tag():
    assert hmcqu.patient_id("ES0001 _4CH_1") == hmcqu.patient_id("ES0001 _2CH_1.avi") == "ES0001"
    assert hmcqu.normalise_name(" ES0001 _4CH_1.AVI ") == hmcqu.normalise_name("es0001_4ch_1") == "es0001_4ch_1"


@pytest.fixture(scope="module", params=["xlsx", "csv"])
def published(request, tmp_path_factory):
    """Both views in the published layout (two header rows, words, names as typed, a footnote), as .xlsx and as
    the same cells saved as CSV: 9 patients, 8 frames per recording."""
    if request.param == "xlsx":
        pytest.importorskip("openpyxl")
    root = make_synthetic_hmcqu(tmp_path_factory.mktemp(f"published_{request.param}"), n=9, seed=7, n_frames=8,
                                sheet_format=request.param)
    return root, request.param


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


# ---------------------------------------------------------------- labelled folder


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


# ---------------------------------------------------------------- folds


def _check_partition(fold_list, patients):
    everyone = sorted(set(patients))
    vals = [p for fold in fold_list for p in fold.val]
    assert sorted(vals) == everyone  # every patient validates exactly once
    for fold in fold_list:
        assert set(fold.train).isdisjoint(fold.val)
        assert sorted(fold.train + fold.val) == everyone


def test_camus_protocol_folds_are_exact_blocks():
    patients = [f"patient{i:04d}" for i in range(1, 501)]
    shuffled = list(np.random.default_rng(0).permutation(patients)) + patients[:20]  # order and repeats ignored
    fold_list = folds.contiguous_folds(shuffled)
    assert len(fold_list) == 10
    for k, fold in enumerate(fold_list):
        assert fold.index == k and list(fold.val) == patients[50 * k:50 * k + 50]
    _check_partition(fold_list, patients)
    assert folds.contiguous_folds(patients) == fold_list

    small = folds.contiguous_folds([f"p{i:02d}" for i in range(23)], n_folds=5)
    assert [len(f.val) for f in small] == [5, 5, 5, 4, 4] and small[1].val == tuple(f"p{i:02d}" for i in range(5, 10))
    shuffled_blocks = folds.contiguous_folds(patients, seed=1)
    _check_partition(shuffled_blocks, patients)
    assert shuffled_blocks == folds.contiguous_folds(patients, seed=1) and shuffled_blocks != fold_list


def test_stratified_folds_balance_labels_per_patient():
    patients = [f"ES{i:04d}" for i in range(1, 41)]
    label_of = {p: int(i % 3 == 0) for i, p in enumerate(patients)}  # 14 MI, 26 not
    samples = [(p, label_of[p]) for p in patients for _ in range(2)]  # two recordings per patient
    samples.append(("ES0002", 1))  # one more, MI: ES0002 now counts as MI
    label_of["ES0002"] = 1
    ids, labels = zip(*samples)
    fold_list = folds.stratified_folds(ids, labels, n_folds=5, seed=7)
    _check_partition(fold_list, patients)
    sizes = [len(f.val) for f in fold_list]
    mi = [sum(label_of[p] for p in f.val) for f in fold_list]
    assert max(sizes) - min(sizes) <= 1 and max(mi) - min(mi) <= 1 and sum(mi) == 15
    order = np.random.default_rng(1).permutation(len(ids))
    assert folds.stratified_folds([ids[i] for i in order], [labels[i] for i in order], 5, seed=7) == fold_list
    assert folds.stratified_folds(ids, labels, 5, seed=8) != fold_list

    indices = folds.sample_indices(ids, fold_list[0].val)
    assert sorted({ids[i] for i in indices}) == sorted(fold_list[0].val)
    assert len(indices) == sum(ids.count(p) for p in fold_list[0].val)


def test_folds_reject_bad_sizes():
    with pytest.raises(ValueError, match="n_folds"):
        folds.contiguous_folds(["a", "b"], n_folds=1)
    with pytest.raises(ValueError, match="3 folds of 2 patient"):
        folds.stratified_folds(["a", "b", "b"], [0, 1, 1], n_folds=3)
    with pytest.raises(ValueError, match="labels"):
        folds.stratified_folds(["a", "b"], [0], n_folds=2)
