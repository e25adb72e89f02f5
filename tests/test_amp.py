"""Mixed precision: fp32 by default everywhere (the released numerics); bf16 and fp16 (with a GradScaler)
run end to end on the CPU and stay finite."""
import pytest
import torch

import test_with_three_clips
import train_first_stage
from losses import RnCLoss
from models import get_feature_extractor
from utils.files.checkpoint import load_checkpoint
from utils.script.options import training_parser
from utils.engine.amp import autocast


def test_fp32_is_the_default_of_every_script():
    required = ["--frames", "36", "--frequency", "4"]
    assert training_parser(1).parse_args(required).amp == "none"
    assert training_parser(2).parse_args(required).amp == "none"
    assert test_with_three_clips.parse_option(required + ["--pretrained_weights", "x.pth"]).amp == "none"


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
def test_stage1_trains_with_amp(echonet, tmp_path, amp):
    train_first_stage.main(["--data_folder", str(echonet), "--model", "uniformer_tiny",
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


def test_bf16_channels_last_training_step_on_cpu_is_finite_and_repeatable():
    """Root cause of a NaN RnC loss seen in about 1 bf16 CPU run in 15 (epoch 0, step 1): given a bf16
    channels_last_3d input, PyTorch's CPU kernel for the WEIGHT gradient of a 5x5x5 depthwise Conv3d (the
    local blocks' `attn`) reads uninitialised memory (torch 2.14; fp32, fp16, 3x3x3 and contiguous inputs
    are fine). Garbage there is usually a wrong gradient, sometimes NaN, which AdamW spreads to the weights
    and the next loss. Filling freed memory with NaN first makes it deterministic. The model hands that
    kernel a contiguous input on the CPU (models/uniformer.py, DepthwiseConv3d)."""
    torch.manual_seed(0)
    model = get_feature_extractor("uniformer_tiny").to(memory_format=torch.channels_last_3d)
    x = torch.randn(8, 3, 8, 112, 112).contiguous(memory_format=torch.channels_last_3d)

    def attn_weight_grad(dtype):
        model.zero_grad()
        with autocast(torch.device("cpu"), dtype):
            _, embeddings = model(x)
        embeddings.float().pow(2).sum().backward()
        return model.blocks1[0].attn.weight.grad.clone()

    reference = attn_weight_grad(None)  # fp32
    for size in (2 ** 10, 2 ** 14, 2 ** 18, 2 ** 20, 2 ** 22):
        poison = torch.full((size,), float("nan"))
        del poison  # freed NaN-filled memory: what an uninitialised buffer would pick up
        grad = attn_weight_grad(torch.bfloat16)
        assert torch.isfinite(grad).all(), size
        assert (grad - reference).abs().max() <= 0.05 * reference.abs().max(), size
