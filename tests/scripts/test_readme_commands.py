"""The README's three commands: their flag sets go through the scripts' argument parsers verbatim, the stage-2
command reads the folder stage 1 writes, and the run names."""
import re
import shlex

import test_with_three_clips
from conftest import REPO_ROOT
from models.options import training_parser
from utils.script.options import run_name


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


def test_stage2_run_name_has_no_temperature():
    opt = training_parser(2).parse_args(readme_commands()["train_second_stage.py"] + ["--temp", "3.0"])
    assert run_name(opt, 2) == "RnC-LP_uniformer_small_ep_4_lr_0.0001_wd_0.0001_bsz_16_aug_True_trial_0"
