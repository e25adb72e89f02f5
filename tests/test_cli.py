"""The README commands' flag sets go through the argument parsers verbatim; bad flags fail clearly."""
import re
import shlex
import subprocess
import sys

import pytest
import torch

import test_with_three_clips
from utils.script.options import run_name, training_parser
from conftest import REPO_ROOT


def readme_commands():
    """{script: [args...]} for the three commands in the README's 'three commands' block."""
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("### The three commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = {}
    for command in re.split(r"\n\s*\n", block.replace("\\\n", " ")):
        words = shlex.split(command.replace("$ECHONET", "/data/EchoNet-Dynamic"))
        commands[words[1]] = words[2:]
    return commands


def test_readme_has_the_three_commands():
    assert set(readme_commands()) == {"train_first_stage.py", "train_second_stage.py", "test_with_three_clips.py"}


def test_stage1_readme_flags():
    opt = training_parser(1).parse_args(readme_commands()["train_first_stage.py"])
    assert opt.pretrained_weights == "uniformer_small_k400_16x8.pth"  # --pretrained_weight (singular) works
    assert (opt.model, opt.num_workers, opt.batch_size, opt.frames, opt.frequency) == ("uniformer_small", 8, 16, 36, 4)
    assert (opt.learning_rate, opt.weight_decay, opt.lr_decay_rate, opt.temp) == (1e-4, 1e-4, 0.1, 1.0)
    assert opt.aug and opt.wandb and opt.epochs == 25 and opt.trial == 0 and opt.lr_step_epoch == 15
    assert opt.wandb_project_name == "coreecho"
    assert run_name(opt, 1) == ("RnC+L1SG_uniformer_small_ep_25_lr_0.0001_d_0.1_wd_0.0001_bsz_16_aug_True_temp_1.0"
                                "_label_l1_feature_l2_trial_0")


def test_stage2_readme_flags():
    opt = training_parser(2).parse_args(readme_commands()["train_second_stage.py"])
    assert opt.pretrained_weights.endswith("best.pth") and opt.epochs == 4 and opt.aug
    assert (opt.batch_size, opt.frames, opt.frequency, opt.learning_rate) == (16, 36, 4, 1e-4)
    # the stage-1 README block's pretrained path is the run folder stage 1 writes
    stage1 = training_parser(1).parse_args(readme_commands()["train_first_stage.py"])
    assert f"save/{run_name(stage1, 1)}/best.pth" == opt.pretrained_weights


def test_test_readme_flags():
    opt = test_with_three_clips.parse_option(readme_commands()["test_with_three_clips.py"])
    assert opt.path_test_start_indexes == "test_start_indexes.pkl"
    assert opt.path_save_test_files == "results/test_files.pkl"
    assert (opt.model, opt.frames, opt.frequency, opt.num_workers) == ("uniformer_small", 36, 4, 4)
    assert opt.amp == "none"  # the test pass defaults to fp32 so published numbers reproduce


def test_extra_flags():
    opt = training_parser(1).parse_args(["--frames", "8", "--frequency", "2", "--device", "cpu",
                                         "--save_root", "/tmp/x", "--resume", "--amp", "bf16", "--cache_dir", "/tmp/c",
                                         "--val_n_clips_per_sample", "2", "--label_diff", "l1", "--feature_sim", "l2",
                                         "--print_freq", "3", "--lr_step_epoch", "-1", "--depthwise", "auto"])
    assert opt.resume == "auto" and opt.amp == "bf16" and opt.device == "cpu" and opt.val_n_clips_per_sample == 2
    assert opt.depthwise == "auto"
    explicit = training_parser(1).parse_args(["--frames", "8", "--frequency", "2", "--resume", "x/last.pth"])
    assert explicit.resume == "x/last.pth"


@pytest.mark.parametrize("flags, message", [
    (["--frequency", "4"], "--frames"),
    (["--frames", "36"], "--frequency"),
    (["--frames", "0", "--frequency", "4"], "--frames"),
    (["--frames", "36", "--frequency", "-1"], "--frequency"),
    (["--frames", "36", "--frequency", "four"], "--frequency"),
    (["--frames", "36", "--frequency", "4", "--temp", "0"], "--temp: must be a finite number > 0, got 0"),
    (["--frames", "36", "--frequency", "4", "--temp", "nan"], "--temp"),
    (["--frames", "36", "--frequency", "4", "--learning_rate", "-1"], "--learning_rate"),
    (["--frames", "36", "--frequency", "4", "--weight_decay", "-0.1"], "--weight_decay: must be a finite number >= 0"),
])
def test_bad_frames_and_frequency_fail_with_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        training_parser(1).parse_args(flags)  # the first thing train_first_stage.main does
    assert exit_.value.code == 2
    error_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert error_line.startswith("train_first_stage.py: error:") and message in error_line


def test_help_shows_every_default(capsys):
    text = " ".join(training_parser(1).format_help().split())
    for shown in ("--model {uniformer_small,uniformer_base,uniformer_tiny} default: uniformer_small",
                  "--learning_rate LEARNING_RATE default: 0.0001", "--wandb_project_name WANDB_PROJECT_NAME default: "
                  "echonet-ef", "--aug random 6-pixel shift augmentation (default: False)"):
        assert shown in text
    with pytest.raises(SystemExit):
        test_with_three_clips.parse_option(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--split {test,val,train,all} default: test" in text and "default: ./test_results/test_files.pkl" in text


def test_test_script_refuses_a_negative_seed(capsys):
    with pytest.raises(SystemExit) as exit_:
        test_with_three_clips.parse_option(["--pretrained_weights", "w.pth", "--frames", "8", "--frequency", "2",
                                            "--seed", "-1"])
    assert exit_.value.code == 2 and "--seed: must be >= 0, got -1" in capsys.readouterr().err


def test_amp_auto_is_bf16_only_on_gpus_with_native_bf16(monkeypatch):
    from utils.engine.amp import amp_dtype
    gpu = torch.device("cuda", 0)
    for capability, expected in (((7, 5), None), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert amp_dtype("auto", gpu) is expected  # a T4/V100 only emulates bf16: fp32 there
    assert amp_dtype("auto", torch.device("cpu")) is None and amp_dtype("bf16", gpu) is torch.bfloat16


def test_script_rejects_bad_frames_from_the_command_line():
    result = subprocess.run([sys.executable, "train_first_stage.py", "--frames", "0", "--frequency", "4"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--frames: must be >= 1, got 0" in result.stderr.strip().splitlines()[-1]


def test_stage2_run_name_has_no_temperature():
    opt = training_parser(2).parse_args(readme_commands()["train_second_stage.py"] + ["--temp", "3.0"])
    assert run_name(opt, 2) == "RnC-LP_uniformer_small_ep_4_lr_0.0001_wd_0.0001_bsz_16_aug_True_trial_0"


def test_deterministic_flag_selects_deterministic_cudnn():
    from utils.engine.seed import set_seed

    opt = training_parser(1).parse_args(["--frames", "8", "--frequency", "2", "--deterministic"])
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True
        set_seed(opt.trial, opt.deterministic)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved
    assert not training_parser(1).parse_args(["--frames", "8", "--frequency", "2"]).deterministic


def test_long_dumps_go_to_the_log_file_only(tmp_path, capsys):
    from utils.script.log import FILE_ONLY, setup_logger

    log = setup_logger(tmp_path / "training.log")
    log.info("Options:\n  temp: 1.0", extra=FILE_ONLY)
    log.info("Device: cpu")
    for handler in log.handlers:
        handler.flush()
    assert "Options" not in capsys.readouterr().out
    assert "Options:\n  temp: 1.0" in (tmp_path / "training.log").read_text()
