"""What scoring needs to know about a checkpoint, kept in it: the model, the clip shape, the input normalisation,
the stage and the run's validation metrics, as plain data (str/int/float/list/dict) under the key ``settings``
beside the released keys, so torch.load(weights_only=True) reads it and the official loader ignores it.

Scripts that score give --model / --frames / --frequency a default of None and fill each one that is not given
(`fill_options`): from the checkpoint's ``settings``, else from an official checkpoint's ``opt`` namespace, else
(--model) from the weights' shapes, else from the script's old default. A given flag always wins; `conflict`
is the one warning line when it contradicts the checkpoint.
"""
from collections.abc import Mapping

from datasets.clips import MEAN, STD

from utils.script.errors import BadInputError

from .build import MODEL_NAMES, fitting_model_name

SETTINGS_KEY = "settings"
FORMAT_VERSION = 1
CLIP_KEYS = ("model", "frames", "frequency")  # what a script fills from the checkpoint
SCORING_DEFAULTS = {"model": "uniformer_small", "frames": 36, "frequency": 4}  # the paper's, as before


def training_settings(opt, stage, mean=MEAN, std=STD, **extra) -> dict:
    """The settings a training run writes into every checkpoint (the saver adds epoch and metrics); `mean` / `std`:
    per-channel normalisation on the 0..255 scale (EchoNet's by default)."""
    return {"format_version": FORMAT_VERSION, "stage": stage, "model": str(opt.model), "frames": int(opt.frames),
            "frequency": int(opt.frequency), "mean": [float(v) for v in mean], "std": [float(v) for v in std],
            **extra}


def _checked(source, key, value):
    """A setting read from a file, checked: a known model name, a positive whole number of frames."""
    if key == "model" and value in MODEL_NAMES:
        return value
    if key != "model" and isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise BadInputError(f"{source}: setting '{key}' is {value!r}, not "
                     + (f"one of {', '.join(MODEL_NAMES)}" if key == "model" else "a positive whole number"))


def trained_settings(weights) -> dict:
    """What a CoReEcho checkpoint says of itself: its ``settings``, else the model / frames / frequency of the
    official scripts' ``opt`` (an argparse Namespace in last.pth and in the released file); {} for other kinds."""
    content = weights.content if weights.kind == "coreecho" else None
    if not isinstance(content, Mapping):
        return {}
    settings = content.get(SETTINGS_KEY)
    if isinstance(settings, Mapping):
        found = dict(settings)
    else:
        opt = content.get("opt")
        opt = vars(opt) if hasattr(opt, "__dict__") else opt if isinstance(opt, Mapping) else {}
        found = {key: opt[key] for key in CLIP_KEYS if opt.get(key) is not None}
    for key in CLIP_KEYS:
        if found.get(key) is not None:
            found[key] = _checked(f"{weights.spec}", key, found[key])
    return found


def _encoder_state(weights):
    if weights.kind == "coreecho":
        return weights.content["model"]
    return weights.content if weights.kind == "kinetics400" else None


def fill_options(opt, weights, defaults=SCORING_DEFAULTS, keys=CLIP_KEYS) -> dict:
    """Fill each of `keys` that `opt` leaves None: the checkpoint's setting, else (model) the one whose shapes the
    weights fit, else `defaults`. -> where each value came from ('flag', 'checkpoint', 'shapes', 'default')."""
    trained = trained_settings(weights)
    sources = {}
    for key in keys:
        if getattr(opt, key, None) is not None:
            sources[key] = "flag"
        elif trained.get(key) is not None:
            setattr(opt, key, trained[key])
            sources[key] = "checkpoint"
        elif key == "model" and _encoder_state(weights) is not None \
                and (name := fitting_model_name(_encoder_state(weights))) is not None:
            setattr(opt, key, name)
            sources[key] = "shapes"
        else:
            setattr(opt, key, defaults.get(key))
            sources[key] = "default"
    return sources


def conflict(opt, weights, keys=("frames", "frequency")):
    """One warning line when `opt` contradicts the checkpoint's own settings (it runs as asked), else None."""
    trained = trained_settings(weights)
    differ = [key for key in keys if trained.get(key) is not None and getattr(opt, key, None) != trained[key]]
    if not differ:
        return None
    given = ", ".join(f"--{key} {getattr(opt, key)}" for key in differ)
    own = ", ".join(f"{key} {trained[key]}" for key in differ)
    return f"{given} as asked, but {weights.spec} was trained with {own}: its EFs may be off"
