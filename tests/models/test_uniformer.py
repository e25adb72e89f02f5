"""models/uniformer.py: UniFormer state-dict layout and numerical parity with the official code (float32 and
float64 outputs for seeded weights), attention, and the tiny model's shapes, gradients, checkpointing, dropout."""
import json
import math

import pytest
import torch

from conftest import FIXTURES, expected_layout, state_dict_layout
from models import get_feature_extractor, uniformer_base, uniformer_small, uniformer_tiny

KEYS = json.loads((FIXTURES / 'uniformer_small_k400_keys.json').read_text())['entries']
REF = json.loads((FIXTURES / 'uniformer_small_k400_ref.json').read_text())
DTYPES = {'float32': torch.float32, 'int64': torch.int64}


@pytest.fixture(scope='module')
def ref_model(recipe_weights):
    model = uniformer_small()
    model.load_state_dict(recipe_weights, strict=True)
    return model.eval()


# ---------------------------------------------------------------- layout


def test_state_dict_matches_k400_keys_name_order_shape_dtype():
    model = uniformer_small()
    assert state_dict_layout(model.state_dict()) == expected_layout(KEYS)
    assert len(KEYS) == 331
    zeros = {e['name']: torch.zeros(e['shape'], dtype=DTYPES[e['dtype']]) for e in KEYS}
    result = model.load_state_dict(zeros, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.count_nonzero(model.blocks3[0].attn.qkv.weight) == 0


def test_uniformer_base_depths_and_widths():
    model = uniformer_base()
    assert [len(model.blocks1), len(model.blocks2), len(model.blocks3), len(model.blocks4)] == [5, 8, 20, 7]
    assert model.blocks3[0].attn.num_heads == 5 and model.blocks4[0].attn.num_heads == 8
    small_names = {e['name'] for e in KEYS}
    # Every UniFormer-S key exists in -B (same widths, more blocks), with the same shape.
    base_sd = model.state_dict()
    assert all(list(base_sd[e['name']].shape) == e['shape'] for e in KEYS)
    assert len(set(base_sd) - small_names) > 0


# ---------------------------------------------------------------- numerical parity with the official model


def test_recipe_reproduces_state_dict_checksums(recipe_weights):
    checks = REF['state_dict_checksums']
    assert [c['name'] for c in checks] == list(recipe_weights)
    for c in checks:
        flat = recipe_weights[c['name']].flatten()
        assert flat.double().sum().item() == pytest.approx(c['sum'], rel=1e-9, abs=1e-9), c['name']
        assert flat[0].item() == c['first'], c['name']
        if 'abs_sum' in c:
            assert flat.double().abs().sum().item() == pytest.approx(c['abs_sum'], rel=1e-9), c['name']
            assert flat[-1].item() == c['last'], c['name']


def test_input_matches_reference_checksum(ref_input):
    flat = ref_input.flatten().double()
    assert flat.sum().item() == pytest.approx(REF['input_checksum']['sum'], rel=1e-12)
    assert flat[:5].tolist() == REF['input_checksum']['first5']
    assert flat[-5:].tolist() == REF['input_checksum']['last5']


def test_float32_outputs_match_official(ref_model, ref_input):
    with torch.no_grad():
        head, feature = ref_model(ref_input)
    atol = REF['atol_suggested']
    torch.testing.assert_close(head, torch.tensor(REF['expected']['head_output']), rtol=0, atol=atol)
    torch.testing.assert_close(feature, torch.tensor(REF['expected']['features']), rtol=0, atol=atol)


def test_float64_outputs_match_official(recipe_weights, ref_input):
    # float64 exposes eps / GELU / scale differences that float32 tolerance would hide.
    model = uniformer_small()
    model.load_state_dict(recipe_weights, strict=True)
    model = model.double().eval()
    with torch.no_grad():
        head, feature = model(ref_input.double())
    atol = REF['atol_float64_suggested']
    expected = REF['expected_float64']
    torch.testing.assert_close(head, torch.tensor(expected['head_output'], dtype=torch.float64), rtol=0, atol=atol)
    torch.testing.assert_close(feature, torch.tensor(expected['features'], dtype=torch.float64), rtol=0, atol=atol)


def test_sdpa_attention_equals_explicit_softmax_attention():
    torch.manual_seed(0)
    attn = uniformer_tiny().blocks3[0].attn.double().eval()
    x = torch.randn(2, 37, attn.qkv.in_features, dtype=torch.float64)
    B, N, C = x.shape
    h, d = attn.num_heads, attn.head_dim
    q, k, v = attn.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1)
    explicit = attn.proj((weights @ v).transpose(1, 2).reshape(B, N, C))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), explicit, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- toy model, training features


@pytest.mark.parametrize('frames', [16, 36])
def test_tiny_forward_shapes(frames):
    model = uniformer_tiny(num_classes=3).eval()
    x = torch.randn(2, 3, frames, 112, 112)
    with torch.no_grad():
        head, feature = model(x)
        fmap = model.forward_feature_map(x)
    assert head.shape == (2, 3) and feature.shape == (2, 128)
    assert fmap.shape == (2, 128, frames // 2, 3, 3)
    torch.testing.assert_close(model.forward_features(x), feature)


def test_tiny_backward_gives_finite_grads():
    torch.manual_seed(0)
    model = get_feature_extractor('uniformer_tiny', drop_path_rate=0.1).train()
    head, feature = model(torch.randn(2, 3, 16, 112, 112))
    (head.sum() + feature.pow(2).sum()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.blocks1[0].conv1.weight.grad.abs().sum() > 0


def test_checkpointing_gives_same_outputs_and_grads():
    torch.manual_seed(0)
    plain = uniformer_tiny().double().eval()
    ckpt = uniformer_tiny(use_checkpoint=True).double().eval()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 8, 64, 64, dtype=torch.float64)
    for model in (plain, ckpt):
        model(x)[1].sum().backward()
    torch.testing.assert_close(plain(x)[1], ckpt(x)[1])
    torch.testing.assert_close(plain.patch_embed1.proj.weight.grad, ckpt.patch_embed1.proj.weight.grad)


def test_drop_path_and_dropout_only_act_in_training():
    torch.manual_seed(0)
    plain = uniformer_tiny(drop_rate=0.0).eval()
    noisy = uniformer_tiny(drop_rate=0.5, drop_path_rate=0.5)
    noisy.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(noisy.eval()(x)[1], plain(x)[1])
        noisy.train()
        assert not torch.allclose(noisy(x)[1], noisy(x)[1])
    assert uniformer_small().pos_drop.p == 0.1 and uniformer_base().pos_drop.p == 0.3
