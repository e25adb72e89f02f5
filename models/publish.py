"""A trained model as a Hugging Face model repository, and that folder read back as a checkpoint.

    python -m models.publish save/<stage-2 run>/best.pth --out coreecho-echonet
    huggingface-cli upload OWNER/coreecho-echonet coreecho-echonet .   # the hub's own client
    python predict.py --pretrained_weights hf://OWNER/coreecho-echonet videos/

The folder holds `model.safetensors` (no pickle: the encoder under ``model.``, the regressor under
``regressor.``), `config.json` (the checkpoint's settings, models.settings: model, frames, frequency, mean/std,
stage, epoch, validation metrics), the familiarity reference when best.pth has one (scoring.familiarity, renamed
to lie beside model.safetensors and tied to it) and `README.md`, a model card with YAML metadata.
"""
import argparse
import json
import os
import shutil
import tempfile

import numpy as np

from utils.files.atomic import atomic_open, atomic_write_json, atomic_write_text
from utils.files.checkpoint import strip_module_prefix
from utils.script.cli import run_main
from utils.script.errors import BadInputError, MissingInputError
from utils.script.validators import positive_int

from .build import MODEL_NAMES, read_weights, require_kind
from .settings import CLIP_KEYS, fill_options, trained_settings, training_settings

WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "README.md"
PREFIXES = {"model": "model.", "regressor": "regressor."}
REFERENCE_SUFFIX = ".reference.npz"  # scoring.familiarity.REFERENCE_SUFFIX (models never imports scoring)
METRIC_NAMES = {"mae": "MAE", "rmse": "RMSE", "r2": "R2"}


