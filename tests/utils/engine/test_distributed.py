"""utils/engine/distributed.py: single-process behaviour, and a real 2-process gloo run checked against
one process on the whole batch. Run as a script, this file is the worker of that 2-process run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[2]
if str(TESTS) not in sys.path:  # the worker runs as a plain script: conftest (it puts the repo on sys.path)
    sys.path.insert(0, str(TESTS))

from conftest import REPO_ROOT, free_port  # noqa: E402
from losses import RnCLoss  # noqa: E402
from utils.engine import distributed  # noqa: E402

GLOBAL_BS, IN_DIM, FEAT_DIM, WORLD = 16, 6, 4, 2
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def make_problem():
    """The same model and the same global batch in every process (float64 for an exact compare)."""
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(GLOBAL_BS, 2, IN_DIM, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 5, (GLOBAL_BS, 1), generator=gen).double()  # ties on purpose
    torch.manual_seed(1)
    model = torch.nn.Linear(IN_DIM, FEAT_DIM).double()
    return model, inputs, labels


def worker(out_dir: Path) -> None:
    info = distributed.init_distributed("cpu")
    assert info.enabled and info.world_size == WORLD and info.is_main == (info.rank == 0)
    model, inputs, labels = make_problem()
    ddp_model = torch.nn.parallel.DistributedDataParallel(model)
    local = slice(info.rank * GLOBAL_BS // WORLD, (info.rank + 1) * GLOBAL_BS // WORLD)

    features = ddp_model(inputs[local])  # [8, 2, d]
    global_features = distributed.all_gather_with_grad(features)  # [16, 2, d]
    global_labels = distributed.all_gather_with_grad(labels[local])
    loss = RnCLoss(temperature=2.0)(global_features, global_labels)
    loss.backward()

    result = {
        "loss": loss.detach(),
        "gathered_shape": tuple(global_features.shape),
        "labels_equal": torch.equal(global_labels, labels),
        "weight_grad": model.weight.grad,
        "bias_grad": model.bias.grad,
        "objects": distributed.gather_objects({"rank": info.rank, "name": f"worker{info.rank}"}),
    }
    distributed.barrier()
    torch.save(result, out_dir / f"rank{info.rank}.pt")
    distributed.cleanup()


@pytest.mark.slow  # two processes / servers: .ci/run runs it after the main suite
def test_two_gloo_processes_match_one_process_on_the_global_batch(tmp_path):
    base_env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    base_env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), OMP_NUM_THREADS="1",
                    PYTHONPATH=str(REPO_ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(tmp_path)],
            env={**base_env, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in range(WORLD)
    ]
    try:
        logs = [proc.communicate(timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for rank, (proc, log) in enumerate(zip(procs, logs)):
        assert proc.returncode == 0, f"rank {rank} failed:\n{log[-3000:]}"

    model, inputs, labels = make_problem()
    loss = RnCLoss(temperature=2.0)(model(inputs), labels)
    loss.backward()
    assert model.weight.grad.abs().max() > 1e-6  # a real, non-trivial gradient to compare

    for rank in range(WORLD):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["gathered_shape"] == (GLOBAL_BS, 2, FEAT_DIM)
        assert result["labels_equal"]
        torch.testing.assert_close(result["loss"], loss.detach(), rtol=0, atol=1e-12)
        torch.testing.assert_close(result["weight_grad"], model.weight.grad, rtol=0, atol=1e-12)
        torch.testing.assert_close(result["bias_grad"], model.bias.grad, rtol=0, atol=1e-12)
        assert result["objects"] == [{"rank": 0, "name": "worker0"}, {"rank": 1, "name": "worker1"}]


def test_single_process_defaults(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    info = distributed.init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank) == (0, 1, 0)
    assert info.device == torch.device("cpu") and info.is_main and not info.enabled
    assert not torch.distributed.is_initialized()

    auto = distributed.init_distributed()
    expected = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    assert auto.device == expected

    tensor = torch.randn(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(tensor) is tensor
    assert distributed.gather_objects({"a": 1}) == [{"a": 1}]
    distributed.barrier()
    distributed.cleanup()  # no-ops without a process group


def test_bad_settings_raise_one_line_errors(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available") as err:
            distributed.init_distributed("cuda")
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="invalid device 'gpu0'"):
        distributed.init_distributed("gpu0")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        distributed.init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2"):
        distributed.init_distributed("cpu")


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
