"""Regression's data, label map, task, training loss and metrics on hand-made cases (the DAG,
the package and the front doors: tests/test_pairs_pipeline.py, a regression of text pairs)."""

import numpy as np
import pandas as pd
import pytest
from helpers import section

from bertclf.errors import BertclfError
from bertclf.labels import SCORE, LabelMap, score_values
from bertclf.metrics import metrics_of
from bertclf.prepare import prepare_splits
from bertclf.tables import write_table
from bertclf.tasks import task_of


def scored_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 5, n).round(2)
    return pd.DataFrame({"text": [f"text number {i}" for i in range(n)], "score": scores})


def data(path, **overrides):
    values = {"name": "t", "path": str(path), "text_column": "text", "label_column": "score"}
    return section("data", **{"test_path": None, "id_column": None, **values, **overrides})


def test_scores_are_numbers_or_the_row_is_named():
    assert score_values(pd.Series([1, "2.5", 3.0]), "t.csv", "score").tolist() == [1, 2.5, 3]
    for bad in ("high", "", None, float("nan"), float("inf"), True):
        with pytest.raises(BertclfError, match=r"t\.csv: row 2 of column 'score' holds"):
            score_values(pd.Series([1.0, bad]), "t.csv", "score")


def test_label_map_keeps_the_scores_summary(tmp_path):
    label_map = LabelMap.fit_scores([1.0, 2.0, 3.0])
    assert label_map.classes == (SCORE,) and label_map.task == "regression"
    summary = {"mean": 2.0, "sd": 0.8165, "min": 1.0, "max": 3.0}
    assert label_map.scores == pytest.approx(summary, rel=1e-3)
    label_map.save(tmp_path / "labels.json")
    assert LabelMap.load(tmp_path / "labels.json") == label_map
    with pytest.raises(BertclfError, match="fewer than two distinct values"):
        LabelMap.fit_scores([2.0, 2.0])


def test_prepare_splits_on_score_bins_and_averages_conflicts(tmp_path):
    table = scored_table()
    table = pd.concat([table, pd.DataFrame({"text": ["text number 0"], "score": [4.9]})])
    path = tmp_path / "scores.csv"
    write_table(table, path)
    task = section("task", type="regression")
    splits, report = prepare_splits(data(path, on_conflict="mean"), 0, task)
    assert report.conflicting_scores_averaged == 1 and report.duplicates_dropped == 1
    every = pd.concat(splits.values())
    first = every.loc[every["text"] == "text number 0", SCORE]
    assert first.tolist() == pytest.approx([(table[SCORE].iloc[0] + 4.9) / 2])
    assert sorted(report.split_sizes.values()) == [20, 40, 140]
    assert set(splits["train"].columns) == {"id", "text", SCORE}
    for part in splits.values():  # stratified: every split spans the range
        assert part[SCORE].min() < 1 and part[SCORE].max() > 4
    assert report.score_summary["test"]["n"] == 40
    with pytest.raises(BertclfError, match="labels cannot be averaged"):
        single = tmp_path / "labels.csv"
        write_table(pd.DataFrame({"text": ["a", "b"], "score": ["x", "y"]}), single)
        prepare_splits(data(single, on_conflict="mean"), 0, section("task"))
    bad = tmp_path / "bad.csv"
    write_table(pd.DataFrame({"text": ["a", "b"], "score": [1.0, "n/a"]}), bad)
    with pytest.raises(BertclfError, match=r"bad\.csv: row 2 of column 'score' holds 'n/a'"):
        prepare_splits(data(bad), 0, task)


def test_regression_task_answers_scores():
    task = task_of(LabelMap.fit_scores([0.0, 5.0]))
    scores = np.array([[1.5], [4.25]], dtype=np.float32)
    assert task.targets(pd.DataFrame({SCORE: [1.0, 2.0]})).dtype == np.float32
    assert task.output_rows(None, scores, False, "|")[SCORE].tolist() == [1.5, 4.25]
    answers = task.answers(None, scores)
    assert answers == [{SCORE: 1.5}, {SCORE: 4.25}]
    assert set(task.answer_schema()["required"]) == set(answers[0])
    with pytest.raises(BertclfError, match=r"in\.csv: row 1 of column 'y'"):
        task.column_targets(pd.Series(["high"]), "in.csv", "y", "|")


def test_regression_metrics_by_length():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    scores = np.array([[1.1], [1.9], [3.2], [3.8]])
    long = np.array([False, False, True, True])
    metrics = metrics_of("regression").split(y, scores, scores, ["score"], long)
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean([0.01, 0.01, 0.04, 0.04])))
    assert metrics["mae"] == pytest.approx(0.15)
    assert metrics["pearson"] == pytest.approx(np.corrcoef(y, scores[:, 0])[0, 1])
    assert metrics["spearman"] == pytest.approx(1.0)
    assert metrics["by_length"]["long"]["n"] == 2


def test_squared_error_loss_and_its_metric_agree():
    import tensorflow as tf

    from bertclf.training import training_of

    label_map = LabelMap.fit_scores([0.0, 2.0])
    task = training_of(label_map)
    loss, metric = task.loss_and_metric(label_map, section("train"))
    y = np.array([1.0, 3.0], dtype=np.float32)
    outputs = np.array([[1.5], [2.0]], dtype=np.float32)
    assert loss(tf.constant(y), tf.constant(outputs)).numpy().tolist() == [0.25, 1.0]
    metric.update_state(y[:, None], outputs)
    counts = [c.numpy() for c in task.metric_counts(tf.constant(y), tf.constant(outputs))]
    assert task.metric_value(counts, 2)["rmse"] == pytest.approx(float(metric.result()))
    assert task.output_bias(label_map).tolist() == [1.0]
