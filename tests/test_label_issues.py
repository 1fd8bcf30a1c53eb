"""Label errors from out-of-fold predictions (bertclf.label_issues, with the real cleanlab): rows
whose labels were flipped on purpose are found, ranked first, and counted per class; the gathered
table covers every training row once or is refused in one line."""

import numpy as np
import pandas as pd
import pytest

from bertclf.config import LabelIssuesConfig
from bertclf.errors import BertclfError
from bertclf.label_issues import ISSUE_COLUMNS, find_label_issues, fold_predictions, out_of_fold
from bertclf.labels import LabelMap
from bertclf.tasks import MultiLabel, Regression, SingleLabel

CONFIG = LabelIssuesConfig(
    enabled=True, filter_by="prune_by_noise_rate", frac_noise=1.0, regression_fraction=0.05
)
CLASSES = ["bad", "good", "mixed"]


def gathered(train: pd.DataFrame, probabilities: np.ndarray, predicted, k: int = 3):
    """`out_of_fold` over k folds that split `train` by row number."""
    folds = np.arange(len(train)) % k
    return out_of_fold(
        train,
        [
            fold_predictions(
                train["id"][folds == f],
                probabilities[folds == f],
                [p for p, g in zip(predicted, folds == f, strict=True) if g],
                f,
            )
            for f in range(k)
        ],
    )


def test_flipped_single_labels_are_found_and_ranked_first():
    rng = np.random.default_rng(0)
    n = 600
    truth = rng.integers(0, 3, n)
    probabilities = rng.dirichlet([0.3, 0.3, 0.3], n) * 0.2
    probabilities[np.arange(n), truth] += 0.8  # a good model: the true class at 0.8 or more
    given = truth.copy()
    flipped = rng.choice(n, 30, replace=False)  # 5%
    given[flipped] = (truth[flipped] + rng.integers(1, 3, 30)) % 3
    train = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "text": [f"text {i}" for i in range(n)],
            "label": np.asarray(CLASSES)[given],
        }  # fmt: skip
    )
    task = SingleLabel(LabelMap.fit(train["label"]))
    table = gathered(train, probabilities, np.asarray(CLASSES)[probabilities.argmax(1)])
    assert list(table["id"]) == list(train["id"]) and set(table["fold"]) == {0, 1, 2}

    issues, summary = find_label_issues(table, task, CONFIG, "|")

    assert list(issues.columns) == ISSUE_COLUMNS
    found = np.asarray([int(i[1:]) for i in issues["id"]])
    # confident learning flags what it estimates the noise to be: here every flag is a flipped
    # row, and most flipped rows are flagged (23 of 30 with cleanlab 2.9)
    assert set(found) <= set(flipped) and len(found) >= 20
    assert list(issues["rank"]) == list(range(1, len(found) + 1))
    assert issues["label_quality"].is_monotonic_increasing
    row = issues.iloc[0]
    i = found[0]
    assert row["given"] == CLASSES[given[i]] and row["suggested"] == CLASSES[truth[i]]
    assert row["text"] == f"text {i}" and row["fold"] == i % 3
    assert summary["rows"] == n and summary["flagged"] == len(found)
    assert summary["share"] == pytest.approx(len(found) / n)
    for j, name in enumerate(CLASSES):
        carrying = given == j
        assert summary["per_class"][name] == {
            "rows": int(carrying.sum()),
            "flagged": int(carrying[found].sum()),
            "share": pytest.approx(carrying[found].sum() / carrying.sum()),
        }
    # the simplest filter flags every row whose fold's model disagrees: all 30 here
    simplest = LabelIssuesConfig(
        enabled=True, filter_by="predicted_neq_given", frac_noise=1.0, regression_fraction=0.05
    )
    assert set(find_label_issues(table, task, simplest, "|")[0]["id"]) == {f"r{i}" for i in flipped}


