"""train_second_stage.py without a stage-1 checkpoint is a usage error. Stage 2 on a stage-1 checkpoint (the frozen
encoder, resume): tests/scenarios/test_pipeline.py."""
import pytest

import train_second_stage
from conftest import TINY


def test_stage2_without_checkpoint_is_a_usage_error(echonet, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_second_stage.main(["--data_folder", str(echonet), *TINY, "--save_root", str(tmp_path)])
    assert exit_.value.code == 2 and "--pretrained_weights" in capsys.readouterr().err
