"""scoring/familiarity.py: the distance of a video to the training videos, its flag, the EF of its neighbours, and
the reference file beside a checkpoint (found, refused, or absent with one line)."""
import json

import numpy as np
import pytest

from scoring.familiarity import (content_identity, familiarity_row, find_reference, load_reference, nearest,
                                 reference_path, save_reference)
from utils.script.errors import BadInputError

# training videos on a line in a 2-D embedding space, EF rising along it (as RnC orders them)
TRAIN = np.array([[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [5, 0], [6, 0]], dtype=np.float32)
EF = np.array([20, 30, 40, 50, 60, 70, 80], dtype=np.float64)


def test_nearest_is_the_mean_l2_distance_to_the_k_closest():
    distances, indexes = nearest(TRAIN, np.array([[3, 4], [0, 0]]), k=3)
    # (3, 4): 4 from (3, 0), sqrt(17) from (2, 0) and (4, 0); (0, 0): 0, 1, 2
    assert distances == pytest.approx([(4 + 2 * 17 ** 0.5) / 3, 1.0])
    assert indexes[0, 0] == 3 and sorted(indexes[0, 1:]) == [2, 4] and indexes[1].tolist() == [0, 1, 2]


def write(tmp_path, val, k=3, checkpoint_bytes=b"weights"):
    checkpoint = tmp_path / "best.pth"
    checkpoint.write_bytes(checkpoint_bytes)
    meta = {"checkpoint": content_identity(checkpoint), "model": "uniformer_tiny", "frames": 16, "frequency": 4}
    return checkpoint, save_reference(reference_path(checkpoint), TRAIN, EF, val, meta, k=k, quantile=0.5)


def test_reference_round_trip_threshold_and_columns(tmp_path):
    # val videos 0.5 above the line: distances to 3 neighbours mean(0.5, sqrt(1.25), sqrt(1.25)) at the middle
    checkpoint, written = write(tmp_path, np.array([[3, 0.5], [3, 1.5], [3, 2.5]]))
    assert reference_path(checkpoint) == str(tmp_path / "best.pth.reference.npz")
    expected = [np.mean([h, np.hypot(1, h), np.hypot(1, h)]) for h in (0.5, 1.5, 2.5)]
    loaded = load_reference(reference_path(checkpoint))
    assert loaded.val_distances == pytest.approx(expected) and loaded.threshold == pytest.approx(expected[1])
    assert loaded.meta["k"] == 3 and loaded.meta["n_train"] == 7 and loaded.meta["frames"] == 16
    assert np.array_equal(loaded.embeddings, TRAIN) and np.array_equal(loaded.ef, EF)
    near = loaded.columns(np.array([[1.0, 0.5], [1.0, 0.5]]))  # two clips, same place: between 30 and 40 %
    assert near["unfamiliar"] == 0 and near["ef_knn"] == pytest.approx(30.0)  # neighbours (1,0), (0,0), (2,0)
    far = familiarity_row(loaded, "scored", np.array([[3.0, 9.0]]))
    assert far["unfamiliar"] == 1 and far["distance"] == pytest.approx(np.mean([9, np.hypot(1, 9), np.hypot(1, 9)]))
    assert familiarity_row(loaded, "skipped", np.zeros((0, 0))) == {} and familiarity_row(None, "scored", TRAIN) == {}
    with pytest.raises(BadInputError, match="embeddings of 2 values, the model gives 3"):
        loaded.columns(np.zeros((1, 3)))
    assert written.threshold == loaded.threshold


def test_find_reference_beside_the_checkpoint_or_says_why_not(tmp_path):
    checkpoint = tmp_path / "other.pth"
    checkpoint.write_bytes(b"no reference here")
    assert find_reference(None, checkpoint) == (None, [("info", f"familiarity: no reference beside the checkpoint "
                                                       f"({checkpoint}.reference.npz); distance, unfamiliar, ef_knn "
                                                       "stay empty (make one with python -m scoring.reference)")])
    assert find_reference("none", checkpoint)[0] is None
    checkpoint, _ = write(tmp_path, np.array([[3, 0.5], [3, 1.5]]))
    found, notes = find_reference(None, checkpoint, clip=(16, 4))
    assert found is not None and len(notes) == 1 and "quantile of 2 val videos" in notes[0][1]
    assert find_reference(None, checkpoint, clip=(36, 4))[1][1][0] == "warning"
    checkpoint.write_bytes(b"retrained")  # the reference beside it is now another checkpoint's
    found, [(level, line)] = find_reference(None, checkpoint)
    assert found is None and level == "warning" and "made for another checkpoint" in line


def test_bad_reference_files_fail_in_one_line(tmp_path):
    text = tmp_path / "ref.npz"
    text.write_text("not an archive")
    with pytest.raises(BadInputError, match=f"^{text}: not a readable familiarity reference"):
        load_reference(text)
    partial = tmp_path / "partial.npz"
    np.savez(partial, embeddings=TRAIN, ef=EF, meta=np.array(json.dumps({"k": 3})))
    with pytest.raises(BadInputError, match=f"^{partial}: array 'val_distances' missing"):
        find_reference(str(partial), tmp_path / "best.pth")


def test_reference_command_then_predict_give_the_val_videos_their_calibration_distances(echonet, tmp_path,
                                                                                         one_torch_thread):
    """`python -m scoring.reference` beside the checkpoint; predict.py finds it and, scoring the val videos as
    files, gives each the distance the threshold was calibrated on: the reference and predict share one path."""
    import pandas as pd

    import predict
    from conftest import write_tiny_checkpoint
    from scoring import reference as command

    checkpoint = write_tiny_checkpoint(tmp_path / "best.pth")
    clips = ["--model", "uniformer_tiny", "--frames", "8", "--frequency", "2", "--clip_stride", "64", "--device",
             "cpu", "--num_workers", "0"]
    assert command.main(["--pretrained_weights", str(checkpoint), "--data_folder", str(echonet), *clips]) == 0
    made = load_reference(reference_path(checkpoint))
    files = pd.read_csv(echonet / "FileList.csv")
    train = files[files["Split"].str.upper() == "TRAIN"]
    assert (made.meta["n_train"], made.meta["n_val"], made.meta["k"]) == (len(train), 3, 5)
    assert np.sort(made.ef) == pytest.approx(np.sort(train["EF"]), abs=1e-5)  # the reader keeps EF as float32
    assert made.meta["checkpoint"] == content_identity(checkpoint)
    assert made.threshold == pytest.approx(np.quantile(made.val_distances, 0.99))
    val = [str(echonet / "Videos" / f"{name}.avi") for name in files[files["Split"].str.upper() == "VAL"]["FileName"]]
    out = tmp_path / "ef.csv"
    assert predict.main(["--pretrained_weights", str(checkpoint), *clips, "--output", str(out), *val]) == 0
    rows = pd.read_csv(out).set_index("file").loc[val]
    assert rows["distance"].to_numpy() == pytest.approx(made.val_distances, abs=1e-5)  # 5 decimals in the CSV
    assert rows["unfamiliar"].tolist() == [int(d > made.threshold) for d in made.val_distances]
    assert "familiarity: " + str(reference_path(checkpoint)) in (tmp_path / "ef.log").read_text()


def test_familiarity_note_on_a_plot_says_ef_knn_and_the_flag():
    from scoring.familiarity import familiarity_note
    assert familiarity_note({"status": "scored"}) is None  # no reference: nothing to say
    assert familiarity_note({"ef_knn": 61.25, "distance": 0.4123, "unfamiliar": 0}) == \
        "EF of the 5 nearest training videos 61.2 %, distance 0.412"
    assert familiarity_note({"ef_knn": 70.0, "distance": 2.5, "unfamiliar": 1}) == (
        "EF of the 5 nearest training videos 70.0 %, distance 2.5\n"
        "UNFAMILIAR: farther than 99 % of the validation videos (not an image-quality judgement)")
