"""SIGTERM (what SLURM and Kubernetes send at a time limit, before SIGKILL), a second signal, and data-loader
workers killed by a signal: one line each and the right exit status; loaders that skip the batches a stopped
run had trained on; a torchrun run stopped by SIGTERM on every rank resumes exactly."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import train_first_stage
from conftest import REPO_ROOT, TINY, free_port
from utils.engine.distributed import init_distributed
from utils.training import report
from utils.training import validation as training_validation
from utils.training.validation import validate
from utils.script import cli
from utils.engine.loaders import ResumableSampler, batches, make_loader
from utils.files.checkpoint import load_checkpoint
from utils.script.cli import (Interrupted, defer_sigterm, on_interrupt, run_main, sigterm_pending, worker_death,
                              worker_death_hint)
from models.options import add_model_args, training_parser
from utils.script.options import parser_with_defaults

OOM_LINE = ("error: DataLoader worker (pid 14841) was killed by SIGKILL, most likely by the out-of-memory killer: "
            "lower --num_workers or --batch_size, use --cache_dir (no decoding) or give the job more memory")


@pytest.fixture
def own_handlers():
    """run_main leaves the default handlers after a signal (a second one stops at once): put pytest's back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_sigterm_is_one_line_with_status_143_and_then_ctrl_c_stops_at_once(own_handlers, capsys):
    def main():
        on_interrupt(lambda: "interrupted after 3 of 9 videos; nothing was written; rerun the same command")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # never reached: the handler raises

    with pytest.raises(SystemExit) as exit_:
        run_main(main)
    assert exit_.value.code == 143
    assert capsys.readouterr().err == ("SIGTERM: interrupted after 3 of 9 videos; nothing was written; "
                                       "rerun the same command\n")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and signal.getsignal(signal.SIGINT) is signal.SIG_DFL

    def before(signum, frame):
        pass

    signal.signal(signal.SIGTERM, before)
    run_main(lambda: None)  # no signal: the handlers from before are back
    assert signal.getsignal(signal.SIGTERM) is before


def test_deferred_sigterm_waits_for_the_loop_copies_are_ignored_and_a_later_signal_stops(own_handlers, monkeypatch,
                                                                                            capsys):
    seen = []

    def main():
        on_interrupt(lambda: "interrupted at epoch 1, step 3/5; last.pth holds epoch 1 up to step 3/5; "
                             "rerun with --resume")
        defer_sigterm(True)
        os.kill(os.getpid(), signal.SIGTERM)
        seen.append(sigterm_pending())  # the step goes on
        os.kill(os.getpid(), signal.SIGTERM)  # srun or torchrun passes the scheduler's signal on: not fatal
        seen.append(signal.getsignal(signal.SIGINT))  # a Ctrl-C now would stop at once
        killed = []
        monkeypatch.setattr(cli, "_COPIES_WITHIN", 0.0)
        monkeypatch.setattr(os, "kill", lambda pid, signum: killed.append((pid, signum)))
        signal.raise_signal(signal.SIGTERM)  # later: a real second signal, the process ends
        seen.append((killed, signal.getsignal(signal.SIGTERM)))
        raise Interrupted(signal.SIGTERM)  # what the loop raises once it has saved

    with pytest.raises(SystemExit) as exit_:
        run_main(main)
    assert exit_.value.code == 143
    assert seen == [True, signal.SIG_DFL, ([(os.getpid(), signal.SIGTERM)], signal.SIG_DFL)]
    assert capsys.readouterr().err.endswith("up to step 3/5; rerun with --resume\n")


def test_dead_worker_is_one_line_with_cause_remedy_and_what_is_kept(own_handlers, capsys):
    training_parser(1)  # the script's flags: the hint names --num_workers, --batch_size and --cache_dir

    def main():
        on_interrupt(lambda: "unused", lambda: "last.pth holds epoch 2; rerun with --resume")
        try:  # as PyTorch raises it: the SIGCHLD handler's message, wrapped by the loader
            raise RuntimeError("DataLoader worker (pid 14841) is killed by signal: Killed. ")
        except RuntimeError as e:
            raise RuntimeError("DataLoader worker (pid(s) 14841) exited unexpectedly") from e

    with pytest.raises(SystemExit) as exit_:
        run_main(main)
    assert exit_.value.code == 1
    assert capsys.readouterr().err == f"{OOM_LINE}; last.pth holds epoch 2; rerun with --resume\n"

    parser = parser_with_defaults("predict.py", "no --cache_dir here")  # only flags the script has are named
    add_model_args(parser)
    assert worker_death_hint("7", "SIGKILL").endswith(": lower --num_workers or give the job more memory")
    parser.add_argument("--batch_size")
    assert "killed by SIGBUS, most likely for lack of shared memory (/dev/shm): lower --num_workers or " \
           "--batch_size or give" in worker_death_hint("7", "SIGBUS")

    def terminated():  # a worker that got the job's SIGTERM: the job is being stopped, said as such
        raise RuntimeError("DataLoader worker (pid 7) is killed by signal: Terminated. ")

    with pytest.raises(SystemExit) as exit_:
        run_main(terminated)
    assert exit_.value.code == 143 and capsys.readouterr().err.startswith("SIGTERM: interrupted")
    with pytest.raises(RuntimeError, match="^shapes do not match$"):  # other errors keep their traceback
        run_main(lambda: (_ for _ in ()).throw(RuntimeError("shapes do not match")))


