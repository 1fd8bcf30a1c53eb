import numpy as np
import pandas as pd
import pytest

from bertclf.cv import assign_folds, fold_counts, summarise
from bertclf.errors import BertclfError
from bertclf.labels import LabelMap
from bertclf.tasks import task_of


def train_table() -> pd.DataFrame:
    labels = ["a"] * 30 + ["b"] * 12 + ["c"] * 7
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(labels))], "label": labels})


TASK = task_of(LabelMap.fit(train_table()["label"]))


def test_folds_are_stratified_disjoint_and_cover_train():
    train = train_table()
    folds = assign_folds(train, 3, 0, TASK)
    assert folds["id"].tolist() == train["id"].tolist()  # every id exactly once
    assert set(folds["fold"]) == {0, 1, 2}
    merged = folds.merge(train, on="id")
    for label, count in train["label"].value_counts().items():
        per_fold = merged[merged["label"] == label]["fold"].value_counts()
        assert per_fold.max() - per_fold.min() <= 1, (label, per_fold.tolist())
        assert per_fold.sum() == count
    counts = fold_counts(TASK.targets(train), folds["fold"].to_numpy(), ["a", "b", "c"])
    assert counts == {
        str(fold): part["label"].value_counts().sort_index().to_dict()
        for fold, part in merged.groupby("fold")
    }


def test_fold_seed_changes_the_assignment_and_repeats():
    train = train_table()
    assert assign_folds(train, 3, 0, TASK).equals(assign_folds(train, 3, 0, TASK))
    assert not assign_folds(train, 3, 0, TASK).equals(assign_folds(train, 3, 1, TASK))


def test_no_folds_is_an_empty_assignment():
    assert assign_folds(train_table(), 0, 0, TASK).empty


def test_class_smaller_than_k_is_named():
    with pytest.raises(BertclfError, match=r"class 'c' has 7 training examples; 10-fold"):
        assign_folds(train_table(), 10, 0, TASK)


def test_summary_mean_and_std_by_hand():
    folds = [
        {"accuracy": 0.8, "n": 10, "roc_auc": None, "per_class": {"a": {"f1": 0.5}}},
        {"accuracy": 0.6, "n": 12, "roc_auc": 0.7, "per_class": {"a": {"f1": 0.7}}},
        {"accuracy": 0.7, "n": 11, "roc_auc": 0.9, "per_class": {"a": {"f1": 0.9}}},
    ]
    summary = summarise(folds)
    assert summary["k"] == 3 and summary["folds"] == folds
    assert summary["mean"]["accuracy"] == pytest.approx(0.7)
    # sample standard deviation: sqrt(((0.1)^2 + (0.1)^2 + 0) / 2) = 0.1
    assert summary["std"]["accuracy"] == pytest.approx(0.1)
    assert summary["mean"]["n"] == pytest.approx(11)
    assert summary["mean"]["per_class"]["a"]["f1"] == pytest.approx(0.7)
    assert summary["std"]["per_class"]["a"]["f1"] == pytest.approx(0.2)
    assert "roc_auc" not in summary["mean"]  # undefined in one fold: no mean claimed


def test_summary_of_no_folds():
    assert summarise([]) == {"k": 0, "folds": [], "mean": {}, "std": {}}


def test_summary_std_is_numpy_sample_std():
    values = np.array([0.81, 0.84, 0.79, 0.86, 0.83])
    summary = summarise([{"accuracy": float(v)} for v in values])
    assert summary["std"]["accuracy"] == pytest.approx(values.std(ddof=1))
