"""models/uniformer.py, DepthwiseConv3d: the depthwise 3D convolution computed with 2D convolutions
(`depthwise='conv2d'`) equals nn.Conv3d: outputs and gradients of input, weight and bias, for the kernels UniFormer
uses (3 and 5), odd sizes, channels_last inputs, under bf16 autocast and torch.compile, and inside a whole
UniFormer; and the bf16 channels_last CPU kernel bug that the layer avoids."""
import pytest
import torch
import torch.nn.functional as F

from models import get_feature_extractor, uniformer_tiny
from models.uniformer import DepthwiseConv3d
from utils.engine.amp import autocast

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.fixture(autouse=True)
def no_tf32(monkeypatch):
    # cuDNN may run fp32 convolutions in TF32 (1e-3 relative): compare the maths, not the tensor cores.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def layer_pair(channels, kernel, device, dtype=torch.float32):
    torch.manual_seed(0)
    reference = DepthwiseConv3d(channels, kernel).to(device, dtype)
    with torch.no_grad():
        reference.bias.normal_()  # the default init makes the bias tiny; give it weight in the comparison
    fast = DepthwiseConv3d(channels, kernel, impl="conv2d").to(device, dtype)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def forward_backward(layer, x, grad_out):
    x = x.detach().clone().requires_grad_()
    out = layer(x)
    grads = torch.autograd.grad(out, (x, layer.weight, layer.bias), grad_out)
    return out, grads


def assert_close(actual, expected, rtol, what=""):
    # relative to the largest reference value: sums over many elements (weight/bias gradients) are large
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    assert (actual - expected).abs().max().item() <= rtol * expected.abs().max().item(), what


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("shape", [(1, 4, 5, 7, 9), (2, 3, 3, 5, 11), (2, 6, 8, 6, 5)])  # T=3 < kernel 5 too
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv2d_equals_conv3d_forward_and_gradients(device, dtype, rtol, kernel, shape, channels_last):
    reference, fast = layer_pair(shape[1], kernel, device, dtype)
    x = torch.randn(shape, device=device, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    grad_out = torch.randn(shape, device=device, dtype=dtype)
    expected_out, expected_grads = forward_backward(reference, x, grad_out)
    out, grads = forward_backward(fast, x, grad_out)
    assert_close(out, expected_out, rtol)
    for grad, expected in zip(grads, expected_grads):  # input, weight, bias
        assert_close(grad, expected, rtol)
    # the output keeps the input's memory format, as nn.Conv3d's does
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=memory_format)
    assert grads[0].is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_accumulates_the_taps_in_fp32(device):
    reference, fast = layer_pair(16, 5, device)
    x = torch.randn(1, 16, 7, 9, 9, device=device)
    exact = F.conv3d(x.double(), reference.weight.double(), reference.bias.double(), padding=2, groups=16)
    with torch.autocast(device, dtype=torch.bfloat16):
        out3d, grads3d = forward_backward(reference, x, torch.ones_like(x, dtype=torch.bfloat16))
        out2d, grads2d = forward_backward(fast, x, torch.ones_like(x, dtype=torch.bfloat16))
    assert out2d.dtype == out3d.dtype == torch.bfloat16
    assert [g.dtype for g in grads2d] == [g.dtype for g in grads3d] == [torch.float32] * 3

    def error(out):
        return (out.double() - exact).abs().mean().item()

    # Every tap's output is rounded to bf16 once (conv3d rounds only the sum): about 1.15x conv3d's error
    # here. Adding the taps in bf16 would give about 1.35x.
    assert error(out2d) <= 1.25 * error(out3d)
    for grad, expected in zip(grads2d, grads3d):
        assert_close(grad, expected, rtol=2e-2)


@pytest.mark.parametrize("device, backend", [
    ("cpu", "aot_eager"),  # traces forward and backward as torch.compile does, without slow C++ code generation
    pytest.param("cuda", "inductor", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
])
def test_compiles_in_one_graph(device, backend):
    reference, fast = layer_pair(8, 5, device)
    x = torch.randn(2, 8, 5, 7, 7, device=device)
    grad_out = torch.randn_like(x)
    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True, backend=backend)
    out, grads = forward_backward(compiled, x, grad_out)
    expected_out, expected_grads = forward_backward(reference, x, grad_out)
    assert_close(out, expected_out, 1e-5)
    for grad, expected in zip(grads, expected_grads):
        assert_close(grad, expected, 1e-5)


@pytest.mark.parametrize("choice, impl_by_kernel", [("conv2d", {3: "conv2d", 5: "conv2d"}),
                                                    ("auto", {3: "conv3d", 5: "conv2d"})])
def test_uniformer_with_conv2d_depthwise_loads_the_same_weights_and_gives_the_same_outputs(choice, impl_by_kernel):
    torch.manual_seed(0)
    released = uniformer_tiny().eval()
    fast = uniformer_tiny(depthwise=choice).eval()
    assert [(k, v.shape) for k, v in fast.state_dict().items()] == \
        [(k, v.shape) for k, v in released.state_dict().items()]
    fast.load_state_dict(released.state_dict(), strict=True)
    layers = [m for m in fast.modules() if isinstance(m, DepthwiseConv3d)]
    assert len(layers) == 6  # pos_embed x4 (3x3x3) + 2 local attn (5x5x5)
    assert sorted(m.kernel_size[0] for m in layers) == [3, 3, 3, 3, 5, 5]
    assert all(m.impl == impl_by_kernel[m.kernel_size[0]] for m in layers)

    x = torch.randn(2, 3, 8, 64, 64)
    logits, feature = fast(x)
    expected_logits, expected_feature = released(x)
    assert_close(feature, expected_feature, 1e-5)
    assert_close(logits, expected_logits, 1e-5)
    # gradients reach every parameter the same way
    feature.square().sum().backward()
    expected_feature.square().sum().backward()
    for (name, p), q in zip(fast.named_parameters(), released.parameters()):
        if q.grad is not None:
            assert_close(p.grad, q.grad, 1e-4, name)


def test_feature_extractor_forwards_the_choice_and_rejects_unknown_ones():
    model = get_feature_extractor("uniformer_tiny", depthwise="conv2d")
    assert model.blocks1[0].attn.impl == "conv2d" and model.blocks3[0].pos_embed.impl == "conv2d"
    assert get_feature_extractor("uniformer_tiny").blocks1[0].attn.impl == "conv3d"
    with pytest.raises(ValueError, match="depthwise"):
        uniformer_tiny(depthwise="conv1d")


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
