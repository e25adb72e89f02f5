"""models/publish.py: a checkpoint as a Hugging Face model folder (safetensors, config.json, familiarity
reference, model card) that predict.py reads by its hub name alone, offline, with the checkpoint's EF."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from huggingface_hub import ModelCard, constants
from safetensors import safe_open

import predict
from conftest import HUB_COMMIT, index_frames, write_avi, write_tiny_checkpoint
from models import read_weights
from models.publish import main as publish_main
from scoring.familiarity import content_identity, load_reference, save_reference
from utils.files.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SETTINGS = {"model": "uniformer_tiny", "frames": 8, "frequency": 2, "stage": 2, "mean": [32.5, 32.6, 32.9],
            "std": [50.0, 50.1, 50.2], "epoch": 3, "metrics": {"mae": 4.25, "rmse": 5.5, "r2": 0.75}}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("publish")
    write_avi(root / "loop.avi", index_frames(40))
    best = root / "run" / "best.pth"
    best.parent.mkdir()
    torch.save({**load_checkpoint(write_tiny_checkpoint(root / "plain.pth")), "settings": SETTINGS}, best)
    rng = np.random.default_rng(0)  # a familiarity reference of best.pth, as stage 2 writes it beside it
    save_reference(str(best) + ".reference.npz", rng.normal(size=(6, 128)), np.arange(6.0), rng.normal(size=(3, 128)),
                   {"checkpoint": content_identity(best), "frames": 8, "frequency": 2})
    assert publish_main([str(best), "--out", str(root / "coreecho-echo"), "--license", "cc-by-nc-4.0"]) == 0
    return root, best, root / "coreecho-echo"


def test_the_folder_holds_safetensors_config_reference_and_card(published):
    _, best, out = published
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                     "model.safetensors.reference.npz"]
    checkpoint = load_checkpoint(best)
    with safe_open(out / "model.safetensors", framework="pt") as tensors:  # no pickle anywhere
        names = set(tensors.keys())
        assert names == ({f"model.{k}" for k in checkpoint["model"]}
                         | {f"regressor.{k}" for k in checkpoint["regressor"]})
        assert all(torch.equal(tensors.get_tensor(f"regressor.{k}"), v) for k, v in checkpoint["regressor"].items())
    config = json.loads((out / "config.json").read_text())
    assert {key: config[key] for key in SETTINGS} == SETTINGS
    reference = load_reference(out / "model.safetensors.reference.npz")  # tied to the published weights now
    assert reference.meta["checkpoint"] == content_identity(out / "model.safetensors")
    assert np.array_equal(reference.embeddings, load_reference(str(best) + ".reference.npz").embeddings)


def test_the_model_card_metadata_reads_back(published):
    data = ModelCard.load(published[2] / "README.md").data.to_dict()
    assert data["license"] == "cc-by-nc-4.0" and data["datasets"] == ["EchoNet-Dynamic"]
    assert {"echocardiography", "ejection-fraction"} <= set(data["tags"])
    results = data["model-index"][0]["results"][0]
    assert {m["type"]: m["value"] for m in results["metrics"]} == SETTINGS["metrics"]
    text = (published[2] / "README.md").read_text()
    assert "research use only" in text.lower() and "not a diagnosis" in text and "apical-4-chamber" in text


def ef_of(weights, root, name):
    out = root / f"{name}.csv"
    assert predict.main(["--pretrained_weights", str(weights), "--device", "cpu", "--num_workers", "0",
                         "--output", str(out), str(root / "loop.avi")]) == 0
    return pd.read_csv(out).iloc[0]


def test_published_by_name_from_the_hub_cache_offline_gives_the_checkpoints_ef(published, tmp_path, monkeypatch):
    root, best, out = published
    snapshot = tmp_path / "hub" / "models--me--coreecho-echo" / "snapshots" / HUB_COMMIT  # huggingface_hub's layout
    shutil.copytree(out, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(HUB_COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    weights = read_weights("hf://me/coreecho-echo")
    assert weights.kind == "coreecho" and weights.path == str(snapshot / "model.safetensors")
    by_name, from_checkpoint = ef_of("hf://me/coreecho-echo", root, "hub"), ef_of(best, root, "checkpoint")
    assert by_name["ef"] == from_checkpoint["ef"]
    assert by_name["distance"] == pytest.approx(from_checkpoint["distance"])  # the reference came along
    assert ef_of(out, root, "folder")["ef"] == from_checkpoint["ef"]  # a folder path works the same way


def test_an_existing_folder_is_not_overwritten(published):
    _, best, out = published
    with pytest.raises(ValueError, match="exists: give a new folder"):
        publish_main([str(best), "--out", str(out)])
