"""datasets/sources/camus.py: the CAMUS reader (NIfTI and MHD layouts): both views with their cfg values, clips
from ED to ES in the stored orientation, quality and view filters, bad or missing cfg / sequence files and the
released frame subsampling (the clips made of them: tests/datasets/test_transfer_datasets.py)."""
import shutil

import nibabel
import numpy as np
import pytest
import SimpleITK

from datasets.sources import camus
from datasets.synthetic.transfer import MARKER_BASE, MARKER_STEP, make_synthetic_camus

N_CAMUS = 4  # patients 1..4: EF spelled 'LVef' for patient0003, ED stored last for (i + view) odd


@pytest.fixture(scope="module")
def nifti_root(tmp_path_factory):
    return make_synthetic_camus(tmp_path_factory.mktemp("camus_nifti"), n=N_CAMUS, seed=3, layout="nifti")


@pytest.fixture(scope="module")
def mhd_root(tmp_path_factory):
    return make_synthetic_camus(tmp_path_factory.mktemp("camus_mhd"), n=2, seed=4, layout="mhd")


def _write_typed_patient(folder, view, cfg_text, n_frames, layout):
    """One view of a patient written here, not by the generator: the cfg exactly as typed, and a sequence whose
    stored frame k is filled with the level 10 (k + 1) (nibabel / SimpleITK called directly)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"Info_{view}.cfg").write_text(cfg_text)
    volume = np.zeros((n_frames, 20, 30), np.uint8)  # [T, H, W]
    volume[:] = (10 * np.arange(1, n_frames + 1, dtype=np.uint8))[:, None, None]
    if layout == "nifti":
        nibabel.save(nibabel.Nifti1Image(volume.transpose(2, 1, 0).copy(), np.eye(4)),
                     str(folder / f"{folder.name}_{view}_half_sequence.nii.gz"))
    else:
        SimpleITK.WriteImage(SimpleITK.GetImageFromArray(volume), str(folder / f"{folder.name}_{view}_sequence.mhd"))


def _marker(frames):
    """Stored frame number encoded in the top-left block of each returned frame."""
    return (frames[:, 1, 1].astype(int) - MARKER_BASE) // MARKER_STEP


def _copy_patient(root, tmp_path, patient="patient0001"):
    folder = tmp_path / "camus" / patient
    shutil.copytree(root / "database_nifti" / patient, folder)
    return tmp_path / "camus", folder


def test_camus_lists_both_views_sorted_with_cfg_values(nifti_root):
    samples = camus.list_samples(nifti_root, views="both")
    assert [s.name for s in samples] == [f"patient{i:04d}_{v}" for i in range(1, N_CAMUS + 1) for v in ("4CH", "2CH")]
    for s in samples:  # the values themselves: test_camus_reads_the_cfg_values_as_typed
        assert s.path.name == f"{s.name}_half_sequence.nii.gz" and s.cfg.name == f"Info_{s.view}.cfg"
    # the root may be database_nifti/ itself or its parent
    assert camus.list_samples(nifti_root / "database_nifti", "both") == samples


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
    s = camus.list_samples(nifti_root, "4CH")[0]
    volume = camus.read_volume(s.path)  # nibabel, axes reversed to [T, H, W]
    assert np.array_equal(volume, SimpleITK.GetArrayFromImage(SimpleITK.ReadImage(str(s.path))))
    assert volume.shape[0] == s.n_frames and volume.shape[1] != volume.shape[2]


# the two releases' Info_*.cfg, typed as they are laid out (other keys are ignored by the reader)
NIFTI_CFG = {
    ("patient0007", "4CH"): "ED: 1\nES: 9\nNbFrame: 9\nSex: F\nAge: 67\nImageQuality: Medium\nEF: 54.3\n"
                            "FrameRate: 25.0\n",
    ("patient0007", "2CH"): "ED: 11\nES: 2\nNbFrame: 12\nSex: F\nAge: 67\nImageQuality: Poor\nEF: 54.3\n"
                            "FrameRate: 25.0\n",
    ("patient0012", "4CH"): "ED: 3\nES: 10\nNbFrame: 10\nSex: M\nAge: 45\nImageQuality: Good\nEF: 38.05\n",
    ("patient0012", "2CH"): "ED: 8\nES: 1\nNbFrame: 8\nSex: M\nAge: 45\nImageQuality: good\nEF: 38.05\n",
}
MHD_CFG = {
    ("patient0450", "4CH"): "ED: 1\nES: 15\nNbFrame: 15\nSex: M\nAge: 81\nImageQuality: Good\nLVedv: 120.4\n"
                            "LVesv: 70.1\nLVef: 41.78\n",
    ("patient0450", "2CH"): "ED: 14\nES: 1\nNbFrame: 14\nSex: M\nAge: 81\nImageQuality: Medium\nLVedv: 118.0\n"
                            "LVesv: 66.4\nLVef: 43.73\n",
}


@pytest.mark.parametrize("layout, cfgs, expected", [
    ("nifti", NIFTI_CFG, [  # name, ef, quality, n_frames, ed, es, the frame levels from ED to ES
        ("patient0007_4CH", 54.3, "Medium", 9, 1, 9, [10, 20, 30, 40, 50, 60, 70, 80, 90]),
        ("patient0007_2CH", 54.3, "Poor", 12, 11, 2, [110, 100, 90, 80, 70, 60, 50, 40, 30, 20]),
        ("patient0012_4CH", 38.05, "Good", 10, 3, 10, [30, 40, 50, 60, 70, 80, 90, 100]),
        ("patient0012_2CH", 38.05, "Good", 8, 8, 1, [80, 70, 60, 50, 40, 30, 20, 10])]),
    ("mhd", MHD_CFG, [
        ("patient0450_4CH", 41.78, "Good", 15, 1, 15, [10 * k for k in range(1, 16)]),
        ("patient0450_2CH", 43.73, "Medium", 14, 14, 1, [10 * k for k in range(14, 0, -1)])]),
])
def test_camus_reads_the_cfg_values_as_typed(tmp_path, layout, cfgs, expected):
    root = tmp_path / ("database_nifti" if layout == "nifti" else "training")
    for (patient, view), text in cfgs.items():
        n_frames = int(text.split("NbFrame: ")[1].split("\n")[0])
        _write_typed_patient(root / patient, view, text, n_frames, layout)
    samples = camus.list_samples(tmp_path if layout == "nifti" else root, "both")
    assert [(s.name, s.ef, s.quality, s.n_frames, s.ed, s.es) for s in samples] == [row[:6] for row in expected]
    for s, row in zip(samples, expected):
        levels = camus.load_frames(s, frames=None)[:, 5, 5]  # 112x112 now; a flat frame stays flat
        assert levels.tolist() == row[6]


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


def test_even_indices_match_released_subsampling():
    for n in range(33, 70):  # the released preprocessing: Python round() of linspace
        assert camus.even_indices(n, 32).tolist() == [round(i) for i in np.linspace(0, n - 1, num=32)]
        assert len(set(camus.even_indices(n, 32).tolist())) == 32
    assert camus.even_indices(3, 5).tolist() == [round(i) for i in np.linspace(0, 2, 5)] == [0, 0, 1, 2, 2]  # ties
    repeated = camus.even_indices(10, 32)  # too few frames: all kept, in order, repeated
    assert repeated[0] == 0 and repeated[-1] == 9 and sorted(set(repeated.tolist())) == list(range(10))
    assert np.all(np.diff(repeated) >= 0) and np.bincount(repeated).max() <= 4
