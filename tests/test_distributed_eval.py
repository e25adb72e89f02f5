"""Validation under torchrun: 2 gloo processes score every video exactly once and give the same
metrics as one process. Run as a script, this file is the worker of that 2-process run."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # the worker runs as a plain script
    sys.path.insert(0, str(REPO_ROOT))

from datasets import EchoNetTest  # noqa: E402
from datasets.synthetic import make_synthetic_echonet  # noqa: E402
from models import get_feature_extractor, get_shallow_mlp_head  # noqa: E402
from utils.distributed import cleanup, init_distributed  # noqa: E402
from utils.evaluation import evaluate  # noqa: E402


def score(data_folder):
    torch.manual_seed(0)
    model = get_feature_extractor("uniformer_tiny")
    regressor = get_shallow_mlp_head(model.head.in_features)
    dataset = EchoNetTest(str(data_folder), 8, 2, None, split="all", n_clips=2, seed=5)
    dist = init_distributed("cpu")
    metrics, result = evaluate(model, regressor, dataset, dist, batch_size=3)
    return dist, metrics, result


def test_two_processes_match_one(tmp_path):
    data = tmp_path / "data"
    make_synthetic_echonet(data, n=11, seed=2)  # odd count: ranks get unequal shares
    _, metrics, result = score(data)

    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
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
