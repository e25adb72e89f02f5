"""Build a UniFormer backbone for EF regression, optionally from pretrained (e.g. Kinetics-400) weights."""
import os
from collections.abc import Mapping
from typing import Optional

import torch
import torch.nn as nn

from utils.files.checkpoint import load_checkpoint, load_model_and_regressor, load_state_dict_strict, strip_module_prefix
from utils.script.errors import BadInputError
from utils.files.weights import resolve_weights

from .regressor import MEAN_EF
from .uniformer import UniFormer, uniformer_base, uniformer_small, uniformer_tiny

_BUILDERS = {
    'uniformer_small': uniformer_small,
    'uniformer_base': uniformer_base,
    'uniformer_tiny': uniformer_tiny,
}
_WRAPPER_KEYS = ('model', 'state_dict', 'model_state')  # where training checkpoints keep the weights


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state_dict saved by torch.save (safely: weights_only): plain, or wrapped under
    'model'/'state_dict'/'model_state'. `path` may be hf://OWNER/REPO/FILE (utils/files/weights.py)."""
    path = resolve_weights(path)
    obj = load_checkpoint(path)
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BadInputError(f'{os.fspath(path)}: does not hold a state_dict (a mapping of names to tensors)')
    return dict(obj)


def fitting_model_name(state_dict: Mapping) -> Optional[str]:
    """The builder whose encoder has exactly these names and shapes (the head aside), or None."""
    shapes = {k: tuple(v.shape) for k, v in strip_module_prefix(state_dict).items() if not k.startswith('head.')}
    for name, builder in _BUILDERS.items():
        expected = {k: tuple(v.shape) for k, v in builder(num_classes=1).state_dict().items()
                    if not k.startswith('head.')}
        if expected == shapes:
            return name
    return None


def _with_model_hint(error: BadInputError, state_dict: Mapping, model: nn.Module) -> BadInputError:
    """`error` plus the --model whose encoder these weights fit, when that is another model than `model`."""
    name = fitting_model_name(state_dict)
    if name is None or type(model).__name__ != 'UniFormer' or fitting_model_name(model.state_dict()) == name:
        return error
    return BadInputError(f'{error}; these are {name} weights: use --model {name}')


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> None:
    """Strictly load the weights in `path` into `model`; any mismatch -> one line (naming the --model
    that fits them when one of the known ones does)."""
    state_dict = load_state_dict_file(path)
    try:
        load_state_dict_strict(model, state_dict, 'pretrained', os.fspath(path))
    except BadInputError as e:
        raise _with_model_hint(e, state_dict, model) from None


def load_coreecho_checkpoint(path: str | os.PathLike, model: nn.Module, regressor: nn.Module) -> dict:
    """Load 'model' and 'regressor' of a CoReEcho checkpoint (released or ours; a path or hf://OWNER/REPO/FILE);
    a checkpoint of another architecture names the --model that fits it."""
    path = resolve_weights(path)
    try:
        return load_model_and_regressor(path, model, regressor)
    except BadInputError as e:
        checkpoint = load_checkpoint(path)
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('model'), Mapping):
            raise _with_model_hint(e, checkpoint['model'], model) from None
        raise


def get_feature_extractor(name: str, pretrained_weights: Optional[str | os.PathLike] = None,
                          **model_kwargs) -> UniFormer:
    """Backbone `name` with a 1-output regression head whose bias starts at the mean EF (55.6).

    `pretrained_weights` (e.g. ``uniformer_small_k400_16x8.pth``) is loaded strictly into the
    original 400-class model before the head is replaced. `model_kwargs` go to the builder
    (e.g. ``drop_path_rate``, ``use_checkpoint``). ``model.head.in_features`` is the feature size.
    """
    if name not in _BUILDERS:
        raise ValueError(f'unknown feature extractor {name!r}; choose one of: {", ".join(_BUILDERS)}')
    model = _BUILDERS[name](num_classes=400, **model_kwargs)
    if pretrained_weights is not None:
        load_pretrained(model, pretrained_weights)
    model.head = nn.Linear(model.num_features, 1)
    nn.init.constant_(model.head.bias, MEAN_EF)
    return model