def load_published(path):
    """(model.safetensors path, checkpoint-like content) of a published folder or its model.safetensors."""
    from safetensors.torch import load_file
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    weights = path if not os.path.isdir(path) else os.path.join(folder, WEIGHTS_FILE)
    config_path = os.path.join(folder, CONFIG_FILE)
    for needed in (weights, config_path):
        if not os.path.isfile(needed):
            raise MissingInputError(f"{path}: {os.path.basename(needed)} missing: not a folder written by "
                                    "python -m models.publish")
    try:
        tensors = load_file(weights)
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:  # safetensors' errors and JSONDecodeError are ValueErrors or OSErrors
        raise BadInputError(f"{path}: cannot read the published model ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(config, dict):
        raise BadInputError(f"{config_path}: expected a JSON object of settings")
    content = {key: {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}
               for key, prefix in PREFIXES.items()}
    if not content["model"] or not content["regressor"]:
        raise BadInputError(f"{weights}: no tensors under '{PREFIXES['model']}' and '{PREFIXES['regressor']}'")
    return weights, {"epoch": config.get("epoch"), **content, "settings": config}


def published_tensors(content) -> dict:
    """The checkpoint's encoder and regressor tensors under their prefixes (contiguous, as safetensors needs)."""
    return {PREFIXES[key] + name: tensor.detach().cpu().contiguous()
            for key in PREFIXES for name, tensor in strip_module_prefix(content[key]).items()}


def published_config(weights, settings) -> dict:
    config = {"library": "coreecho", "source_checkpoint": os.path.basename(weights.path), **settings}
    if config.get("epoch") is None and weights.epoch is not None:
        config["epoch"] = weights.epoch
    return config


def _plain_metrics(metrics) -> dict:
    return {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def card_text(config, repo_name, license_name, dataset) -> str:
    """README.md: YAML metadata (license, tags, datasets, metrics as model-index) then what the model is for."""
    from huggingface_hub import EvalResult, ModelCardData
    metrics = _plain_metrics(config.get("metrics"))
    results = [EvalResult(task_type="video-regression", task_name="Ejection fraction regression",
                          dataset_type=dataset, dataset_name=f"{dataset} (validation split)", dataset_split="val",
                          metric_type=k, metric_name=METRIC_NAMES.get(k, k), metric_value=v)
               for k, v in metrics.items()]
    data = ModelCardData(license=license_name, library_name="pytorch", datasets=[dataset], model_name=repo_name,
                         tags=["echocardiography", "ejection-fraction", "video-regression", "uniformer", "coreecho",
                               "medical-imaging"], metrics=sorted(metrics) or None, eval_results=results or None)
    shown = ", ".join(f"{METRIC_NAMES.get(k, k)} {v:.3f}" for k, v in metrics.items()) or "not recorded"
    clip = f"{config.get('frames')} frames every {config.get('frequency')}"
    return f"""---
{data.to_yaml()}
---

# {repo_name}

CoReEcho ({config.get('model')}, stage {config.get('stage', '?')}, epoch {config.get('epoch')}): the ejection
fraction (EF, %) of an apical-4-chamber echocardiography video, from clips of {clip} frame(s).
Validation metrics of the run: {shown}.

## Intended use
Research on EF regression from echo videos: scoring EchoNet-Dynamic-style apical-4-chamber loops (112x112
after the crop) with this project's `predict.py`, by name: `--pretrained_weights hf://OWNER/{repo_name}`;
the clip shape and the model are read from `config.json`.

## Training data
{dataset} (train split; best epoch chosen on the validation split). Inputs are normalised per channel with
mean {config.get('mean')} and std {config.get('std')} on the 0..255 scale.

## Limitations
For research use only: not a medical device, and an EF from it is not a diagnosis. It was trained on
apical-4-chamber loops of one hospital's archive; other views, probes, machines, frame rates or
populations may give wrong values without warning (the familiarity columns of predict.py flag some of them).
Check the data licence of {dataset} before sharing derived weights.
"""


def copy_reference(source_checkpoint, weights_path):
    """Copy the familiarity reference of `source_checkpoint` (when there is one made for it) beside the published
    `weights_path`, its meta 'checkpoint' now the identity of that file; -> the copy's path or None."""
    from scoring.familiarity import content_identity, load_reference  # the reference's own format
    source = os.fspath(source_checkpoint) + REFERENCE_SUFFIX
    if not os.path.isfile(source):
        return None
    reference = load_reference(source)
    if reference.meta["checkpoint"] != content_identity(source_checkpoint):
        return None  # made for another checkpoint: predict.py would not use it either
    with np.load(source, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["meta"] = np.array(json.dumps({**reference.meta, "checkpoint": content_identity(weights_path)}))
    target = weights_path + REFERENCE_SUFFIX
    with atomic_open(target, "wb") as f:
        np.savez(f, **arrays)
    return target


def publish(checkpoint, out, license_name="other", dataset="EchoNet-Dynamic", name=None, clip=None):
    """Write the folder `out` (it must not exist, or be empty) from a CoReEcho checkpoint; `clip`: model / frames /
    frequency for a checkpoint that does not say them (an official one without them in its opt)."""
    from safetensors.torch import save_file
    weights = read_weights(checkpoint)
    require_kind(weights, ("coreecho",))
    clip = argparse.Namespace(**{key: (clip or {}).get(key) for key in CLIP_KEYS})
    fill_options(clip, weights, defaults={})
    missing = [key for key in CLIP_KEYS if getattr(clip, key) is None]
    if missing:
        raise BadInputError(f"{checkpoint}: the checkpoint does not say its {', '.join(missing)}: give "
                            + " ".join(f"--{key}" for key in missing))
    settings = {**training_settings(clip, trained_settings(weights).get("stage")), **trained_settings(weights),
                **vars(clip)}
    config = published_config(weights, settings)
    out = os.path.abspath(out)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise BadInputError(f"--out {out} exists: give a new folder (or remove it)")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".publish-", dir=parent)  # renamed to `out` once complete
    try:
        weights_path = os.path.join(staging, WEIGHTS_FILE)
        save_file(published_tensors(weights.content), weights_path, metadata={"format": "pt"})
        atomic_write_json(config, os.path.join(staging, CONFIG_FILE))
        atomic_write_text(card_text(config, name or os.path.basename(out), license_name, dataset),
                          os.path.join(staging, CARD_FILE))
        copy_reference(weights.path, weights_path)
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m models.publish", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a CoReEcho checkpoint (best.pth) or a published folder")
    parser.add_argument("--out", required=True, help="the folder to write (a Hugging Face model repository)")
    parser.add_argument("--license", default="other",
                        help="licence id of the card (other: see the data's licence; e.g. mit, cc-by-nc-4.0)")
    parser.add_argument("--dataset", default="EchoNet-Dynamic", help="the training data named in the card")
    parser.add_argument("--name", default=None, help="the model's name in the card (default: the --out folder's)")
    parser.add_argument("--model", choices=MODEL_NAMES, default=None, help="only for a checkpoint that does not say it")
    parser.add_argument("--frames", type=positive_int, default=None, help="only for a checkpoint that does not say it")
    parser.add_argument("--frequency", type=positive_int, default=None,
                        help="only for a checkpoint that does not say it")
    opt = parser.parse_args(argv)
    clip = {key: getattr(opt, key) for key in CLIP_KEYS}
    publish(opt.checkpoint, opt.out, opt.license, opt.dataset, opt.name, clip)
    print(f"Wrote {opt.out}: {', '.join(sorted(os.listdir(opt.out)))}")
    return 0


if __name__ == "__main__":
    run_main(main)
