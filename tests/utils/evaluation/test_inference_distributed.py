"""utils/evaluation/inference.py under torchrun (a run's validation): 2 gloo processes score every video exactly
once and give the same metrics as one process. Run as a script, this file is the worker of that 2-process run."""
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


@pytest.mark.slow  # two processes / servers: .ci/run runs it after the main suite
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


if __name__ == "__main__":
    dist, metrics, result = score(sys.argv[1])
    torch.save({"names": result["names"], "predictions": result["predictions"], "metrics": metrics}, sys.argv[2])
    cleanup()
