"""utils/engine/amp.py: autocast runs the forward in bf16 / fp16 with the RnC loss in fp32, and --amp auto picks
bf16 only on GPUs with native bf16."""
import pytest
import torch

from losses import RnCLoss
from models import get_feature_extractor
from utils.engine.amp import autocast


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


def test_amp_auto_is_bf16_only_on_gpus_with_native_bf16(monkeypatch):
    from utils.engine.amp import amp_dtype
    gpu = torch.device("cuda", 0)
    for capability, expected in (((7, 5), None), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert amp_dtype("auto", gpu) is expected  # a T4/V100 only emulates bf16: fp32 there
    assert amp_dtype("auto", torch.device("cpu")) is None and amp_dtype("bf16", gpu) is torch.bfloat16
