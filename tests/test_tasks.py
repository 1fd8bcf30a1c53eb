"""The task object, chosen once from the label map: each task's targets, columns, rows and
answers on hand-made cases."""

import numpy as np
import pandas as pd
import pytest
from helpers import section

from bertclf.errors import BertclfError
from bertclf.labels import MULTI_LABEL, LabelMap
from bertclf.tasks import MultiLabel, SingleLabel, task_of

PROBABILITIES = np.array([[0.7, 0.2, 0.1], [0.1, 0.45, 0.45]], dtype=np.float32)


def test_the_label_map_chooses_the_task():
    single = task_of(LabelMap.fit(["b", "a", "c", "a"]))
    multi = task_of(LabelMap.fit_sets([["a"], ["a", "b"], ["c"]]))
    assert isinstance(single, SingleLabel) and single.headline_metric == "accuracy"
    assert isinstance(multi, MultiLabel) and multi.headline_metric == "micro_f1"
    assert single.targets(pd.DataFrame({"label": ["c", "a"]})).tolist() == [2, 0]
    assert multi.targets(pd.DataFrame({"labels": [["b"], ["a", "c"]]})).tolist() == [
        [0, 1, 0],
        [1, 0, 1],
    ]


def test_single_label_rows_and_answers():
    task = task_of(LabelMap.fit(["a", "b", "c"]))
    rows = task.output_rows(None, PROBABILITIES, as_lists=False, separator="|")
    assert task.output_columns() == list(rows) == ["label", "probability"]
    assert rows["label"].tolist() == ["a", "b"]  # a tie goes to the first class
    assert rows["probability"].tolist() == pytest.approx([0.7, 0.45])
    answers = task.answers(None, PROBABILITIES)
    assert answers[0]["label"] == "a" and answers[0]["probability"] == pytest.approx(0.7)
    assert answers[0]["probabilities"] == pytest.approx({"a": 0.7, "b": 0.2, "c": 0.1})
    assert set(task.answer_schema()["required"]) == set(answers[0])
    with pytest.raises(BertclfError, match="'d' is not one the model knows"):
        task.column_targets(pd.Series(["a", "d"]), "in.csv", "label", "|")


def test_multi_label_rows_and_answers_follow_the_decision():
    task = task_of(LabelMap.fit_sets([["a"], ["b", "c"], ["a", "c"]]))

    def decide(probabilities):
        return probabilities >= 0.4

    rows = task.output_rows(decide, PROBABILITIES, as_lists=False, separator="|")
    assert task.output_columns() == list(rows) == ["labels", "label_probabilities"]
    assert rows["labels"] == ["a", "b|c"]
    assert rows["label_probabilities"][1] == '{"b": 0.44999998807907104, "c": 0.44999998807907104}'
    listed = task.output_rows(decide, PROBABILITIES, as_lists=True, separator="|")
    assert listed["labels"] == [["a"], ["b", "c"]]
    answers = task.answers(decide, PROBABILITIES)
    assert [a["labels"] for a in answers] == [["a"], ["b", "c"]]
    assert set(task.answer_schema()["required"]) == set(answers[0])
    targets = task.column_targets(pd.Series(["a|c", ["b"]]), "in.csv", "labels", "|")
    assert targets.tolist() == [[1, 0, 1], [0, 1, 0]]


def test_every_layer_knows_every_task():
    """Each layer keeps its per-task part keyed by the task's name: a task added to `TASKS`
    and forgotten in a layer fails here, not in the middle of a run."""
    from bertclf.evaluation import TASK_TABLES
    from bertclf.label_issues import TASK_LABEL_ISSUES
    from bertclf.metrics import TASK_METRICS
    from bertclf.model_card import TASK_CARDS
    from bertclf.report import TASK_REPORTS
    from bertclf.tasks import TASKS

    for layer in (TASK_METRICS, TASK_TABLES, TASK_CARDS, TASK_REPORTS, TASK_LABEL_ISSUES):
        assert set(layer) == set(TASKS)


def test_the_decision_rule_is_fitted_and_read_back_per_task():
    from bertclf.preprocessor import Preprocessor
    from bertclf.thresholds import MostProbable, Thresholds, fit_rule, read_rule

    def no_validation():
        raise AssertionError("a single-label rule has nothing to fit")

    classes = ["a", "b", "c"]
    single = fit_rule("single_label", classes, section("task"), no_validation)
    assert isinstance(single, MostProbable)
    assert isinstance(read_rule("single_label", single.to_json(), "calibration.json"), MostProbable)
    answers = Preprocessor(None, None).with_rule(single, classes)
    assert answers.decide(PROBABILITIES).tolist() == [0, 1]  # a tie goes to the first class

    truth = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 1], [0, 1, 0]])
    scores = np.array([[0.9, 0.2, 0.1], [0.1, 0.7, 0.6], [0.8, 0.1, 0.7], [0.3, 0.6, 0.2]])
    config = section("task", type="multi_label", threshold="tuned", min_val_positives=1)
    multi = fit_rule("multi_label", classes, config, lambda: (truth, scores))
    assert isinstance(multi, Thresholds) and multi.tuned_labels == classes
    read = read_rule("multi_label", {"temperature": None, **multi.to_json()}, "calibration.json")
    assert read == multi
    answers = Preprocessor(None, None, task=MULTI_LABEL).with_rule(read, classes)
    assert (answers.decide(scores) == truth.astype(bool)).all()
    with pytest.raises(BertclfError, match="calibration.json"):
        read_rule("multi_label", single.to_json(), "calibration.json")
