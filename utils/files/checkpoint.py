"""Checkpoints in the released CoReEcho format, saved atomically and loaded without running code.

Format (interchangeable with the official scripts' files):
- best.pth: {'epoch', 'model', 'regressor', 'best_error'}
- last.pth: {'opt', 'model', 'regressor', 'epoch', 'best_error'} plus, here, 'resume' (optimiser,
  scaler and RNG states) which the official loader simply ignores.
Both add, here, 'settings' (models.settings: model, clip shape, normalisation, stage, validation metrics) as
plain data, also ignored by the official loader; the weights are the same tensors either way.
"""
import argparse
import os
import pickle

import torch

from utils.script.errors import BadInputError, MissingInputError
from utils.files.atomic import atomic_torch_save

# The only non-tensor type the released format holds is the argparse Namespace of options.
SAFE_GLOBALS = [argparse.Namespace]


def unwrap(module):
    """The bare model behind DistributedDataParallel / DataParallel / torch.compile wrappers."""
    module = getattr(module, "_orig_mod", module)
    return module.module if hasattr(module, "module") and isinstance(module.module, torch.nn.Module) else module


def _looks_like_torch_file(path):
    """torch.save writes a zip archive (PK..) or, in the legacy format, a pickle (protocol byte 0x80)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_checkpoint(path, map_location="cpu"):
    """torch.load with weights_only=True; a file that needs arbitrary code is refused."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingInputError(f"checkpoint not found: {path}")
    if not _looks_like_torch_file(path):
        raise BadInputError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle; "
                            "a download error page or a wrong file?)")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInputError(
            f"refused to load {path}: it needs objects beyond tensors, numbers, dicts and argparse.Namespace "
            f"({reason[:200]}); only load checkpoints you trust, and convert them to a plain state dict"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadInputError(f"cannot read checkpoint {path}: {reason}") from None


def strip_module_prefix(state_dict):
    """Drop the 'module.' prefix that DataParallel/DDP training adds to every key."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def _listing(keys, limit=10):
    more = len(keys) - limit
    return f"{len(keys)}: " + ", ".join(keys[:limit]) + (f", ... (+{more} more)" if more > 0 else "")


def load_state_dict_strict(module, state_dict, what, source):
    """Strict load (a 'module.' prefix is dropped); a mismatch is one line listing the missing,
    unexpected and wrong-shape keys."""
    state_dict = strip_module_prefix(state_dict)
    target = unwrap(module)
    expected = target.state_dict()
    # BatchNorm's num_batches_tracked may be absent: torch's strict load fills it in (older or converted files)
    missing = [k for k in expected if k not in state_dict and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [f"{k} {list(v.shape)} (expected {list(expected[k].shape)})" for k, v in state_dict.items()
                   if k in expected and hasattr(v, "shape") and v.shape != expected[k].shape]
    problems = [f"{label} {_listing(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape)) if keys]
    if problems:
        raise BadInputError(f"{source}: {what} weights do not fit {type(target).__name__}: " + "; ".join(problems))
    target.load_state_dict(state_dict, strict=True)


def _with_settings(checkpoint, settings):
    """The released keys first, then 'settings' when there are any (a dict of plain data)."""
    return checkpoint if settings is None else {**checkpoint, "settings": settings}


def save_best(path, model, regressor, epoch, best_error, settings=None):
    atomic_torch_save(_with_settings({
        "epoch": epoch,
        "model": unwrap(model).state_dict(),
        "regressor": unwrap(regressor).state_dict(),
        "best_error": torch.tensor(best_error, dtype=torch.float32),
    }, settings), path)


def save_last(path, opt, model, regressor, epoch, best_error, resume_state, settings=None):
    atomic_torch_save(_with_settings({
        "opt": opt,
        "model": unwrap(model).state_dict(),
        "regressor": unwrap(regressor).state_dict(),
        "epoch": epoch,
        "best_error": None if best_error is None else torch.tensor(best_error, dtype=torch.float32),
        "resume": resume_state,
    }, settings), path)
