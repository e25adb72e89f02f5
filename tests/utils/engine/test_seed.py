"""utils/engine/seed.py: --deterministic selects deterministic cuDNN (and no benchmark mode)."""
import torch

from models.options import training_parser


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
