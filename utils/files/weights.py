"""Weights by name: a local path, or `hf://OWNER/REPO/FILE` on the Hugging Face hub.

`resolve_weights(spec)` only finds the file and returns its local path; loading stays with
`utils.files.checkpoint.load_checkpoint` (torch.load with weights_only=True).

- A plain path is returned unchanged if it is a file.
- `hf://OWNER/REPO/FILE` (FILE may hold '/', e.g. `hf://me/coreecho/runs/best.pth`; a revision
  goes after the repository: `hf://me/coreecho@v1.0/best.pth`) goes through
  `huggingface_hub.hf_hub_download`, so the file is downloaded once into the hub cache
  (HF_HUB_CACHE / HF_HOME, default ~/.cache/huggingface/hub) and found there afterwards.
  HF_HUB_OFFLINE=1 is read at every call (not only when huggingface_hub is imported) and makes
  the lookup cache-only. huggingface_hub is imported only for hf:// specs, so plain paths work
  without it.

Errors are one line: MissingInputError for a file not found, BadInputError for a spec or hub problem.
"""
from __future__ import annotations

import os

from utils.script.errors import BadInputError, MissingInputError

HF_PREFIX = "hf://"
_TRUE = {"1", "true", "yes", "on"}


def parse_hf_spec(spec: str) -> tuple[str, str, str | None]:
    """'hf://OWNER/REPO[@REVISION]/FILE' -> (repo_id 'OWNER/REPO', FILE, REVISION or None)."""
    parts = spec[len(HF_PREFIX):].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise BadInputError(f"weights {spec}: expected hf://OWNER/REPO/FILE (FILE may contain '/')")
    owner, repo, filename = parts
    repo, _, revision = repo.partition("@")
    if not repo or (_ and not revision):
        raise BadInputError(f"weights {spec}: expected hf://OWNER/REPO@REVISION/FILE")
    return f"{owner}/{repo}", filename, revision or None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def _from_hub(spec: str, cache_dir: str | os.PathLike | None) -> str:
    repo_id, filename, revision = parse_hf_spec(spec)
    try:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise BadInputError(f"weights {spec}: hf:// needs the huggingface_hub package: pip install huggingface_hub "
                            "(or download the file yourself and pass its local path)") from None
    cache = os.fspath(cache_dir) if cache_dir is not None else constants.HF_HUB_CACHE
    offline = _offline() or constants.HF_HUB_OFFLINE
    try:
        return hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, local_files_only=offline)
    except hub_errors.LocalEntryNotFoundError:
        # not in the cache, and offline or the hub unreachable
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise MissingInputError(
            f"weights {spec}: not in the Hugging Face cache {cache} and {why}; download {filename} from "
            f"https://huggingface.co/{repo_id} and pass its local path, or run once with network access "
            f"to fill the cache") from None
    except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError,
            hub_errors.EntryNotFoundError, hub_errors.GatedRepoError, hub_errors.HfHubHTTPError,
            hub_errors.HFValidationError, OSError) as e:
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise BadInputError(f"weights {spec}: Hugging Face hub: {type(e).__name__}: {reason}") from None


def resolve_weights(spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Local path of the weights named by `spec` (a path, or hf://OWNER/REPO/FILE; see the module
    docstring). `cache_dir` overrides the Hugging Face hub cache folder."""
    text = os.fspath(spec)
    if text.startswith(HF_PREFIX):
        return _from_hub(text, cache_dir)
    if os.path.isdir(text):
        raise BadInputError(f"weights {text} is a folder, not a weights file")
    if not os.path.isfile(text):
        raise MissingInputError(f"weights file {text} does not exist")
    return text


def weights_label(spec: str | os.PathLike) -> str:
    """How outputs name the weights they came from: the hf:// spec as given, else the absolute path."""
    spec = os.fspath(spec)
    return spec if spec.startswith(HF_PREFIX) else os.path.abspath(spec)
