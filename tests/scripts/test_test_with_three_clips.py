"""test_with_three_clips.py: its pickle has the released file's layout at every key: types, dtypes, shapes, key
order (tests/fixtures/released_test_pickle_layout.json, read from the official code), so code written for the
released file (e.g. `aux['ef'][i][0]`) reads ours; a negative --seed is refused. Its other outputs after a
stage-1 run: tests/scenarios/test_pipeline.py."""
import json
import pickle

import numpy as np
import pytest
import torch

import test_with_three_clips
from conftest import FIXTURES, TINY
from models import get_feature_extractor, get_shallow_mlp_head
from utils.files.checkpoint import save_best

LAYOUT = json.loads((FIXTURES / "released_test_pickle_layout.json").read_text())["layout"]


def layout(value, sizes):
    """The layout description of `value` in the fixture's terms; sizes maps N / D to their numbers."""
    def dim(n):
        return next((name for name, size in sizes.items() if size == n), n)

    if isinstance(value, dict):
        return {"type": "dict", "keys": {key: layout(item, sizes) for key, item in value.items()}}
    if isinstance(value, list):
        kinds = [json.dumps(layout(item, sizes), sort_keys=True) for item in value]
        assert len(set(kinds)) == 1, f"list items of several layouts: {set(kinds)}"
        return {"type": "list", "length": dim(len(value)), "items": layout(value[0], sizes)}
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).replace("torch.", "")
        return {"type": "Tensor", "dtype": dtype, "shape": [dim(n) for n in value.shape]}
    if isinstance(value, np.ndarray):
        return {"type": "ndarray", "dtype": str(value.dtype), "shape": list(value.shape)}
    return {"type": type(value).__name__}


def test_pickle_layout_equals_the_released_one_at_every_key(echonet, tmp_path):
    model = get_feature_extractor("uniformer_tiny")
    save_best(tmp_path / "best.pth", model, get_shallow_mlp_head(128), 0, 1.0)
    out = tmp_path / "results" / "test.pkl"
    test_with_three_clips.main(["--data_folder", str(echonet), "--pretrained_weights", str(tmp_path / "best.pth"),
                                *TINY[:-2], "--num_workers", "0", "--path_save_test_files", str(out)])
    with open(out, "rb") as f:
        ours = pickle.load(f)
    n_videos = len(ours["best_aux x1 clip"]["aux"]["name"])
    assert n_videos == 3 and model.num_features == 128  # so that N and D below cannot be confused
    assert layout(ours, {"N": n_videos, "D": 128}) == LAYOUT
    assert [list(d) for d in (ours, ours["best_aux x1 clip"], ours["best_aux x1 clip"]["aux"])] == [
        list(LAYOUT["keys"]), list(LAYOUT["keys"]["best_aux x1 clip"]["keys"]),
        list(LAYOUT["keys"]["best_aux x1 clip"]["keys"]["aux"]["keys"])]
    labels = ours["best_aux x1 clip"]["labels"].numpy()[:, 0]
    assert [ef[0] for ef in ours["best_aux x1 clip"]["aux"]["ef"]] == list(labels)  # released code reads ef[i][0]


def test_test_script_refuses_a_negative_seed(capsys):
    with pytest.raises(SystemExit) as exit_:
        test_with_three_clips.parse_option(["--pretrained_weights", "w.pth", "--frames", "8", "--frequency", "2",
                                            "--seed", "-1"])
    assert exit_.value.code == 2 and "--seed: must be >= 0, got -1" in capsys.readouterr().err
