"""Patient-level cross-validation folds, identical for identical inputs.

Every fold splits the PATIENTS (never recordings): a patient's recordings all go to the same side. Input order
never matters (patients are de-duplicated and sorted first); only `seed` changes a shuffled split.

- contiguous_folds: the released CAMUS protocol. Patients sorted by id, fold k tests on the k-th
  contiguous block: with 500 patients and 10 folds, patients[50k : 50k + 50] (other sizes: lengths differ by at
  most one, longer first). seed=None keeps the sorted order; an int seed shuffles the sorted patients first.
- stratified_folds: the HMC-QU default (5 folds). Within each label the sorted patients are shuffled with
  numpy.random.default_rng(seed) and dealt to the folds in turn, continuing the turn from one label to the next,
  so fold sizes and each label's count per fold differ by at most one. A patient with several recordings takes
  its largest label (MI if any recording is MI).

`patient_folds` picks one (stratified for classes); a Fold holds sorted tuples `train` and `test` (its
held-out patients); `sample_indices` maps them back to samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

CAMUS_FOLDS = 10
HMCQU_FOLDS = 5


@dataclass(frozen=True)
class Fold:
    index: int
    train: tuple[str, ...]
    test: tuple[str, ...]  # held out: scored by the model trained on `train`


def _n_folds(n_folds, n_patients: int) -> int:
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"n_folds must be an int >= 2, got {n_folds!r}")
    if n_folds > n_patients:
        raise ValueError(f"cannot make {n_folds} folds of {n_patients} patient(s)")
    return int(n_folds)


def _folds(fold_by_patient: dict[str, int], n_folds: int) -> list[Fold]:
    patients = sorted(fold_by_patient)
    return [Fold(k, tuple(p for p in patients if fold_by_patient[p] != k),
                 tuple(p for p in patients if fold_by_patient[p] == k)) for k in range(n_folds)]


def contiguous_folds(patients: Sequence[str], n_folds: int = CAMUS_FOLDS, seed: int | None = None) -> list[Fold]:
    """Fold k tests on the k-th contiguous block of the sorted (optionally shuffled) patients."""
    order = sorted({str(p) for p in patients})
    n_folds = _n_folds(n_folds, len(order))
    if seed is not None:
        order = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    blocks = np.array_split(np.arange(len(order)), n_folds)  # lengths differ by <= 1, longer first
    return _folds({order[i]: k for k, block in enumerate(blocks) for i in block}, n_folds)


def stratified_folds(patients: Sequence[str], labels: Sequence, n_folds: int = HMCQU_FOLDS,
                     seed: int = 0) -> list[Fold]:
    """Folds balanced by label; patients[i] has labels[i] (one entry per sample, patients may repeat)."""
    if len(patients) != len(labels):
        raise ValueError(f"got {len(patients)} patient ids but {len(labels)} labels")
    label_of: dict[str, float] = {}
    for patient, label in zip(patients, labels):
        patient = str(patient)
        label_of[patient] = max(label_of.get(patient, label), label)
    order = sorted(label_of)
    n_folds = _n_folds(n_folds, len(order))
    rng = np.random.default_rng(seed)
    fold_by_patient, turn = {}, 0
    for label in sorted(set(label_of.values())):
        group = [p for p in order if label_of[p] == label]
        for position in rng.permutation(len(group)):
            fold_by_patient[group[position]] = turn % n_folds
            turn += 1
    return _folds(fold_by_patient, n_folds)


def patient_folds(patients: Sequence[str], labels: Sequence, n_folds: int, stratified: bool,
                  seed: int | None = 0) -> list[Fold]:
    """stratified_folds (seed None counts as 0), or contiguous_folds of the sorted patients (shuffled by
    `seed` unless it is None); one entry per sample in `patients` and `labels`."""
    if stratified:
        return stratified_folds(patients, labels, n_folds, seed=seed or 0)
    return contiguous_folds(patients, n_folds, seed=seed)


def sample_indices(sample_patients: Sequence[str], fold_patients: Sequence[str]) -> np.ndarray:
    """Indices of the samples whose patient is in `fold_patients` (e.g. fold.train), in sample order."""
    wanted = {str(p) for p in fold_patients}
    return np.array([i for i, p in enumerate(sample_patients) if str(p) in wanted], dtype=np.int64)
