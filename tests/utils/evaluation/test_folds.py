"""utils/evaluation/folds.py: cross-validation folds by patient: the CAMUS protocol's contiguous blocks, label-
stratified folds, and bad sizes."""
import numpy as np
import pytest

from utils.evaluation import folds


def _check_partition(fold_list, patients):
    everyone = sorted(set(patients))
    held_out = [p for fold in fold_list for p in fold.test]
    assert sorted(held_out) == everyone  # every patient is tested exactly once
    for fold in fold_list:
        assert set(fold.train).isdisjoint(fold.test)
        assert sorted(fold.train + fold.test) == everyone


def test_camus_protocol_folds_are_exact_blocks():
    patients = [f"patient{i:04d}" for i in range(1, 501)]
    shuffled = list(np.random.default_rng(0).permutation(patients)) + patients[:20]  # order and repeats ignored
    fold_list = folds.contiguous_folds(shuffled)
    assert len(fold_list) == 10
    for k, fold in enumerate(fold_list):
        assert fold.index == k and list(fold.test) == patients[50 * k:50 * k + 50]
    _check_partition(fold_list, patients)
    assert folds.contiguous_folds(patients) == fold_list

    small = folds.contiguous_folds([f"p{i:02d}" for i in range(23)], n_folds=5)
    assert [len(f.test) for f in small] == [5, 5, 5, 4, 4] and small[1].test == tuple(f"p{i:02d}" for i in range(5, 10))
    shuffled_blocks = folds.contiguous_folds(patients, seed=1)
    _check_partition(shuffled_blocks, patients)
    assert shuffled_blocks == folds.contiguous_folds(patients, seed=1) and shuffled_blocks != fold_list


def test_stratified_folds_balance_labels_per_patient():
    patients = [f"ES{i:04d}" for i in range(1, 41)]
    label_of = {p: int(i % 3 == 0) for i, p in enumerate(patients)}  # 14 MI, 26 not
    samples = [(p, label_of[p]) for p in patients for _ in range(2)]  # two recordings per patient
    samples.append(("ES0002", 1))  # one more, MI: ES0002 now counts as MI
    label_of["ES0002"] = 1
    ids, labels = zip(*samples)
    fold_list = folds.stratified_folds(ids, labels, n_folds=5, seed=7)
    _check_partition(fold_list, patients)
    sizes = [len(f.test) for f in fold_list]
    mi = [sum(label_of[p] for p in f.test) for f in fold_list]
    assert max(sizes) - min(sizes) <= 1 and max(mi) - min(mi) <= 1 and sum(mi) == 15
    order = np.random.default_rng(1).permutation(len(ids))
    assert folds.stratified_folds([ids[i] for i in order], [labels[i] for i in order], 5, seed=7) == fold_list
    assert folds.stratified_folds(ids, labels, 5, seed=8) != fold_list

    indices = folds.sample_indices(ids, fold_list[0].test)
    assert sorted({ids[i] for i in indices}) == sorted(fold_list[0].test)
    assert len(indices) == sum(ids.count(p) for p in fold_list[0].test)


def test_folds_reject_bad_sizes():
    with pytest.raises(ValueError, match="n_folds"):
        folds.contiguous_folds(["a", "b"], n_folds=1)
    with pytest.raises(ValueError, match="3 folds of 2 patient"):
        folds.stratified_folds(["a", "b", "b"], [0, 1, 1], n_folds=3)
    with pytest.raises(ValueError, match="labels"):
        folds.stratified_folds(["a", "b"], [0], n_folds=2)
