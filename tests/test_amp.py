"""Mixed-precision paths (bf16, fp16 with a GradScaler) run end to end on the CPU and stay finite."""
import pytest
import torch

import train_first_stage
from datasets.synthetic import make_synthetic_echonet
from losses import RnCLoss
from models import get_feature_extractor
from utils.checkpoint import load_checkpoint
from utils.runtime import amp_dtype, autocast, grad_scaler


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("echonet")
    make_synthetic_echonet(root, n=12, seed=4)
    return root


def test_amp_choice():
    cpu = torch.device("cpu")
    assert amp_dtype("auto", cpu) is None and amp_dtype("none", cpu) is None
    assert amp_dtype("bf16", cpu) is torch.bfloat16 and amp_dtype("fp16", cpu) is torch.float16
    assert grad_scaler(cpu, torch.float16).is_enabled() and not grad_scaler(cpu, torch.bfloat16).is_enabled()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_forward_runs_in_low_precision_and_loss_in_fp32(dtype):
    model = get_feature_extractor("uniformer_tiny")
    x = torch.randn(4, 3, 8, 112, 112)
    with autocast(torch.device("cpu"), dtype):
        _, embeddings = model(x)
    assert embeddings.dtype == dtype
    features = torch.stack(embeddings.float().split(2), dim=1)
    loss = RnCLoss(temperature=1.0)(features, torch.tensor([[30.0], [60.0]]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_stage1_trains_with_amp(data, tmp_path, amp):
    train_first_stage.main(["--data_folder", str(data), "--model", "uniformer_tiny",
                            "--frames", "8", "--frequency", "2", "--batch_size", "4", "--epochs", "0",
                            "--num_workers", "0", "--device", "cpu",
                            "--amp", amp, "--save_root", str(tmp_path), "--run_name", amp, "--channels_last"])
    last = load_checkpoint(tmp_path / amp / "last.pth")
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    scaler_state = last["resume"]["scaler"]
    if amp == "fp16":  # the loss scaler is saved for resume
        assert scaler_state["scale"] > 0
    else:  # bf16 needs no scaling: the scaler stays disabled
        assert scaler_state == {}
