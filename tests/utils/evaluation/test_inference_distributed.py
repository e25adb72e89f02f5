"""utils/evaluation/inference.py under torchrun (a run's validation): 2 gloo processes score every video exactly
once and give the same metrics as one process. Run as a script, this file is the worker of that 2-process run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parents[2]
if str(TESTS) not in sys.path:  # the worker runs as a plain script: conftest (it puts the repo on sys.path)
    sys.path.insert(0, str(TESTS))

from conftest import REPO_ROOT, free_port  # noqa: E402
from datasets import EchoNetFixedClips  # noqa: E402
from datasets.synthetic.echonet import make_synthetic_echonet  # noqa: E402
from models import get_feature_extractor, get_shallow_mlp_head  # noqa: E402
from utils.engine.distributed import cleanup, init_distributed  # noqa: E402
from utils.evaluation.inference import InferenceSettings, evaluate  # noqa: E402


def score(data_folder):
    torch.manual_seed(0)
    model = get_feature_extractor("uniformer_tiny")
    regressor = get_shallow_mlp_head(model.head.in_features)
    dataset = EchoNetFixedClips(str(data_folder), "all", 8, 2, n_clips=2, seed=5)
    dist = init_distributed("cpu")
    metrics, result = evaluate(model, regressor, dataset, dist, InferenceSettings(max_videos=3))
    return dist, metrics, result


def test_two_processes_match_one(tmp_path):
    data = tmp_path / "data"
    make_synthetic_echonet(data, n=11, seed=2)  # odd count: ranks get unequal shares
    _, metrics, result = score(data)

    free = free_port()
    workers = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free), "OMP_NUM_THREADS": "1"}
        workers.append(subprocess.Popen([sys.executable, __file__, str(data), str(tmp_path / f"rank{rank}.pt")],
                                        env=env, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True))
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-2000:]

    for rank in range(2):
        distributed = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert distributed["names"] == result["names"]  # every video once, in dataset order
        np.testing.assert_allclose(distributed["predictions"], result["predictions"], atol=1e-5)
        for key in ("mae", "rmse", "r2"):
            assert distributed["metrics"][key] == pytest.approx(metrics[key], abs=1e-5)


def test_training_scripts_under_torchrun(echonet, tmp_path):
    """Both stages run with 2 gloo processes; rank 0 alone writes checkpoints without 'module.'."""
    common = ["--data_folder", str(echonet), "--model", "uniformer_tiny", "--frames", "8", "--frequency", "2",
              "--batch_size", "2", "--epochs", "0", "--num_workers", "0", "--device", "cpu",
              "--save_root", str(tmp_path / "save")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    stage1_best = str(tmp_path / "save" / "s1" / "best.pth")
    for script, extra in (("train_first_stage.py", ["--run_name", "s1", "--aug"]),
                          ("train_second_stage.py", ["--run_name", "s2", "--pretrained_weights", stage1_best])):
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
        result = subprocess.run([*torchrun, script, *common, *extra], cwd=REPO_ROOT, env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "save" / "s1" / "training.log").read_text()
    assert "Device: cpu x 2 process(es)" in log
    assert log.count("Epoch 0 validation:") == 1  # only rank 0 logs
    last = torch.load(tmp_path / "save" / "s2" / "last.pth", weights_only=False)
    assert not any(k.startswith("module.") for k in [*last["model"], *last["regressor"]])
    assert len(last["resume"]["rng_by_rank"]) == 2  # each process's own random streams, for --resume
    for run in ("s1", "s2"):
        # every rank validated the model that was saved: re-scoring best.pth gives its validation MAE
        best = torch.load(tmp_path / "save" / run / "best.pth", weights_only=False)
        report = json.loads((tmp_path / "save" / run / "final_metrics.json").read_text())
        assert float(best["best_error"]) == pytest.approx(report["val"]["mae"], abs=2e-6, rel=0), run  # float32


if __name__ == "__main__":
    dist, metrics, result = score(sys.argv[1])
    torch.save({"names": result["names"], "predictions": result["predictions"], "metrics": metrics}, sys.argv[2])
    cleanup()
