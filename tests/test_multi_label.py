"""Multi-label without training: reading label sets, stratified splits and folds, thresholds,
window pooling, the label map, the loss and every metric against hand-worked examples."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import SHARED, section

from bertclf.cv import assign_folds, fold_counts
from bertclf.errors import BertclfError
from bertclf.labels import MULTI_LABEL, LabelMap, label_set
from bertclf.metrics import MultiLabelMetrics, multi_label_metrics
from bertclf.prediction import pool_windows
from bertclf.prepare import prepare_splits
from bertclf.tables import write_table
from bertclf.tasks import task_of
from bertclf.thresholds import best_threshold, decide, tune

REUTERS = SHARED / "fixtures" / "reuters21578_modapte_test.jsonl"
TOPICS = ["earn", "acq", "grain", "wheat", "crude"]


def task(**overrides):
    return section("task", **{"type": "multi_label", **overrides})


def data(path, **overrides):
    values = {"name": "t", "path": str(path), "text_column": "text", "label_column": "labels"}
    return section("data", **{"test_path": None, "id_column": None, **values, **overrides})


def tagged_table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Texts that mention their topics; a few with none. Every topic on many texts."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = sorted(set(rng.choice(TOPICS, size=rng.integers(0, 3), replace=False)))
        rows.append(
            {"text": f"story {i} about {' and '.join(labels) or 'nothing'}", "labels": labels}
        )
    return pd.DataFrame(rows)


# reading label cells


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (["earn", "acq"], ("acq", "earn")),
        (np.array(["wheat", " grain "]), ("grain", "wheat")),
        ("earn|acq", ("acq", "earn")),
        (" earn | acq ", ("acq", "earn")),
        ("earn", ("earn",)),
        ("", ()),
        ("   ", ()),
        ([], ()),
        (None, ()),
        (float("nan"), ()),
        (3, ("3",)),
        (["earn", "earn"], ("earn",)),
    ],
)
def test_label_cells_are_read_as_sorted_label_sets(cell, expected):
    assert label_set(cell, 0, "t.csv", "labels", "|") == expected


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (["earn", 3], r"t\.jsonl: row 5 of column 'labels': label 3 is not a string"),
        (["earn|acq"], r"row 5 of column 'labels': label 'earn\|acq' holds the separator"),
        ("earn||acq", r"row 5 of column 'labels': an empty label in 'earn\|\|acq'"),
        ({"earn": 1}, r"row 5 of column 'labels': \{'earn': 1\} is neither a list"),
    ],
)
def test_bad_label_cells_name_the_row(cell, message):
    with pytest.raises(BertclfError, match=message):
        label_set(cell, 4, "t.jsonl", "labels", "|")


def test_a_list_of_labels_in_a_single_label_run_names_the_row(tmp_path):
    path = tmp_path / "t.jsonl"
    frame = pd.DataFrame({"text": ["a", "b", "c"], "labels": [["x"], ["y"], ["x", "y"]]})
    write_table(frame, path)
    with pytest.raises(BertclfError, match=r"t\.jsonl: row 1 of column 'labels' holds a list"):
        prepare_splits(data(path), seed=0)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx", ".parquet", ".jsonl"])
def test_every_format_gives_the_same_splits(tmp_path, suffix):
    table = tagged_table()
    reference = tmp_path / "reference.jsonl"
    write_table(table, reference)
    path = tmp_path / f"table{suffix}"
    if suffix in (".csv", ".tsv", ".xlsx"):
        table = table.assign(labels=table["labels"].map("|".join))
    write_table(table, path)
    expected, _ = prepare_splits(data(reference), 0, task())
    splits, report = prepare_splits(data(path), 0, task())
    for name in ("train", "val", "test"):
        assert splits[name]["text"].tolist() == expected[name]["text"].tolist()
        assert (
            splits[name]["labels"].map(list).tolist() == expected[name]["labels"].map(list).tolist()
        )
    assert sum(report.texts_without_labels.values()) == int((table["labels"].map(len) == 0).sum())


# prepare


def test_rare_labels_are_dropped_and_reported_or_refused(tmp_path):
    table = tagged_table()
    table.loc[0, "labels"] = ["earn", "rare"]
    table.loc[1, "labels"] = ["rare"]
    path = tmp_path / "t.jsonl"
    write_table(table, path)
    splits, report = prepare_splits(data(path), 0, task())
    assert report.rare_labels_dropped == {"rare": 2}
    assert not any("rare" in labels for part in splits.values() for labels in part["labels"])
    story_1 = pd.concat(splits.values()).set_index("text").loc["story 1 about nothing"]
    assert list(story_1["labels"]) == []  # its only label dropped: kept as "none of them"
    with pytest.raises(BertclfError, match=r"label 'rare' is on 2 text\(s\), fewer than"):
        prepare_splits(data(path), 0, task(rare_labels="error"))


def test_same_text_with_two_label_sets_is_a_conflict(tmp_path):
    table = tagged_table()
    table.loc[5] = {"text": table.loc[4, "text"], "labels": ["crude"]}
    table.loc[6] = {"text": table.loc[4, "text"], "labels": list(table.loc[4, "labels"])}
    path = tmp_path / "t.jsonl"
    write_table(table, path)
    _, report = prepare_splits(data(path), 0, task())
    assert report.conflicting_labels_dropped == 3
    with pytest.raises(BertclfError, match=r"the same text has different labels"):
        prepare_splits(data(path, on_conflict="error"), 0, task())


def test_every_kept_label_has_a_training_example(tmp_path):
    table = tagged_table(200)
    for i, label in enumerate(["r1", "r1", "r1", "r2", "r2", "r2", "r3", "r3", "r3"]):
        table.loc[10 + i, "labels"] = [label]
    path = tmp_path / "t.jsonl"
    write_table(table, path)
    for seed in range(5):
        splits, report = prepare_splits(data(path), seed, task())
        train_labels = {x for labels in splits["train"]["labels"] for x in labels}
        assert train_labels == set(TOPICS) | {"r1", "r2", "r3"}
        for name in ("val", "test"):
            present = {x for labels in splits[name]["labels"] for x in labels}
            assert sorted(train_labels - present) == report.labels_absent_from[name]


def test_reuters_splits_keep_every_label_in_train():
    if not REUTERS.is_file():
        pytest.skip(f"{REUTERS} not found: clone the project beside ../shared to run this")
    splits, report = prepare_splits(data(REUTERS, id_column="id", name="reuters"), 42, task())
    kept = {x for part in splits.values() for labels in part["labels"] for x in labels}
    assert {x for labels in splits["train"]["labels"] for x in labels} == kept
    assert len(kept) + len(report.rare_labels_dropped) == 90
    assert all(count < 3 for count in report.rare_labels_dropped.values())
    assert 1.1 < report.label_cardinality["train"] < 1.4
    assert sum(report.split_sizes.values()) == 3019 - report.duplicates_dropped - (
        report.conflicting_labels_dropped
    )


def test_multi_label_folds_cover_train_once():
    train = tagged_table(90).assign(id=[f"t{i}" for i in range(90)])
    task = task_of(LabelMap.fit_sets(train["labels"]))
    folds = assign_folds(train, 3, 0, task)
    assert folds["id"].tolist() == train["id"].tolist()
    assert sorted(folds["fold"].value_counts().tolist()) == [30, 30, 30]
    for fold in range(3):  # stratified: every frequent topic in every held-out fold
        held_out = train[folds["fold"].to_numpy() == fold]
        assert {x for labels in held_out["labels"] for x in labels} == set(TOPICS)
    counts = fold_counts(task.targets(train), folds["fold"].to_numpy(), list(task.classes))
    assert sum(counts["0"].values()) == sum(len(x) for x in train["labels"][folds["fold"] == 0])


# label map


def test_label_map_of_label_sets_round_trips(tmp_path):
    label_map = LabelMap.fit_sets([["a", "b"], ["a"], [], ["b", "c"]])
    assert label_map.classes == ("a", "b", "c") and label_map.counts == (2, 2, 1)
    np.testing.assert_allclose(label_map.positive_weights(), [1.0, 1.0, 3.0])
    np.testing.assert_array_equal(
        label_map.encode_sets([["c"], [], ["a", "b"]]), [[0, 0, 1], [0, 0, 0], [1, 1, 0]]
    )
    assert label_map.decode_sets(np.array([[True, False, True], [False] * 3])) == [["a", "c"], []]
    label_map.save(tmp_path / "labels.json")
    saved = json.loads((tmp_path / "labels.json").read_text())
    assert saved["task"] == "multi_label" and saved["positive_weights"]["c"] == 3.0
    assert LabelMap.load(tmp_path / "labels.json") == label_map
    with pytest.raises(BertclfError, match=r"row 2: label 'd' is not one the model knows"):
        label_map.encode_sets([["a"], ["d"]])


# thresholds


def test_best_threshold_maximises_f1_between_scores():
    # cutting below 0.7 catches both positives with one false positive: F1 0.8
    assert best_threshold([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((0.4, 0.8))
    assert best_threshold([1, 1, 0, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((0.75, 1.0))
    assert best_threshold([0, 0], [0.9, 0.1]) == (0.5, 0.0)  # no positive: no evidence


def test_tuned_thresholds_fall_back_to_the_global_one_for_labels_with_few_positives():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [1, 0], [0, 0]])
    p = np.array([[0.9, 0.2], [0.6, 0.1], [0.3, 0.7], [0.2, 0.3], [0.8, 0.1], [0.55, 0.2]])
    rule = tune(y, p, ["a", "b"], task(min_val_positives=3))
    assert rule.tuned_labels == ["a"]
    assert rule.thresholds["a"] == pytest.approx(0.575)  # between 0.6 and 0.55
    assert rule.thresholds["b"] == rule.global_threshold == pytest.approx(0.575)
    fixed = tune(y, p, ["a", "b"], task(threshold=0.3))
    assert fixed.thresholds == {"a": 0.3, "b": 0.3} and fixed.method == "global"


def test_at_least_one_gives_a_silent_text_its_most_probable_label():
    p = np.array([[0.2, 0.4, 0.1], [0.9, 0.6, 0.1]])
    np.testing.assert_array_equal(
        decide(p, 0.5, at_least_one=True), [[False, True, False], [True, True, False]]
    )
    np.testing.assert_array_equal(
        decide(p, 0.5, at_least_one=False), [[False, False, False], [True, True, False]]
    )
    np.testing.assert_array_equal(
        decide(p, np.array([0.1, 0.7, 0.5]), True), [[True, False, False], [True, False, False]]
    )


def test_windows_are_pooled_per_label():
    windows = np.array([[0.9, 0.1], [0.1, 0.3], [0.5, 0.5]])
    logits = np.log(windows / (1 - windows))
    text_index = np.array([0, 0, 1])
    np.testing.assert_allclose(
        pool_windows(logits, text_index, 2, "mean", MULTI_LABEL),
        [[0.5, 0.2], [0.5, 0.5]],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        pool_windows(logits, text_index, 2, "max", MULTI_LABEL),
        [[0.9, 0.3], [0.5, 0.5]],
        rtol=1e-6,
    )


# metrics

Y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
P = np.array([[0.9, 0.1, 0.2], [0.8, 0.3, 0.1], [0.2, 0.1, 0.7], [0.6, 0.55, 0.1]])
PREDICTED = P >= 0.5  # text 2 misses label b; text 4 gets a extra


def test_multi_label_metrics_match_hand_worked_values():
    m = multi_label_metrics(Y, P, PREDICTED, ["a", "b", "c"], np.full(3, 0.5))
    # micro: tp 4 (a, a, c, b), fp 1 (a on text 4), fn 1 (b on text 2)
    assert m["micro_precision"] == pytest.approx(0.8) and m["micro_recall"] == pytest.approx(0.8)
    assert m["micro_f1"] == pytest.approx(0.8)
    # per label F1: a 2*2/(2*2+1+0)=0.8, b 2/(2+0+1)=2/3, c 1
    assert m["per_label"]["a"]["f1"] == pytest.approx(0.8)
    assert m["per_label"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 1) / 3)
    # samples F1: 1, 2/3 (1 of 2 found), 1, 2/3 (b right, a extra)
    assert m["samples_f1"] == pytest.approx((1 + 2 / 3 + 1 + 2 / 3) / 4)
    assert m["subset_accuracy"] == pytest.approx(0.5)
    assert m["hamming_loss"] == pytest.approx(2 / 12)
    assert m["label_cardinality"] == {"true": 1.25, "predicted": 1.25}
    # coverage: how far down each text's ranking its true labels reach: 1, 2 (b, second on
    # text 2), 1, 2 (b, second on text 4)
    assert m["coverage_error"] == pytest.approx((1 + 2 + 1 + 2) / 4)
    assert m["per_label"]["b"]["threshold"] == 0.5 and m["per_label"]["c"]["support"] == 1
    assert m["roc_auc"] is not None and m["average_precision"] is not None


def test_auc_is_null_where_no_label_has_both_classes():
    y = np.array([[1, 0], [1, 0]])
    m = multi_label_metrics(
        y, np.array([[0.9, 0.1], [0.8, 0.2]]), y > 0, ["a", "b"], np.full(2, 0.5)
    )
    assert m["roc_auc"] is None and m["average_precision"] is None
    assert m["per_label"]["b"]["average_precision"] is None


def test_by_length_splits_the_headline_metrics():
    long = np.array([False, True, False, False])
    m = MultiLabelMetrics().split(Y, P, PREDICTED, ["a", "b", "c"], long, np.full(3, 0.5))
    assert m["by_length"]["long"]["n"] == 1 and m["by_length"]["fits"]["n"] == 3
    assert m["by_length"]["long"]["subset_accuracy"] == 0.0
    assert m["by_length"]["fits"]["samples_f1"] == pytest.approx((1 + 1 + 2 / 3) / 3)


def test_weighted_binary_crossentropy_and_micro_f1_metric():
    import tensorflow as tf

    from bertclf.training import MicroF1, weighted_binary_crossentropy

    y = np.array([[1.0, 0.0]], dtype=np.float32)
    p = np.array([[0.8, 0.3]], dtype=np.float32)
    logits = np.log(p / (1 - p))
    loss = weighted_binary_crossentropy(np.array([4.0, 1.0]))(tf.constant(y), tf.constant(logits))
    expected = -(4 * np.log(0.8) + np.log(0.7)) / 2
    assert float(loss[0]) == pytest.approx(expected, rel=1e-5)
    metric = MicroF1()
    metric.update_state(tf.constant(Y, tf.float32), tf.constant(P - 0.5, tf.float32))  # logits
    assert float(metric.result()) == pytest.approx(0.8)


def test_multi_label_task_brings_its_recipe_and_an_override_wins(tmp_path):
    """task=multi_label brings the recipe its Reuters figures were measured with, over the
    single-label default recipe (conf/train/default.yaml, head=cls, 128 tokens); a command-line
    override wins over both."""
    import yaml
    from helpers import ROOT

    from bertclf.config import compose_params

    single_label = yaml.safe_load((ROOT / "conf/train/default.yaml").read_text())
    multi_label = {"learning_rate": 1e-4, "epochs": 3, "batch_size": 32}
    for overrides, train, pooling, max_length in (
        ([], single_label, "cls", 128),
        (["task=multi_label"], multi_label, "mean", 256),
        (
            ["task=multi_label", "train.learning_rate=3e-5", "tokenize.max_length=64"],
            {**multi_label, "learning_rate": 3e-5},
            "mean",
            64,
        ),
    ):
        compose_params(tmp_path / "params.yaml", overrides, ROOT / "conf")
        params = yaml.safe_load((tmp_path / "params.yaml").read_text())
        for key in ("learning_rate", "epochs", "batch_size"):
            assert params["train"][key] == train[key], (overrides, key)
        assert params["head"]["pooling"] == pooling, overrides
        assert params["tokenize"]["max_length"] == max_length, overrides
        assert params["task"]["type"] == ("multi_label" if overrides else "single_label")
