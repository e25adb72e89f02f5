"""Build the encoder + regressor from any weights a user has: the one place that reads weights files.

A weights spec (a path, ``hf://OWNER/REPO/FILE``, or ``none``) is read once by `read_weights`, which tells
its kind:
- ``coreecho``: a CoReEcho checkpoint of either stage (``model`` + ``regressor``, the released format);
- ``kinetics400``: a UniFormer state dict with its 400-class head (``uniformer_small_k400_16x8.pth``), plain or
  wrapped under ``model`` / ``state_dict`` / ``model_state``;
- ``none``: random weights (seed the global RNG first for repeatable ones).
A published folder (``python -m models.publish``: model.safetensors + config.json; a folder path, its
model.safetensors, or ``hf://OWNER/REPO``) reads as a ``coreecho`` checkpoint whose ``settings`` is config.json.
`build_model` turns it into (encoder, regressor). A file of another kind, or weights of another
architecture, is a one-line error naming the file (and the --model that fits, when one does).
"""
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from utils.files.checkpoint import load_checkpoint, load_state_dict_strict, strip_module_prefix
from utils.files.weights import resolve_weights
from utils.script.errors import BadInputError

from .regressor import MEAN_EF, get_shallow_mlp_head
from .uniformer import UniFormer, uniformer_base, uniformer_small, uniformer_tiny

_BUILDERS = {
    'uniformer_small': uniformer_small,
    'uniformer_base': uniformer_base,
    'uniformer_tiny': uniformer_tiny,
}
MODEL_NAMES = tuple(_BUILDERS)  # the --model choices (models/options.py)
_WRAPPER_KEYS = ('model', 'state_dict', 'model_state')  # where training checkpoints keep the weights
KINETICS_CLASSES = 400
SAFETENSORS_SUFFIX = '.safetensors'
KIND_NAMES = {'coreecho': 'CoReEcho', 'kinetics400': 'Kinetics-400', 'none': 'random init'}


@dataclass(frozen=True)
class Weights:
    """A weights spec resolved and read once."""
    spec: str  # as the user wrote it
    path: str  # the local file ('' for none)
    kind: str  # coreecho, kinetics400 or none
    content: object = None  # what the file holds (the whole checkpoint for coreecho)

    @property
    def epoch(self) -> Optional[int]:
        epoch = self.content.get('epoch') if self.kind == 'coreecho' else None
        return int(epoch) if isinstance(epoch, (int, torch.Tensor)) else epoch

    @property
    def description(self) -> str:
        return KIND_NAMES[self.kind] + (f' (epoch {self.epoch})' if self.epoch is not None else '')


def _unwrapped(obj):
    """The state dict inside a file: the mapping under a wrapper key, or the file itself."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    return obj


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state_dict saved by torch.save (safely: weights_only): plain, or wrapped under
    'model'/'state_dict'/'model_state'. `path` may be hf://OWNER/REPO/FILE (utils/files/weights.py)."""
    path = resolve_weights(path)
    if os.path.isdir(path):
        raise BadInputError(f'{path} is a folder, not a state dict file')
    state_dict = _unwrapped(load_checkpoint(path))
    if not _is_state_dict(state_dict):
        raise BadInputError(f'{os.fspath(path)}: does not hold a state_dict (a mapping of names to tensors)')
    return dict(state_dict)


def read_weights(spec) -> Weights:
    """Resolve and read a weights spec and tell its kind; a file of no known kind is a one-line error."""
    if spec is None or str(spec).strip().lower() == 'none':
        return Weights('none' if spec is None else str(spec), '', 'none')
    spec = os.fspath(spec)
    path = resolve_weights(spec)
    if os.path.isdir(path) or path.endswith(SAFETENSORS_SUFFIX):
        from .publish import load_published  # the folder kind: no pickle at all
        path, content = load_published(path)
        return Weights(spec, path, 'coreecho', content)
    content = load_checkpoint(path)
    if isinstance(content, Mapping) and isinstance(content.get('model'), Mapping) \
            and isinstance(content.get('regressor'), Mapping):
        return Weights(spec, path, 'coreecho', content)
    state_dict = _unwrapped(content)
    head = strip_module_prefix(state_dict).get('head.weight') if isinstance(state_dict, Mapping) else None
    if isinstance(head, torch.Tensor) and head.ndim == 2 and head.shape[0] == KINETICS_CLASSES:
        return Weights(spec, path, 'kinetics400', state_dict)
    raise BadInputError(f"{spec}: unknown checkpoint kind: expected a CoReEcho checkpoint ('model' and "
                        "'regressor' entries), a UniFormer Kinetics-400 state dict (a 400-class 'head.weight'), "
                        "or 'none' for random weights")


@functools.cache
def _encoder_shapes(name: str) -> dict:
    """Names and shapes of `name`'s encoder (the head aside), built once per process."""
    model = _BUILDERS[name](num_classes=1)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith('head.')}