class Suicidal(torch.utils.data.Dataset):
    """Item 1 sends `signum` to the worker process that loads it."""

    def __init__(self, signum):
        self.signum = signum

    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == 1:
            os.kill(os.getpid(), self.signum)
        return index


def test_real_workers_ignore_sigterm_and_a_killed_one_is_recognised():
    dist = init_distributed("cpu")
    loader = make_loader(Suicidal(signal.SIGTERM), 1, 1, dist, training=False)
    assert [int(b) for b in batches(loader)] == [0, 1, 2, 3]  # SIGTERM is the main process's business
    worker = loader._iterator._workers[0]  # persistent; the loader stops it with SIGTERM: it still obeys that
    worker.terminate()
    worker.join(timeout=10)
    assert worker.exitcode == 0

    loader = make_loader(Suicidal(signal.SIGKILL), 1, 1, dist, training=False)
    with pytest.raises(RuntimeError) as error:
        list(batches(loader))
    pid, name = worker_death(error.value)
    assert name == "SIGKILL" and pid.isdigit()


def test_resumable_sampler_leaves_out_the_batches_already_trained():
    dataset = list(range(11))
    full = ResumableSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=3, drop_last=True)
    full.set_epoch(4)
    part = ResumableSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=3, drop_last=True)
    part.set_epoch(4)
    part.skip = 2
    assert list(part) == list(full)[2:] and len(part) == len(full) - 2 == 3


def stage1_main(argv):
    """train_first_stage in this process under run_main (its signal handlers): the exit status, None when done."""
    try:
        run_main(lambda: train_first_stage.main(argv))
    except SystemExit as exit_:
        return exit_.code
    return None


def weights(model, regressor):
    return {part: {key: value.detach().clone() for key, value in module.state_dict().items()}
            for part, module in (("model", model), ("regressor", regressor))}


def test_sigterm_during_validation_and_during_the_final_report_stops_cleanly_and_resumes(echonet, tmp_path,
                                                                                         monkeypatch, own_handlers,
                                                                                         capsys):
    """The scheduler's SIGTERM sent from inside epoch 0's validation: the validation finishes, last.pth holds the
    epoch's weights, one line, 143. The resumed run trains epoch 1; a SIGTERM from inside its final report (after
    test, before val) stops it there, no report file. Each --resume goes on from where it stopped."""
    argv = ["--data_folder", str(echonet), *TINY, "--batch_size", "2", "--epochs", "1", "--learning_rate", "1e-3",
            "--aug", "--trial", "3", "--num_workers", "0", "--save_root", str(tmp_path), "--run_name", "run",
            "--resume"]
    folder = tmp_path / "run"
    validated = {}

    def terminated_while_validating(run, model, regressor, dataset, desc):
        assert desc == "val 0"
        os.kill(os.getpid(), signal.SIGTERM)  # deferred: this validation goes on
        validated.update(weights(model, regressor))
        return validate(run, model, regressor, dataset, desc)

    monkeypatch.setattr(training_validation, "validate", terminated_while_validating)
    assert stage1_main(argv) == 143
    assert capsys.readouterr().err == ("SIGTERM: interrupted at epoch 0, step 5/5; last.pth holds epoch 0; "
                                       "rerun with --resume\n")
    last, best = load_checkpoint(folder / "last.pth"), load_checkpoint(folder / "best.pth")
    assert last["epoch"] == best["epoch"] == 0 and "position" not in last["resume"]
    for part in ("model", "regressor"):  # the weights validated: the end of epoch 0, not a step of it
        assert last[part].keys() == validated[part].keys()
        assert all(torch.equal(last[part][key], value) for key, value in validated[part].items()), part
    log = (folder / "training.log").read_text()
    mae = float(re.search(r"Epoch 0 validation: MAE (\S+) ", log).group(1))  # the validation did finish
    assert float(last["resume"]["best_error"]) == pytest.approx(mae, abs=1e-3)
    assert "Best checkpoint" not in log and not (folder / "final_metrics.json").exists()
    monkeypatch.undo()
    head = last["model"]["head.weight"] + 0.5  # frozen in stage 1: kept by a resume, lost by a restart
    torch.save({**last, "model": {**last["model"], "head.weight": head}}, folder / "last.pth")

    scored = {}

    def terminated_in_the_report(run, model, regressor, dataset, desc):
        if desc == "val":  # test is scored; the scheduler's signal comes now
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not stop the final report")
        scored[desc] = result = validate(run, model, regressor, dataset, desc)
        return result

    monkeypatch.setattr(report, "validate", terminated_in_the_report)
    offset = len(log)
    assert stage1_main(argv) == 143
    assert capsys.readouterr().err == ("SIGTERM: interrupted during the final report; last.pth holds epoch 1; "
                                       "rerun with --resume\n")
    assert torch.equal(load_checkpoint(folder / "last.pth")["model"]["head.weight"], head)
    log = (folder / "training.log").read_text()[offset:]
    assert f"Resumed from {folder / 'last.pth'}: epoch 0 done, best MAE {mae:.3f} (epoch 0)" in log
    assert "Train [0]" not in log and "Train [1][5/5]" in log and "Best checkpoint" in log  # epoch 0 not again
    assert list(scored) == ["test"] and not (folder / "final_metrics.json").exists()
    monkeypatch.undo()

    assert stage1_main(argv) is None
    final = json.loads((folder / "final_metrics.json").read_text())
    best = load_checkpoint(folder / "best.pth")
    assert final["best_epoch"] == best["epoch"] and load_checkpoint(folder / "last.pth")["epoch"] == 1
    assert final["val"]["mae"] == pytest.approx(float(best["best_error"]), abs=2e-6)  # best.pth scored again
    for name, value in scored["test"][0].items():  # what the stopped report had scored, scored again
        assert final["test"][name] == pytest.approx(value, abs=1e-6), name
    assert "Train [" not in (folder / "training.log").read_text()[offset + len(log):]


