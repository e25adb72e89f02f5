"""GPU paths: mixed precision, batched three-clip inference and the three scripts on CUDA.

Skipped where no CUDA device is present (CI); run on a GPU machine with
`python3 -m pytest -q tests/scenarios/test_cuda.py`
(benchmarks/gpu_benchmarks.sh does).
"""
import json

import numpy as np
import pytest
import torch

import test_with_three_clips
import train_first_stage
import train_second_stage
from datasets import EchoNetTest
from datasets.synthetic.echonet import make_synthetic_echonet
from losses import RnCLoss
from models import get_feature_extractor, get_shallow_mlp_head
from utils.files.checkpoint import load_checkpoint
from utils.engine.distributed import init_distributed
from utils.evaluation.inference import InferenceSettings, predict
from utils.engine.amp import autocast, grad_scaler

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
TINY = ["--model", "uniformer_tiny", "--frames", "8", "--frequency", "2", "--num_workers", "0", "--device", "cuda",
        "--trial", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("echonet")
    make_synthetic_echonet(root, n=12, seed=5)
    return root


@pytest.mark.parametrize("depthwise", ["conv3d", "conv2d"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_amp_training_step_on_cuda(dtype, depthwise):
    torch.manual_seed(0)
    model = get_feature_extractor("uniformer_tiny", depthwise=depthwise).to(CUDA)
    model = model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = grad_scaler(CUDA, dtype)
    images = torch.randn(8, 3, 8, 112, 112, device=CUDA).contiguous(memory_format=torch.channels_last_3d)
    labels = torch.tensor([[20.0], [35.0], [50.0], [65.0]], device=CUDA)
    criterion = RnCLoss(temperature=1.0)

    def rnc(embeddings):  # loss always in fp32
        return criterion(torch.stack(embeddings.float().split(4), dim=1), labels)

    model.eval()  # no dropout: the low-precision loss is compared with the fp32 one on the same network
    with torch.no_grad():
        reference = rnc(model(images)[1])
        with autocast(CUDA, dtype):
            low_precision = rnc(model(images)[1])
    assert low_precision.item() == pytest.approx(reference.item(), rel=0.05)

    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    # The matmuls and convolutions inside run in low precision (the pooled features need not: CUDA autocast
    # runs the final BatchNorm and mean in fp32).
    layers = {"linear": model.blocks3[0].attn.qkv, "conv": model.blocks1[0].conv1,
              "depthwise": model.blocks1[0].attn, "patch_embed": model.patch_embed2.proj}
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen[name] = out.dtype  # returns None: a hook's return value would replace the output
        return hook

    hooks = [layer.register_forward_hook(record(name)) for name, layer in layers.items()]
    with autocast(CUDA, dtype):
        _, embeddings = model(images)
    for hook in hooks:
        hook.remove()
    assert seen == {name: dtype for name in layers}
    assert embeddings.dtype in (dtype, torch.float32)
    loss = rnc(embeddings)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(b, a) for b, a in zip(before, after))


def spread_scorer():
    """A seeded uniformer_tiny and a head whose last layer is scaled by 100: random weights give nearly constant
    EFs (measured on the CPU over this module's 12 videos x 3 clips: SD 0.044, range 0.20 EF points, so any
    tolerance near 0.05 could not fail); scaled, SD 4.4 and range 20.3 EF points."""
    torch.manual_seed(0)
    model = get_feature_extractor("uniformer_tiny").eval()
    regressor = get_shallow_mlp_head(model.head.in_features).eval()
    with torch.no_grad():
        regressor[-1].weight.mul_(100)
    return model, regressor


def assert_spread(predictions):
    """The EFs differ far more than the tolerances below: a mix-up of clips or videos cannot pass."""
    assert np.ptp(predictions) > 10 and np.std(predictions) > 2


def test_batched_cuda_predictions_match_cpu(data):
    model, regressor = spread_scorer()
    dataset = EchoNetTest(str(data), split="all", frames=8, frequency=2, n_clips=3, seed=0)
    on_cpu = predict(model, regressor, dataset, init_distributed("cpu"), InferenceSettings(max_videos=1))
    assert_spread(on_cpu["clip_predictions"])
    model, regressor = model.to(CUDA), regressor.to(CUDA)
    one_video = predict(model, regressor, dataset, init_distributed("cuda"), InferenceSettings(max_videos=1))
    batched = predict(model, regressor, dataset, init_distributed("cuda"), InferenceSettings(max_videos=5))
    assert batched["names"] == on_cpu["names"] and batched["clip_predictions"].shape == (len(dataset), 3)
    # fp32 on the GPU: cuDNN convolutions use TF32 by default on Ampere and later (10-bit mantissa inputs). Measured
    # on the CPU with fp16-rounded inputs (the same mantissa) against fp32: at most 0.031 EF points per clip. 0.1
    # allows 3x that and is 0.5 % of the 20-point range: swapped clips or videos differ by points.
    np.testing.assert_allclose(batched["clip_predictions"], one_video["clip_predictions"], atol=0.1, rtol=0)
    np.testing.assert_allclose(batched["clip_predictions"], on_cpu["clip_predictions"], atol=0.1, rtol=0)
    np.testing.assert_allclose(batched["predictions"], on_cpu["predictions"], atol=0.1, rtol=0)
    np.testing.assert_array_equal(batched["starts"], on_cpu["starts"])


@pytest.mark.skipif(torch.cuda.is_available() and not torch.cuda.is_bf16_supported(), reason="GPU without bf16")
def test_bf16_cuda_predictions_match_fp32_cpu(data):
    model, regressor = spread_scorer()
    dataset = EchoNetTest(str(data), split="all", frames=8, frequency=2, n_clips=3, seed=0)
    fp32 = predict(model, regressor, dataset, init_distributed("cpu"), InferenceSettings(max_videos=1))
    model, regressor = model.to(CUDA), regressor.to(CUDA)
    bf16 = predict(model, regressor, dataset, init_distributed("cuda"),
                   InferenceSettings(amp=torch.bfloat16, max_videos=5))
    assert_spread(fp32["clip_predictions"])
    # bf16 keeps 8 bits of mantissa: measured on the CPU (autocast bf16 against fp32, same clips and weights) at
    # most 0.35 EF points per clip and 0.23 per video (mean of 3 clips), correlation 0.99975. 1.0 per clip and
    # 0.7 per video allow 3x that, still 5 % of the 20-point range; the correlation catches a reordering.
    np.testing.assert_allclose(bf16["clip_predictions"], fp32["clip_predictions"], atol=1.0, rtol=0)
    np.testing.assert_allclose(bf16["predictions"], fp32["predictions"], atol=0.7, rtol=0)
    correlation = np.corrcoef(bf16["clip_predictions"].ravel(), fp32["clip_predictions"].ravel())[0, 1]
    assert correlation > 0.999
    assert not np.array_equal(bf16["clip_predictions"], fp32["clip_predictions"])  # bf16 really ran


def test_scripts_run_on_cuda_and_checkpoints_load_on_cpu(data, tmp_path):
    train_first_stage.main(["--data_folder", str(data), *TINY, "--save_root", str(tmp_path), "--run_name", "s1",
                            "--batch_size", "4", "--epochs", "0", "--aug", "--channels_last"])
    stage1 = load_checkpoint(tmp_path / "s1" / "best.pth")  # map_location cpu
    assert all(v.device.type == "cpu" for v in stage1["model"].values())
    assert all(torch.isfinite(v).all() for v in stage1["model"].values() if v.is_floating_point())
    last = load_checkpoint(tmp_path / "s1" / "last.pth")
    assert last["resume"]["scaler"] == {}  # bf16 (the default on capable GPUs) or fp32: no loss scaling

    train_second_stage.main(["--data_folder", str(data), *TINY, "--save_root", str(tmp_path), "--run_name", "s2",
                             "--pretrained_weights", str(tmp_path / "s1" / "best.pth"), "--batch_size", "4",
                             "--epochs", "0", "--amp", "fp16"])
    stage2 = load_checkpoint(tmp_path / "s2" / "last.pth")
    for key, value in stage1["model"].items():  # the encoder stays frozen on the GPU too
        assert torch.equal(value, stage2["model"][key]), key
    assert stage2["resume"]["scaler"] == {}  # the regressor trains in fp32 whatever --amp says

    out = tmp_path / "test" / "test.pkl"
    metrics = test_with_three_clips.main([
        "--data_folder", str(data), "--pretrained_weights", str(tmp_path / "s2" / "best.pth"),
        "--path_save_test_files", str(out), "--model", "uniformer_tiny", "--frames", "8", "--frequency", "2",
        "--num_workers", "2", "--device", "cuda", "--batch_size", "4"])
    saved = json.loads((out.parent / "metrics.json").read_text())
    assert saved["mean_of_clips"]["mae"] == pytest.approx(metrics["mae"])
    assert np.isfinite(metrics["mae"]) and out.exists()
