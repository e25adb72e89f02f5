"""models/build.py: the feature extractor and regressor in the released checkpoint layout, and pretrained weights:
Kinetics-400 files, wrapped or DataParallel-prefixed ones, another architecture's (one line naming the keys and
the --model that fits), files without BatchNorm counters, missing or unreadable files, unknown model names."""
import json

import pytest
import torch
import torch.nn as nn

from conftest import FIXTURES, expected_layout, state_dict_layout
from models import MEAN_EF, get_feature_extractor, get_shallow_mlp_head, uniformer_small, uniformer_tiny

REF = json.loads((FIXTURES / 'uniformer_small_k400_ref.json').read_text())
CKPT = json.loads((FIXTURES / 'coreecho_checkpoint_keys.json').read_text())


def test_feature_extractor_and_regressor_match_coreecho_checkpoint_layout():
    model = get_feature_extractor('uniformer_small')
    regressor = get_shallow_mlp_head(model.head.in_features, 1)
    assert model.head.in_features == 512
    assert state_dict_layout(model.state_dict()) == expected_layout(CKPT['model']['entries'])
    assert state_dict_layout(regressor.state_dict()) == expected_layout(CKPT['regressor']['entries'])
    assert model.head.bias.tolist() == [pytest.approx(MEAN_EF)] and MEAN_EF == 55.6
    assert regressor[-1].bias.tolist() == [pytest.approx(55.6)]
    kinds = [type(m) for m in regressor]
    assert kinds == [nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Dropout, nn.Linear]
    assert regressor[1].p == regressor[5].p == 0.4


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
    # weights of another known model: one line naming the model they fit first, no list of 300 keys
    assert str(info.value) == (f'{path}: these are uniformer_tiny weights, not uniformer_small: use --model '
                               'uniformer_tiny (or leave --model out where the script reads it from the checkpoint)')
    # weights of no known model: the keys are listed, in one line
    state = uniformer_tiny().state_dict()
    state.pop('blocks1.0.pos_embed.weight')
    state['patch_embed1.norm.weight'] = torch.ones(17)
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        get_feature_extractor('uniformer_tiny', pretrained_weights=path)
    message = str(info.value)
    assert '\n' not in message and str(path) in message and 'use --model' not in message
    assert 'missing keys 1: blocks1.0.pos_embed.weight' in message
    assert 'wrong shapes' in message and 'patch_embed1.norm.weight [17] (expected [16])' in message


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