def test_a_label_set_with_a_label_added_or_removed_is_found():
    rng = np.random.default_rng(1)
    n, names = 500, ["econ", "oil", "sport", "tech"]
    truth = rng.random((n, 4)) < 0.3
    probabilities = np.where(truth, 0.85, 0.05) + rng.random((n, 4)) * 0.1
    given = truth.copy()
    changed = rng.choice(n, 25, replace=False)
    given[changed, rng.integers(0, 4, 25)] ^= True  # one label added or removed
    to_sets = lambda m: [tuple(np.asarray(names)[row]) for row in m]  # noqa: E731
    train = pd.DataFrame(
        {"id": [f"d{i}" for i in range(n)], "text": ["t"] * n, "labels": to_sets(given)}
    )
    task = MultiLabel(LabelMap.fit_sets(train["labels"]))
    table = gathered(train, probabilities, [list(s) for s in to_sets(probabilities > 0.5)])

    issues, summary = find_label_issues(table, task, CONFIG, "|")

    found = {int(i[1:]) for i in issues["id"]}
    assert found <= set(changed) and len(found) >= 15  # 16 of 25 with cleanlab 2.9
    first = int(issues["id"].iloc[0][1:])
    assert issues["given"].iloc[0] == "|".join(np.asarray(names)[given[first]])
    assert issues["suggested"].iloc[0] == "|".join(np.asarray(names)[truth[first]])
    assert set(summary["per_class"]) == set(names)
    assert summary["per_class"]["oil"]["rows"] == int(given[:, 1].sum())


def test_the_worst_regression_scores_are_flagged():
    rng = np.random.default_rng(2)
    n = 200
    truth = rng.uniform(0, 5, n)
    given = truth.copy()
    wrong = rng.choice(n, 10, replace=False)
    given[wrong] = (truth[wrong] + 2.5) % 5
    train = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "text": ["a"] * n,
            "text_pair": ["b"] * n,
            "score": given.astype(np.float32),
        }  # fmt: skip
    )
    task = Regression(LabelMap.fit_scores(train["score"]))
    predictions = truth + rng.normal(0, 0.1, n)
    table = gathered(train, predictions[:, None], predictions.astype(np.float32))

    issues, summary = find_label_issues(table, task, CONFIG, "|")

    assert {int(i[1:]) for i in issues["id"]} == set(wrong)  # 5% of 200
    assert "text_pair" in issues.columns and "per_class" not in summary
    assert summary == {"rows": n, "flagged": 10, "share": 0.05}


def test_an_empty_table_flags_nothing():
    task = SingleLabel(LabelMap.fit(pd.Series(CLASSES)))
    train = pd.DataFrame({"id": ["a"], "text": ["x"], "label": ["bad"]})
    empty = out_of_fold(train, [])
    assert empty.empty and {"fold", "probabilities", "predicted"} <= set(empty.columns)
    issues, summary = find_label_issues(empty, task, CONFIG, "|")
    assert issues.empty and list(issues.columns) == ISSUE_COLUMNS
    assert summary == {"rows": 0, "flagged": 0, "share": 0.0}


def test_folds_that_do_not_cover_the_split_once_are_refused():
    train = pd.DataFrame({"id": ["a", "b", "c"], "text": ["x"] * 3, "label": ["bad"] * 3})
    p = np.full((1, 3), 1 / 3)
    a, b = (fold_predictions([i], p, ["bad"], f) for f, i in enumerate("ab"))
    with pytest.raises(BertclfError, match=r"do not cover the training split \(first missing: c"):
        out_of_fold(train, [a, b])
    c = fold_predictions(["a"], p, ["bad"], 2)
    with pytest.raises(BertclfError, match="row 'a' is held out by more than one fold"):
        out_of_fold(train, [a, b, c])


def test_a_missing_fold_file_is_named(tmp_path, monkeypatch):
    from bertclf.label_issues import read_held_out

    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        BertclfError, match=r"fold_1_held_out\.parquet: not found; run `dvc repro train_fold@1`"
    ):
        read_held_out([1])
