"""utils/files/weights.py: plain paths, hf:// specs resolved from a pre-filled hub cache offline, and the
one-line errors. No network: every hf:// lookup runs with HF_HUB_OFFLINE=1."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, fill_hub_cache
from utils.files.weights import parse_hf_spec, resolve_weights, weights_label
from utils.script.errors import BadInputError, MissingInputError


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_plain_path_passes_through_unchanged(tmp_path):
    weights = tmp_path / "best.pth"
    weights.write_bytes(b"x")
    assert resolve_weights(str(weights)) == str(weights)
    assert resolve_weights(weights) == str(weights)  # a Path comes back as the same path text


def test_missing_plain_path_and_folder(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(MissingInputError, match=f"weights file {missing} does not exist"):
        resolve_weights(str(missing))
    with pytest.raises(FileNotFoundError):  # MissingInputError is a FileNotFoundError
        resolve_weights(str(missing))
    assert resolve_weights(str(tmp_path)) == str(tmp_path)  # a published folder: models.build reads it


def test_outputs_name_hf_weights_by_their_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert weights_label("hf://me/coreecho/best.pth") == "hf://me/coreecho/best.pth"
    assert weights_label("runs/best.pth") == str(tmp_path / "runs" / "best.pth")


def test_parse_hf_spec():
    assert parse_hf_spec("hf://owner/repo/file.pth") == ("owner/repo", "file.pth", None)
    assert parse_hf_spec("hf://owner/repo/sub/dir/file.pth") == ("owner/repo", "sub/dir/file.pth", None)
    assert parse_hf_spec("hf://owner/repo@v1.0/file.pth") == ("owner/repo", "file.pth", "v1.0")
    assert parse_hf_spec("hf://owner/repo") == parse_hf_spec("hf://owner/repo/") == ("owner/repo", "", None)
    for bad in ("hf://owner", "hf://owner//file.pth", "hf://owner/repo@/f.pth", "hf:///repo"):
        with pytest.raises(BadInputError, match="expected hf://OWNER/REPO"):
            parse_hf_spec(bad)


def test_hf_spec_resolves_from_prefilled_cache_offline(tmp_path, offline):
    cached = fill_hub_cache(tmp_path / "hub", "Sense-X/uniformer_video", "k400/uniformer_small_k400_16x8.pth",
                            b"weights")
    path = resolve_weights("hf://Sense-X/uniformer_video/k400/uniformer_small_k400_16x8.pth",
                           cache_dir=tmp_path / "hub")
    assert Path(path) == cached
    assert Path(path).read_bytes() == b"weights"


def test_hf_spec_offline_miss_says_where_to_put_the_file(tmp_path, offline):
    spec = "hf://someone/missing-repo/best.pth"
    with pytest.raises(MissingInputError) as error:
        resolve_weights(spec, cache_dir=tmp_path / "hub")
    message = str(error.value)
    assert "\n" not in message
    assert spec in message
    assert str(tmp_path / "hub") in message  # the cache it looked in
    assert "HF_HUB_OFFLINE" in message
    assert "https://huggingface.co/someone/missing-repo" in message and "local path" in message


def test_hf_spec_honours_environment_variables(tmp_path):
    """HF_HUB_CACHE and HF_HUB_OFFLINE set in the environment alone (fresh interpreter)."""
    cached = fill_hub_cache(tmp_path / "hub", "me/coreecho", "best.pth", b"ok")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from utils.files.weights import resolve_weights; "
            "print(resolve_weights('hf://me/coreecho/best.pth'))")
    result = subprocess.run([sys.executable, "-c", code, str(REPO_ROOT)], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == cached


def test_hf_spec_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes `import huggingface_hub` fail
    with pytest.raises(BadInputError, match="pip install huggingface_hub"):
        resolve_weights("hf://owner/repo/file.pth")
    # plain paths never need it
    assert resolve_weights(__file__) == __file__
