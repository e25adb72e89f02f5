"""models/options.py: the scripts' option parsers: fp32 by default, the extra flags, the models' own choices, bad
values rejected in one usage line, and every default shown in --help (utils/script/options.py's formatter). (The
README's commands: tests/scripts/test_readme_commands.py.)"""
import pytest

import test_with_three_clips
from models import get_feature_extractor
from models.options import training_parser
from models.uniformer import DEPTHWISE_CHOICES


def test_fp32_is_the_default_of_every_script():
    required = ["--frames", "36", "--frequency", "4"]
    assert training_parser(1).parse_args(required).amp == "none"
    assert training_parser(2).parse_args(required).amp == "none"
    assert test_with_three_clips.parse_option(required + ["--pretrained_weights", "x.pth"]).amp == "none"


def test_extra_flags():
    opt = training_parser(1).parse_args(["--frames", "8", "--frequency", "2", "--device", "cpu",
                                         "--save_root", "/tmp/x", "--resume", "--amp", "bf16", "--cache_dir", "/tmp/c",
                                         "--val_n_clips_per_sample", "2", "--label_diff", "l1", "--feature_sim", "l2",
                                         "--print_freq", "3", "--lr_step_epoch", "-1", "--depthwise", "auto"])
    assert opt.resume == "auto" and opt.amp == "bf16" and opt.device == "cpu" and opt.val_n_clips_per_sample == 2
    assert opt.depthwise == "auto"
    explicit = training_parser(1).parse_args(["--frames", "8", "--frequency", "2", "--resume", "x/last.pth"])
    assert explicit.resume == "x/last.pth"


def test_model_and_depthwise_choices_are_the_models_own():
    actions = {action.dest: action for action in training_parser(1)._actions}
    assert actions["depthwise"].choices == DEPTHWISE_CHOICES
    for name in actions["model"].choices:  # every choice builds
        get_feature_extractor(name)


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
