"""Shared pytest set-up: import the project from the repo root, never touch the network or the user's
home, and the fixtures several test files use (a synthetic EchoNet folder, a free port, script runners)."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
SAMPLES = SHARED / "data" / "echonet_samples"  # nine real EchoNet-Dynamic videos (absent in a user's clone)
OFFICIAL_STARTS = SHARED / "data" / "test_start_indexes.pkl"
sys.path.insert(0, str(REPO_ROOT))

# wandb must never prompt or phone home from the tests; caches go to a throw-away folder, not ~/.cache.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["COREECHO_CACHE"] = tempfile.mkdtemp(prefix="coreecho-test-cache-")

# A tiny UniFormer on 8-frame clips: every script runs in seconds on a CPU.
TINY = ["--model", "uniformer_tiny", "--frames", "8", "--frequency", "2", "--device", "cpu", "--print_freq", "1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signal_when_logged(process, log, text, signal_number, timeout=300):
    """Send `signal_number` to `process` as soon as `log` contains `text` (polled every 50 ms)."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if log.exists() and text in log.read_text():
            process.send_signal(signal_number)
            return
        time.sleep(0.05)


def read_all_frames(path, rgb=False):
    """Every frame OpenCV decodes from `path` (BGR, or RGB with rgb=True), as a list: a plain reference reader."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if rgb else frame)
    capture.release()
    return frames


def run_script(script, *args, env=None, timeout=600):
    """Run one of the top-level scripts in a fresh Python process; returns the CompletedProcess."""
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "WANDB_MODE": "disabled", **(env or {})})


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny-network tests: on a shared 2-core machine more threads mostly
    wait for each other (measured: 18 s instead of 30-80 s for such a module under load)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def echonet(tmp_path_factory):
    """A synthetic EchoNet-format folder of 16 videos (10 train, 3 val, 3 test). Shared: never modify it;
    take `echonet_copy` instead."""
    from datasets.synthetic.echonet import make_synthetic_echonet

    root = tmp_path_factory.mktemp("echonet")
    make_synthetic_echonet(root, n=16, seed=0)
    return root


@pytest.fixture
def echonet_copy(echonet, tmp_path):
    """A private copy of the synthetic folder that a test may change."""
    return Path(shutil.copytree(echonet, tmp_path / "echonet"))
