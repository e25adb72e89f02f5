"""Weights by name: a local path (file or published folder), or `hf://OWNER/REPO[@REVISION][/FILE]` on the hub.

`resolve_weights(spec)` only finds the file (or folder) and returns its local path; loading stays with
models.build.read_weights / utils.files.checkpoint.load_checkpoint (torch.load with weights_only=True).
A FILE (it may hold '/') goes through `huggingface_hub.hf_hub_download`; `hf://OWNER/REPO` alone through
`snapshot_download` (the whole repository: a folder written by models.publish). Either is downloaded once into
the hub cache (HF_HUB_CACHE / HF_HOME) and found there afterwards; HF_HUB_OFFLINE=1, read at every call, makes
the lookup cache-only. huggingface_hub is imported only for hf:// specs.

Errors are one line: MissingInputError (a FileNotFoundError) for a missing file, or one neither cached nor
downloadable (it says where the cache is and that a downloaded file can be passed as a local path);
BadInputError (a ValueError) for a malformed spec, a missing huggingface_hub or an error from the hub.
"""
from __future__ import annotations

import os

from utils.script.errors import BadInputError, MissingInputError

HF_PREFIX = "hf://"
_TRUE = {"1", "true", "yes", "on"}


def parse_hf_spec(spec: str) -> tuple[str, str, str | None]:
    """'hf://OWNER/REPO[@REVISION][/FILE]' -> (repo_id 'OWNER/REPO', FILE ('' for the whole repository),
    REVISION or None)."""
    parts = spec[len(HF_PREFIX):].rstrip("/").split("/", 2)
    if len(parts) == 2:
        parts.append("")
    if len(parts) < 3 or not all(parts[:2]):
        raise BadInputError(f"weights {spec}: expected hf://OWNER/REPO or hf://OWNER/REPO/FILE (FILE may contain '/')")
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
        from huggingface_hub import constants, hf_hub_download, snapshot_download
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise BadInputError(f"weights {spec}: hf:// needs the huggingface_hub package: pip install huggingface_hub "
                            "(or download the file yourself and pass its local path)") from None
    cache = os.fspath(cache_dir) if cache_dir is not None else constants.HF_HUB_CACHE
    offline = _offline() or constants.HF_HUB_OFFLINE
    try:
        if not filename:  # the whole repository: a published folder
            return snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=offline)
        return hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, local_files_only=offline)
    except hub_errors.LocalEntryNotFoundError:
        # not in the cache, and offline or the hub unreachable
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise MissingInputError(
            f"weights {spec}: not in the Hugging Face cache {cache} and {why}; download {filename or 'its files'} from "
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
        return text  # a published folder: models.build.read_weights reads it
    if not os.path.isfile(text):
        raise MissingInputError(f"weights file {text} does not exist")
    return text


def weights_label(spec: str | os.PathLike) -> str:
    """How outputs name the weights they came from: the hf:// spec as given, else the absolute path."""
    spec = os.fspath(spec)
    return spec if spec.startswith(HF_PREFIX) else os.path.abspath(spec)