def fitting_model_name(state_dict: Mapping) -> Optional[str]:
    """The builder whose encoder has exactly these names and shapes (the head aside), or None."""
    shapes = {k: tuple(v.shape) for k, v in strip_module_prefix(state_dict).items() if not k.startswith('head.')}
    return next((name for name in _BUILDERS if _encoder_shapes(name) == shapes), None)


def _load_strict(module: nn.Module, state_dict: Mapping, what: str, source: str, model: nn.Module) -> None:
    """Strict load; weights of another known model than `model` are one line naming the --model they fit (no
    list of keys), any other mismatch one line listing the keys."""
    try:
        load_state_dict_strict(module, state_dict, what, source)
    except BadInputError:
        if what != 'regressor' and isinstance(model, UniFormer):  # only now: naming the fitting model takes time
            name, built = fitting_model_name(state_dict), fitting_model_name(model.state_dict())
            if name is not None and built is not None and name != built:
                raise BadInputError(f'{source}: these are {name} weights, not {built}: use --model {name} (or '
                                    'leave --model out where the script reads it from the checkpoint)') from None
        raise


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> None:
    """Strictly load the weights in `path` into `model`; any mismatch -> one line (naming the --model
    that fits them when one of the known ones does)."""
    _load_strict(model, load_state_dict_file(path), 'pretrained', os.fspath(path), model)


def get_feature_extractor(name: str, pretrained_weights: Optional[str | os.PathLike] = None,
                          **model_kwargs) -> UniFormer:
    """Backbone `name` with a 1-output regression head whose bias starts at the mean EF (55.6).

    `pretrained_weights` (e.g. ``uniformer_small_k400_16x8.pth``) is loaded strictly into the
    original 400-class model before the head is replaced. `model_kwargs` go to the builder
    (e.g. ``drop_path_rate``, ``use_checkpoint``, ``depthwise``). ``model.head.in_features`` is the feature size.
    """
    if name not in _BUILDERS:
        raise ValueError(f'unknown feature extractor {name!r}; choose one of: {", ".join(_BUILDERS)}')
    model = _BUILDERS[name](num_classes=KINETICS_CLASSES, **model_kwargs)
    if pretrained_weights is not None:
        load_pretrained(model, pretrained_weights)
    model.head = nn.Linear(model.num_features, 1)
    nn.init.constant_(model.head.bias, MEAN_EF)
    return model


def load_weights(model: nn.Module, regressor: nn.Module, weights) -> None:
    """Load `weights` (a `Weights`) into a built encoder and regressor: a CoReEcho checkpoint fills both;
    Kinetics-400 weights fill the encoder (its 400-class head is read and dropped); `none` changes nothing."""
    if weights.kind == 'coreecho':
        _load_strict(model, weights.content['model'], 'model', weights.path, model)
        _load_strict(regressor, weights.content['regressor'], 'regressor', weights.path, model)
    elif weights.kind == 'kinetics400':
        head = model.head
        model.head = nn.Linear(model.num_features, KINETICS_CLASSES)
        try:
            _load_strict(model, weights.content, 'pretrained', weights.path, model)
        finally:
            model.head = head


def require_kind(weights: Weights, kinds) -> None:
    """A one-line error unless `weights` is of one of `kinds` (e.g. scoring needs a CoReEcho checkpoint)."""
    if weights.kind not in kinds:
        wanted = ' or '.join(KIND_NAMES[k] for k in kinds)
        what = 'setting' if weights.kind == 'none' else 'file'
        raise BadInputError(f'{weights.spec}: a {KIND_NAMES[weights.kind]} {what} where a {wanted} checkpoint '
                            'is needed')


def place_model(model: nn.Module, device, channels_last: bool = False, train: bool = False) -> nn.Module:
    """`model` on `device`, in train or eval mode, in the channels_last_3d memory format when asked (the one place
    every script puts a model where it runs)."""
    model = model.to(device).train(train)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def build_model(name: str, weights=None, kinds=tuple(KIND_NAMES), **model_kwargs):
    """(encoder, regressor, Weights): `name`'s UniFormer and the shallow MLP regressor from `weights` (a spec,
    a `Weights` from read_weights, or None for random init), as `load_weights` fills them. `kinds` lists the
    kinds the caller accepts (scoring needs a trained regressor: ``kinds=('coreecho',)``). `model_kwargs` go to
    the UniFormer builder (e.g. ``depthwise``)."""
    weights = weights if isinstance(weights, Weights) else read_weights(weights)
    require_kind(weights, kinds)
    model = get_feature_extractor(name, **model_kwargs)
    regressor = get_shallow_mlp_head(model.head.in_features, 1)
    load_weights(model, regressor, weights)
    return model, regressor, weights
