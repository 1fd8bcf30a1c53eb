"""The task object, chosen once from the label map: each task's targets, columns, rows and
answers on hand-made cases."""

import numpy as np
import pandas as pd
import pytest

from bertclf.errors import BertclfError
from bertclf.labels import LabelMap
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