# ---------------------------------------------------------------- torchrun

def torchrun(data, save_root, name, *extra):
    """Stage 1 under torchrun with 2 gloo processes, in a session of its own (a scheduler signals all of it)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", str(free_port()), "train_first_stage.py", "--data_folder", str(data),
               "--model", "uniformer_tiny", "--frames", "8", "--frequency", "2", "--device", "cpu",
               "--print_freq", "1", "--batch_size", "1", "--epochs", "0", "--num_workers", "0", "--aug",
               "--learning_rate", "1e-3", "--trial", "3", "--save_root", str(save_root), "--run_name", name, *extra]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                         "WANDB_MODE": "disabled"})


def finished(process):
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]


@pytest.mark.slow  # four torchrun runs of 2 processes, ~25 s
def test_torchrun_stopped_by_sigterm_on_every_rank_resumes_exactly(echonet, tmp_path):
    """Also the test of both training stages under torchrun (the uninterrupted reference run is stage 1)."""
    reference = torchrun(echonet, tmp_path, "reference")  # alongside: the runs share the cores
    log = tmp_path / "stopped" / "training.log"
    process = torchrun(echonet, tmp_path, "stopped")
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline and not (
            log.exists() and "Train [0][2/" in log.read_text()):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGTERM)  # torchrun, both ranks: as SLURM does at the time limit
    _, stderr = process.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.startswith("SIGTERM: ")]
    assert len(lines) == 1, stderr[-3000:]  # rank 0 says it, once, for both ranks
    step = int(re.fullmatch(r"SIGTERM: interrupted at epoch 0, step (\d)/5; last\.pth holds epoch 0 up to step "
                            r"\1/5; rerun with --resume", lines[0]).group(1))
    saved = load_checkpoint(tmp_path / "stopped" / "last.pth")
    assert saved["resume"]["position"]["step"] == step < 5 and len(saved["resume"]["rng_by_rank"]) == 2

    finished(torchrun(echonet, tmp_path, "stopped", "--resume"))
    finished(reference)
    assert f"epoch 0 up to step {step}/5" in log.read_text()
    expected, resumed = (load_checkpoint(tmp_path / name / "last.pth") for name in ("reference", "stopped"))
    for part in ("model", "regressor"):
        for key, value in expected[part].items():
            torch.testing.assert_close(resumed[part][key], value, atol=1e-6, rtol=0, msg=f"{part}.{key}")

    # stage 2 under torchrun from the reference; rank 0 alone writes checkpoints without 'module.'
    stage2 = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(free_port()), "train_second_stage.py", "--data_folder", str(echonet),
              "--model", "uniformer_tiny", "--frames", "8", "--frequency", "2", "--batch_size", "2", "--epochs", "0",
              "--num_workers", "0", "--device", "cpu", "--save_root", str(tmp_path), "--run_name", "s2",
              "--pretrained_weights", str(tmp_path / "reference" / "best.pth")]
    result = subprocess.run(stage2, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "reference" / "training.log").read_text()
    assert "Device: cpu x 2 process(es)" in log
    assert log.count("Epoch 0 validation:") == 1  # only rank 0 logs
    last = load_checkpoint(tmp_path / "s2" / "last.pth")
    assert not any(k.startswith("module.") for k in [*last["model"], *last["regressor"]])
    assert len(last["resume"]["rng_by_rank"]) == 2  # each process's own random streams, for --resume
    for run in ("reference", "s2"):
        # every rank validated the model that was saved: re-scoring best.pth gives its validation MAE
        best = load_checkpoint(tmp_path / run / "best.pth")
        report = json.loads((tmp_path / run / "final_metrics.json").read_text())
        assert float(best["best_error"]) == pytest.approx(report["val"]["mae"], abs=2e-6, rel=0), run  # float32
