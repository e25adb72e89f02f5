"""Tests for models/: UniFormer layout and numerical parity with the official code, the feature
extractor's weight loading, the regression head and the toy model."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from models import (MEAN_EF, get_feature_extractor, get_shallow_mlp_head, uniformer_base,
                    uniformer_small, uniformer_tiny)

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
KEYS = json.loads((FIXTURES / 'uniformer_small_k400_keys.json').read_text())['entries']
REF = json.loads((FIXTURES / 'uniformer_small_k400_ref.json').read_text())
CKPT = json.loads((FIXTURES / 'coreecho_checkpoint_keys.json').read_text())
DTYPES = {'float32': torch.float32, 'int64': torch.int64}


def layout(state_dict):
    return [(k, list(v.shape), str(v.dtype).removeprefix('torch.')) for k, v in state_dict.items()]


def expected_layout(entries):
    return [(e['name'], e['shape'], e['dtype']) for e in entries]


def recipe_state_dict(entries, seed):
    """Parameters by the fixture recipe (coreecho-fixture-recipe-v1, see tests/fixtures README source)."""
    rng = np.random.default_rng(seed)
    out = {}
    for e in entries:
        name, shape = e['name'], tuple(e['shape'])
        module_leaf = name.rsplit('.', 1)[0].split('.')[-1]
        if name.endswith('num_batches_tracked'):
            out[name] = torch.tensor(0, dtype=torch.int64)
            continue
        if name.endswith('running_var'):
            value = rng.uniform(0.5, 1.5, size=shape)
        elif name.endswith('running_mean'):
            value = rng.normal(0.0, 0.1, size=shape)
        elif module_leaf.startswith(('norm', 't_norm')) and name.endswith('.weight'):
            value = 1.0 + rng.normal(0.0, 0.1, size=shape)
        else:
            value = rng.normal(0.0, 0.02, size=shape)
        out[name] = torch.from_numpy(np.asarray(value, dtype=np.float64).astype(np.float32))
    return out


@pytest.fixture(scope='module')
def recipe_weights():
    return recipe_state_dict(KEYS, REF['seed'])


@pytest.fixture(scope='module')
def ref_input():
    x = np.random.default_rng(REF['input_seed']).standard_normal(REF['input_shape']).astype(np.float32)
    return torch.from_numpy(x)


@pytest.fixture(scope='module')
def ref_model(recipe_weights):
    model = uniformer_small()
    model.load_state_dict(recipe_weights, strict=True)
    return model.eval()


# ---------------------------------------------------------------- layout

def test_state_dict_matches_k400_keys_name_order_shape_dtype():
    model = uniformer_small()
    assert layout(model.state_dict()) == expected_layout(KEYS)
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


# ---------------------------------------------------------------- feature extractor and regressor

def test_feature_extractor_and_regressor_match_coreecho_checkpoint_layout():
    model = get_feature_extractor('uniformer_small')
    regressor = get_shallow_mlp_head(model.head.in_features, 1)
    assert model.head.in_features == 512
    assert layout(model.state_dict()) == expected_layout(CKPT['model']['entries'])
    assert layout(regressor.state_dict()) == expected_layout(CKPT['regressor']['entries'])
    assert model.head.bias.tolist() == [pytest.approx(MEAN_EF)] and MEAN_EF == 55.6
    assert regressor[-1].bias.tolist() == [pytest.approx(55.6)]
    kinds = [type(m) for m in regressor]
    assert kinds == [nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Dropout, nn.Linear]
    assert regressor[1].p == regressor[5].p == 0.4


def test_regressor_output_shape_and_initial_mean():
    regressor = get_shallow_mlp_head(32, 1).eval()
    nn.init.zeros_(regressor[-1].weight)
    out = regressor(torch.randn(5, 32))
    assert out.shape == (5, 1)
    torch.testing.assert_close(out, torch.full((5, 1), 55.6))


def test_pretrained_k400_file_loads_and_reproduces_features(tmp_path, recipe_weights, ref_input):
    path = tmp_path / 'uniformer_small_k400_16x8.pth'
    torch.save(recipe_weights, path)
    model = get_feature_extractor('uniformer_small', pretrained_weights=path).eval()
    assert model.head.out_features == 1 and model.head.bias.item() == pytest.approx(55.6)
    torch.testing.assert_close(model.blocks4[2].mlp.fc2.weight, recipe_weights['blocks4.2.mlp.fc2.weight'])
    with torch.no_grad():
        head, feature = model(ref_input)
    torch.testing.assert_close(feature, torch.tensor(REF['expected']['features']), rtol=0,
                               atol=REF['atol_suggested'])
    torch.testing.assert_close(head, model.head(feature))


@pytest.mark.parametrize('wrapper', [None, 'model', 'state_dict', 'model_state'])
def test_pretrained_wrapped_and_dataparallel_prefixed_files_load(tmp_path, wrapper):
    source = uniformer_tiny()
    state = {f'module.{k}': v for k, v in source.state_dict().items()}
    path = tmp_path / 'weights.pth'
    torch.save(state if wrapper is None else {wrapper: state, 'epoch': 3}, path)
    model = get_feature_extractor('uniformer_tiny', pretrained_weights=str(path))
    loaded = model.state_dict()
    for k, v in source.state_dict().items():
        if not k.startswith('head.'):
            assert torch.equal(loaded[k], v), k


def test_pretrained_of_other_architecture_gives_one_line_value_error(tmp_path):
    path = tmp_path / 'tiny.pth'
    torch.save(uniformer_tiny().state_dict(), path)
    with pytest.raises(ValueError) as info:
        get_feature_extractor('uniformer_small', pretrained_weights=path)
    message = str(info.value)
    assert '\n' not in message and str(path) in message
    assert 'missing keys' in message and 'blocks1.1.pos_embed.weight' in message
    assert 'wrong shapes' in message and 'patch_embed1.norm.weight [16] (expected [64])' in message
    # the reverse direction reports keys the model does not have
    with pytest.raises(ValueError, match=r'unexpected keys \d+: blocks1\.1\.'):
        small = tmp_path / 'small.pth'
        torch.save(uniformer_small().state_dict(), small)
        get_feature_extractor('uniformer_tiny', pretrained_weights=small)


def test_weights_without_batchnorm_counters_load_and_hints_name_only_another_model(tmp_path):
    torch.manual_seed(0)
    state = {k: v for k, v in uniformer_tiny().state_dict().items() if not k.endswith('num_batches_tracked')}
    path = tmp_path / 'no_counters.pth'
    torch.save(state, path)  # as converted checkpoints often are: torch's own strict load accepts them
    model = get_feature_extractor('uniformer_tiny', pretrained_weights=path)
    assert torch.equal(model.patch_embed1.proj.weight, state['patch_embed1.proj.weight'])
    k600 = {**state, 'head.weight': torch.zeros(600, 128), 'head.bias': torch.zeros(600)}
    torch.save(k600, path)  # the right encoder with another head: no "use --model uniformer_tiny"
    with pytest.raises(ValueError, match=r'head.weight \[600, 128\] \(expected \[400, 128\]\)') as info:
        get_feature_extractor('uniformer_tiny', pretrained_weights=path)
    assert 'use --model' not in str(info.value)


def test_pretrained_missing_file_and_bad_content(tmp_path):
    missing = tmp_path / 'nope.pth'
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        get_feature_extractor('uniformer_tiny', pretrained_weights=missing)
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a torch file')
    with pytest.raises(ValueError, match='junk.pth'):
        get_feature_extractor('uniformer_tiny', pretrained_weights=junk)
    not_a_state_dict = tmp_path / 'list.pth'
    torch.save([torch.zeros(1)], not_a_state_dict)
    with pytest.raises(ValueError, match='list.pth: does not hold a state_dict'):
        get_feature_extractor('uniformer_tiny', pretrained_weights=not_a_state_dict)


def test_unknown_feature_extractor_name():
    with pytest.raises(ValueError, match="unknown feature extractor 'resnet50'.*uniformer_small, uniformer_base"):
        get_feature_extractor('resnet50')


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
