"""Seeded epochs: every item draws from its own torch.Generator seeded from (seed, epoch, index), so an item
depends on none of the number of workers, their order or the process, and a resumed run draws the same.

The epoch lives in shared memory: DataLoader workers, persistent ones included, hold copies of the dataset but
see `set_epoch` (call it before iterating the loader for that epoch).
"""
from __future__ import annotations

import numpy as np
import torch


class SeededEpochs:
    """Mixin of a dataset with a `seed` attribute (None: torch's global RNG, which DataLoader seeds per worker).
    Call `_share_epoch()` in __init__."""

    seed: int | None

    def _share_epoch(self) -> None:
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of `epoch` (only matters with an int seed)."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch!r}")
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def item_generator(self, index: int) -> torch.Generator | None:
        """The random stream of item `index` in the current epoch, or None for torch's global RNG."""
        if self.seed is None:
            return None
        seed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(seed))
