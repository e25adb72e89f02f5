"""utils/files/checkpoint.py: checkpoints in the released layout, loaded safely (DataParallel prefixes, another
architecture's keys named, pickled code refused, missing and cut files)."""
import argparse
import json
import pickle

import pytest
import torch

from conftest import FIXTURES
from models import build_model, get_feature_extractor, get_shallow_mlp_head
from utils.files.checkpoint import load_checkpoint, save_best, save_last, strip_module_prefix


def coreecho_pair(name="uniformer_small"):
    model = get_feature_extractor(name, None)
    return model, get_shallow_mlp_head(model.head.in_features, 1)


def test_saved_checkpoints_follow_released_layout(tmp_path):
    reference = json.loads((FIXTURES / "coreecho_checkpoint_keys.json").read_text())
    model, regressor = coreecho_pair()
    save_best(tmp_path / "best.pth", model, regressor, epoch=3, best_error=4.5)
    opt = argparse.Namespace(model="uniformer_small", frames=36, frequency=4)
    save_last(tmp_path / "last.pth", opt, model, regressor, 3, 4.5, {"stage": 1})

    best = load_checkpoint(tmp_path / "best.pth")
    assert list(best) == ["epoch", "model", "regressor", "best_error"]
    assert best["best_error"].dtype == torch.float32 and best["best_error"].dim() == 0
    last = load_checkpoint(tmp_path / "last.pth")
    assert list(last)[:5] == ["opt", "model", "regressor", "epoch", "best_error"]
    assert isinstance(last["opt"], argparse.Namespace) and last["opt"].frames == 36

    def layout(entries):
        return [(e["name"], list(e["shape"])) for e in entries]

    ours_model = [(k, list(v.shape)) for k, v in best["model"].items()]
    ours_regressor = [(k, list(v.shape)) for k, v in best["regressor"].items()]
    def entries(name):
        return reference[name] if isinstance(reference[name], list) else reference[name]["entries"]
    assert ours_model == layout(entries("model"))
    assert ours_regressor == layout(entries("regressor"))


def test_loads_checkpoints_with_module_prefix(tmp_path):
    model, regressor = coreecho_pair("uniformer_tiny")
    with torch.no_grad():
        regressor[6].bias.fill_(12.5)
    # as the official scripts write last.pth after multi-GPU training: Namespace + 'module.' keys
    released_opt = argparse.Namespace(model="uniformer_small", frames=36, frequency=4, optim="adamw",
                                      model_path="./save", pretrained_weights=None, aug=True, trial=0)
    prefixed = {"opt": released_opt, "model": {f"module.{k}": v for k, v in model.state_dict().items()},
                "regressor": {f"module.{k}": v for k, v in regressor.state_dict().items()}, "epoch": 25,
                "best_error": torch.tensor(1.0)}
    torch.save(prefixed, tmp_path / "dp.pth")
    _, fresh_regressor, _ = build_model("uniformer_tiny", tmp_path / "dp.pth")
    assert fresh_regressor[6].bias.item() == 12.5
    assert strip_module_prefix({"module.a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_settings_are_one_added_key_of_plain_data_and_the_weights_stay_the_same(tmp_path):
    model, regressor = coreecho_pair("uniformer_tiny")
    settings = {"model": "uniformer_tiny", "frames": 16, "frequency": 4, "mean": [32.5, 32.6, 32.9], "stage": 2,
                "metrics": {"mae": 1.9}}
    save_best(tmp_path / "plain.pth", model, regressor, 3, 4.5)
    save_best(tmp_path / "best.pth", model, regressor, 3, 4.5, settings)
    save_last(tmp_path / "last.pth", argparse.Namespace(frames=16), model, regressor, 3, None, {}, settings)
    plain = torch.load(tmp_path / "plain.pth", weights_only=True)
    best = torch.load(tmp_path / "best.pth", weights_only=True)  # no allow-list: plain data only
    assert list(best) == ["epoch", "model", "regressor", "best_error", "settings"] and best["settings"] == settings
    assert list(load_checkpoint(tmp_path / "last.pth"))[-1] == "settings"
    for key in ("model", "regressor"):
        assert list(best[key]) == list(plain[key])
        assert all(torch.equal(best[key][k], plain[key][k]) for k in plain[key])


def test_checkpoint_of_another_architecture_names_the_keys(tmp_path):
    model = get_feature_extractor("uniformer_tiny")
    wide = get_shallow_mlp_head(2 * model.head.in_features, 1)  # a regressor of another width
    save_best(tmp_path / "wide.pth", model, wide, 0, 1.0)
    with pytest.raises(ValueError) as error:
        build_model("uniformer_tiny", tmp_path / "wide.pth")
    message = str(error.value)
    assert "wide.pth" in message and "\n" not in message
    assert "regressor weights do not fit" in message and "wrong shapes" in message


class _CreatesFile:
    """A pickle payload that would create a file if it were ever executed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned.txt"
    torch.save({"model": {}, "regressor": {}, "payload": _CreatesFile(str(marker))}, tmp_path / "evil.pth")
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused to load"):
        load_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()

    # the same payload as a plain pickle file
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_CreatesFile(str(marker)), f)
    with pytest.raises(ValueError, match=r"^refused to load .*evil\.pkl: it needs objects beyond tensors"):
        load_checkpoint(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(tmp_path / "nope.pth")
    model, regressor = coreecho_pair("uniformer_tiny")
    save_best(tmp_path / "ok.pth", model, regressor, 0, 1.0)
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pth"):
        load_checkpoint(tmp_path / "cut.pth")
