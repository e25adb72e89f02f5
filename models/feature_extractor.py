"""Build a UniFormer backbone for EF regression, optionally from pretrained (e.g. Kinetics-400) weights."""
import os
from collections.abc import Mapping
from typing import Optional

import torch
import torch.nn as nn

from .regressor import MEAN_EF
from .uniformer import UniFormer, uniformer_base, uniformer_small, uniformer_tiny

_BUILDERS = {
    'uniformer_small': uniformer_small,
    'uniformer_base': uniformer_base,
    'uniformer_tiny': uniformer_tiny,
}
_WRAPPER_KEYS = ('model', 'state_dict', 'model_state')  # where training checkpoints keep the weights
_MAX_LISTED = 10


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _listing(keys: list[str]) -> str:
    shown = ', '.join(keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return f'{len(keys)}: {shown}' + (f', ... (+{more} more)' if more > 0 else '')


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state_dict saved by torch.save: plain, or wrapped under 'model'/'state_dict'/'model_state'.

    A leading 'module.' (from DataParallel) is removed from every key.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'pretrained weights file not found: {path}')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # unpickling / zip errors: report them on one line with the file name
        raise ValueError(f'{path}: cannot be read as torch weights ({type(err).__name__}: {_first_line(err)})') from err
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f'{path}: does not hold a state_dict (a mapping of names to tensors)')
    return {k.removeprefix('module.'): v for k, v in obj.items()}


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> None:
    """Strictly load the weights in `path` into `model`; any mismatch -> one-line ValueError."""
    state_dict = load_state_dict_file(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [f'{k} {list(v.shape)} (expected {list(expected[k].shape)})'
                   for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    problems = [f'{label} {_listing(keys)}' for label, keys in
                (('missing keys', missing), ('unexpected keys', unexpected), ('wrong shapes', wrong_shape)) if keys]
    if problems:
        raise ValueError(f'{os.fspath(path)}: weights do not fit {type(model).__name__}: ' + '; '.join(problems))
    model.load_state_dict(state_dict, strict=True)


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
