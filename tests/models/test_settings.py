"""models/settings.py: the settings a checkpoint carries, and predict.py taking them when no flag is given (ours,
the official format's opt, the weights' shapes), a contradicting flag warning and winning."""
import argparse

import pandas as pd
import pytest
import torch

import predict
from conftest import index_frames, write_avi, write_tiny_checkpoint
from models import read_weights
from models.settings import conflict, fill_options, trained_settings
from utils.files.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLIP = {"model": "uniformer_tiny", "frames": 8, "frequency": 2}  # not the scripts' defaults (small, 36, 4)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("settings")
    write_avi(root / "loop.avi", index_frames(40))
    plain = write_tiny_checkpoint(root / "plain.pth")
    content = load_checkpoint(plain)
    torch.save({**content, "settings": {**CLIP, "stage": 2, "mean": [1.0] * 3, "std": [2.0] * 3}}, root / "best.pth")
    # as the official scripts write it: an argparse opt, 'module.' prefixes, no settings of ours
    official = {"opt": argparse.Namespace(**CLIP, optim="adamw", trial=0), "epoch": 25, "best_error": None,
                **{key: {f"module.{k}": v for k, v in content[key].items()} for key in ("model", "regressor")}}
    torch.save(official, root / "official.pth")
    return root


def score(weights, root, name, *flags):
    """predict.py's EF of loop.avi and its log."""
    out = root / f"{name}.csv"
    assert predict.main(["--pretrained_weights", str(weights), "--device", "cpu", "--num_workers", "0",
                         "--reference", "none", "--output", str(out), *flags, str(root / "loop.avi")]) == 0
    return float(pd.read_csv(out)["ef"].iloc[0]), (root / f"{name}.log").read_text()


def explicit_flags():
    return [text for key, value in CLIP.items() for text in (f"--{key}", str(value))]


def test_checkpoint_settings_give_the_ef_of_the_explicit_flags(files):
    given, _ = score(files / "best.pth", files, "given", *explicit_flags())
    taken, log = score(files / "best.pth", files, "taken")
    assert taken == given
    assert "uniformer_tiny" in log and "clips of 8 frames every 2 frame(s)" in log and "WARNING" not in log
    default_clip, _ = score(files / "best.pth", files, "default", "--frames", "36", "--frequency", "4")
    assert default_clip != given  # the clip shape matters: taking the checkpoint's is not a no-op


def test_a_contradicting_flag_warns_in_one_line_and_wins(files):
    asked, log = score(files / "best.pth", files, "asked", "--frames", "16")
    explicit, _ = score(files / "plain.pth", files, "explicit", "--model", "uniformer_tiny", "--frames", "16",
                        "--frequency", "2")
    assert asked == explicit
    [line] = [line for line in log.splitlines() if "--frames 16" in line]
    assert "was trained with frames 8" in line and "frequency" not in line


def test_official_checkpoint_is_scored_without_flags(files):
    taken, _ = score(files / "official.pth", files, "official")
    given, _ = score(files / "best.pth", files, "given_again", *explicit_flags())
    assert taken == given


def test_without_settings_the_shapes_tell_the_model_and_the_defaults_the_clip(files):
    opt = argparse.Namespace(model=None, frames=None, frequency=3)
    sources = fill_options(opt, read_weights(files / "plain.pth"), {"model": "uniformer_small", "frames": 36})
    assert (opt.model, opt.frames, opt.frequency) == ("uniformer_tiny", 36, 3)
    assert sources == {"model": "shapes", "frames": "default", "frequency": "flag"}
    assert conflict(opt, read_weights(files / "plain.pth")) is None  # nothing to contradict


def test_a_bad_setting_in_a_file_is_one_line_naming_it(files, tmp_path):
    content = load_checkpoint(files / "best.pth")
    torch.save({**content, "settings": {**CLIP, "frames": "many"}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth: setting 'frames' is 'many', not a positive whole number$"):
        trained_settings(read_weights(tmp_path / "bad.pth"))
