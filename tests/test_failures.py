"""User-facing failure modes of the scripts: one clear line, the culprit named, nothing hidden."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT
from datasets import EchoNet, EchoNetTest
from datasets.synthetic import make_synthetic_echonet
from models import get_feature_extractor, get_shallow_mlp_head
from utils.cli import run_main
from utils.distributed import init_distributed
from utils.evaluation import predict
from utils.plots import embedding_map, embedding_maps, prediction_figure
from utils.runtime import batches, make_loader


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("echonet")
    make_synthetic_echonet(root, n=12, seed=5)
    return root


def test_cuda_out_of_memory_gets_a_hint(capsys):
    def main():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(SystemExit) as exit_:
        run_main(main)
    message = str(exit_.value.code)
    assert message.startswith("error: CUDA out of memory") and "--batch_size" in message and "--amp" in message
    assert "\n" not in message


def test_expected_errors_end_in_one_line():
    def main():
        raise ValueError("FileList.csv: duplicate FileName 0X1\n  with more detail below")

    with pytest.raises(SystemExit) as exit_:
        run_main(main)
    assert exit_.value.code == "error: FileList.csv: duplicate FileName 0X1"


def test_script_prints_one_line_for_a_missing_data_folder(tmp_path):
    result = subprocess.run([sys.executable, "train_first_stage.py", "--data_folder", str(tmp_path / "nowhere"),
                             "--frames", "8", "--frequency", "2", "--save_root", str(tmp_path / "save"),
                             "--device", "cpu", "--model", "uniformer_tiny"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[-1]]
    assert "nowhere" in result.stderr and result.stderr.startswith("error:")


def test_worker_crash_names_the_video(data):
    dataset = EchoNet(data, "train", frames=8, frequency=2, seed=0)
    broken = dataset.vnames[0]
    (data / "Videos" / broken).write_bytes(b"not a video at all")
    try:
        loader = make_loader(dataset, batch_size=2, num_workers=1, dist=init_distributed("cpu"), shuffle=False,
                             drop_last=False)
        with pytest.raises(RuntimeError) as error:
            for _ in batches(loader):
                pass
        message = str(error.value)
        assert message.startswith("data loading failed:") and broken in message and "\n" not in message
    finally:
        make_synthetic_echonet(data, n=12, seed=5)  # restore the shared fixture


def test_batched_test_equals_one_clip_at_a_time(data):
    torch.manual_seed(0)
    model = get_feature_extractor("uniformer_tiny").eval()
    regressor = get_shallow_mlp_head(model.head.in_features).eval()
    dataset = EchoNetTest(data, 8, 2, None, split="all", n_clips=3, seed=1)
    dist = init_distributed("cpu")
    batched = predict(model, regressor, dataset, dist, batch_size=5)
    with torch.no_grad():
        one_by_one = np.array([[regressor(model(dataset[i]["image"][k:k + 1])[1]).item() for k in range(3)]
                               for i in range(len(dataset))])
    np.testing.assert_allclose(batched["clip_predictions"], one_by_one, atol=1e-4)
    np.testing.assert_allclose(batched["predictions"], one_by_one.mean(axis=1), atol=1e-4)
    assert batched["names"] == dataset.vnames
    assert np.array_equal(batched["starts"], np.stack([dataset.start_indexes[n] for n in dataset.vnames]))


def test_wandb_without_login_falls_back_to_offline(tmp_path, monkeypatch):
    import argparse

    from utils.wandb_logger import init_wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a wandb key
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    opt = argparse.Namespace(wandb_project_name="p", model_name="run", frames=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = init_wandb(opt, str(tmp_path), enabled=True)
    try:
        assert any("offline" in str(w.message) for w in caught)
        assert run.settings.mode == "offline"
        run.log({"Val L1": 1.0})
    finally:
        run.finish()
    assert init_wandb(opt, str(tmp_path), enabled=False) is None


def test_figures():
    rng = np.random.default_rng(0)
    ef = rng.uniform(20, 80, 30)
    fig = prediction_figure(ef, ef + rng.normal(0, 3, 30))
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "Bland-Altman"
    fig = embedding_map(rng.normal(size=(30, 16)), ef, "tsne", seed=0)
    assert fig.axes[0].collections[0].get_offsets().shape == (30, 2)
    assert "Val TSNE (ef)" in embedding_maps(rng.normal(size=(30, 16)), ef, "Val")
