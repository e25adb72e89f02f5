"""Shared pytest set-up: import the project from the repo root, never touch the network."""
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
sys.path.insert(0, str(REPO_ROOT))

# wandb must never prompt or phone home from the tests.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
