"""A last.pth in the format written before the training pieces were split (issue 27) still resumes: written here
by hand with the documented keys, at an epoch's end and part-way through one."""
import argparse
import logging

import torch

from utils.engine.distributed import DistInfo
from utils.engine.seed import get_rng_state
from utils.files.checkpoint import load_checkpoint
from utils.training.resume import resume
from utils.training.saver import CheckpointSaver


class FakeRun:
    """What resume and the saver read of a Run, on the CPU in one process."""

    def __init__(self, folder, stage=1):
        self.opt = argparse.Namespace(model="uniformer_tiny", trial=0)
        self.stage, self.folder, self.is_main = stage, str(folder), True
        self.dist = DistInfo(0, 1, 0, torch.device("cpu"), True, False)
        self.device, self.log = self.dist.device, logging.getLogger("test")

    def path(self, name):
        return f"{self.folder}/{name}"

    def released_opt(self):
        return self.opt


def trained(seed):
    torch.manual_seed(seed)
    model, regressor = torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(regressor.parameters()), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    return model, regressor, optimizer


def old_last_pth(path, model, regressor, optimizer, epoch, position=None):
    """last.pth as the code of commit 2d58829 wrote it (Run._write_last / Run._save_position)."""
    rng = get_rng_state(torch.device("cpu"))
    state = {"optimizer": optimizer.state_dict(), "scaler": {}}
    if position is not None:
        state["position"] = position
    state.update(stage=1, best_error=3.5, best_epoch=0, rng=rng, rng_by_rank=[rng],
                 timing={"epochs": [{"epoch": 0}], "validation": [], "final_report": None, "peak_gpu_memory_gib": None})
    torch.save({"opt": argparse.Namespace(model="uniformer_tiny", trial=0), "model": model.state_dict(),
                "regressor": regressor.state_dict(), "epoch": epoch, "best_error": torch.tensor(3.5),
                "resume": state}, path)


def test_an_old_end_of_epoch_last_pth_resumes(tmp_path):
    model, regressor, optimizer = trained(0)
    old_last_pth(tmp_path / "last.pth", model, regressor, optimizer, epoch=0)
    (tmp_path / "best.pth").write_bytes(b"")  # beside it, as a run folder has it
    new_model, new_regressor, new_optimizer = trained(1)
    saver = CheckpointSaver(FakeRun(tmp_path), new_model, new_regressor, {"optimizer": new_optimizer})
    resumed = resume(FakeRun(tmp_path), saver, "auto")
    assert resumed.start_epoch == 1 and resumed.position is None
    assert (saver.best_error, saver.best_epoch, saver.saved_epoch) == (3.5, 0, 0)
    assert saver.timing["epochs"] == [{"epoch": 0}]
    for a, b in ((model, new_model), (regressor, new_regressor)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert str(new_optimizer.state_dict()) == str(optimizer.state_dict())

    # and what it writes next keeps the released keys, in their order
    saver.save_last(1)
    last = load_checkpoint(tmp_path / "last.pth")
    assert list(last) == ["opt", "model", "regressor", "epoch", "best_error", "resume"]
    assert list(last["resume"]) == ["optimizer", "scaler", "stage", "best_error", "best_epoch", "rng", "rng_by_rank",
                                    "timing"]


def test_an_old_mid_epoch_last_pth_resumes_at_its_step(tmp_path):
    model, regressor, optimizer = trained(0)
    meter = {"steps": 3, "clips": 12, "data_wait": 0.5, "seconds": 2.0, "sums": {"RnC": 2.4}}
    old_last_pth(tmp_path / "last.pth", model, regressor, optimizer, epoch=1,
                 position={"epoch": 1, "step": 3, "steps": 5, "meter": meter})
    saver = CheckpointSaver(FakeRun(tmp_path), *trained(1)[:2], {"optimizer": trained(1)[2]})
    resumed = resume(FakeRun(tmp_path), saver, "auto")
    assert resumed.start_epoch == 1 and saver.saved_step == (3, 5)
    assert saver.hint() == "last.pth holds epoch 1 up to step 3/5; rerun with --resume"
    assert resumed.take_position(1, 5, logging.getLogger("test")) == meter
    assert resumed.take_position(1, 5, logging.getLogger("test")) is None  # once only
