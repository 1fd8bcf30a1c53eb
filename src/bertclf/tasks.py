"""The task a model does, chosen once from labels.json (and, before labels.json exists, from
params.yaml's task.type): one class per task behind one interface, for what differs between
tasks at the front doors and in the data: the label map fitted on a training split, the
targets of a prepared split, `Classifier.predict`'s labels, the headline metric, the batch
CLI's output columns and rows, and the server's answer and its schema.

`task_of(label_map)` is the one place that turns labels.json's task into behaviour here. The
other layers keep their part of each task as a class of their own, keyed by `Task.name`
(training, thresholds, metrics, evaluation, report, model_card): docs/development.md, "Where
a change goes".
"""

import json

import numpy as np

from bertclf.labels import (
    MULTI_LABEL,
    REGRESSION,
    SCORE,
    SINGLE_LABEL,
    LabelMap,
    label_set,
    score_bins,
    score_values,
)


class Task:
    name: str
    multi_label: bool
    headline_metric: str  # the one figure a line reports (cv_summary, train_fold, baseline)

    def __init__(self, label_map: LabelMap):
        self.label_map = label_map
        self.classes = np.asarray(label_map.classes)

    @classmethod
    def fit(cls, train) -> "Task":
        """The task with its label map fitted on a prepared training split (the labels stage;
        params.yaml's task.type chose the class)."""
        raise NotImplementedError

    def targets(self, frame) -> np.ndarray:
        """The training targets of a prepared split (its `label` or `labels` column)."""
        raise NotImplementedError

    def strata(self, frame) -> np.ndarray:
        """What a split of `frame` is stratified on: the targets (regression: score bins)."""
        return self.targets(frame)

    def column_targets(self, values, source: str, column: str, separator: str) -> np.ndarray:
        """The targets of a user's label column (`bertclf evaluate`), as labels.json encodes
        them; an unknown label names its row."""
        raise NotImplementedError

    def labels(self, decided: np.ndarray):
        """What `Classifier.predict` returns from `Preprocessor.decide`'s decisions."""
        raise NotImplementedError

    def output_columns(self) -> list[str]:
        """`bertclf predict`'s columns for each text, after its id and text."""
        raise NotImplementedError

    def output_rows(self, decide, probabilities, as_lists: bool, separator: str) -> dict:
        """Those columns' values for a chunk of texts (`decide(probabilities)` decides)."""
        raise NotImplementedError

    def answers(self, decide, probabilities) -> list[dict]:
        """What the server answers for each text."""
        raise NotImplementedError

    def answer_schema(self) -> dict:
        """The JSON schema of one of those answers."""
        raise NotImplementedError

    def tensors(self, decide, probabilities) -> dict[str, np.ndarray]:
        """The server's Open Inference Protocol outputs, by name: one row per text."""
        raise NotImplementedError

    def tensor_specs(self) -> dict[str, tuple[str, list[int]]]:
        """Those outputs' datatypes and shapes (-1: the number of texts), by name."""
        raise NotImplementedError

    def describe(self) -> str:
        """The label map in a line: the labels stage's output."""
        counts = dict(zip(self.label_map.classes, self.label_map.counts, strict=True))
        kind = "labels (multi-label)" if self.multi_label else "classes"
        return f"{len(self.classes)} {kind} {counts}"

    def as_dict(self, row) -> dict[str, float]:
        return dict(zip(self.classes.tolist(), map(float, row), strict=True))


class SingleLabel(Task):
    name, multi_label, headline_metric = SINGLE_LABEL, False, "accuracy"

    @classmethod
    def fit(cls, train) -> "SingleLabel":
        return cls(LabelMap.fit(train["label"]))

    def targets(self, frame) -> np.ndarray:
        return self.label_map.encode(frame["label"])

    def column_targets(self, values, source: str, column: str, separator: str) -> np.ndarray:
        return self.label_map.encode(values.astype(str).str.strip())

    def labels(self, decided: np.ndarray) -> np.ndarray:
        return self.classes[decided]

    def output_columns(self) -> list[str]:
        return ["label", "probability"]

    def output_rows(self, decide, probabilities, as_lists: bool, separator: str) -> dict:
        return {
            "label": self.classes[probabilities.argmax(axis=1)],
            "probability": probabilities.max(axis=1),
        }

    def answers(self, decide, probabilities) -> list[dict]:
        return [
            {
                "label": str(self.classes[int(row.argmax())]),
                "probability": float(row.max()),
                "probabilities": self.as_dict(row),
            }
            for row in probabilities
        ]

    def answer_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {
                "label": {"type": "string", "enum": self.classes.tolist()},
                "probability": {"type": "number", "minimum": 0, "maximum": 1},
                "probabilities": PROBABILITIES_SCHEMA,
            },
            "required": ["label", "probability", "probabilities"],
        }

    def tensors(self, decide, probabilities) -> dict[str, np.ndarray]:
        return {
            "label": self.classes[probabilities.argmax(axis=1)].astype(object),
            "probabilities": probabilities.astype(np.float32),
        }

    def tensor_specs(self) -> dict[str, tuple[str, list[int]]]:
        return {"label": ("BYTES", [-1]), "probabilities": ("FP32", [-1, len(self.classes)])}


class MultiLabel(Task):
    name, multi_label, headline_metric = MULTI_LABEL, True, "micro_f1"

    @classmethod
    def fit(cls, train) -> "MultiLabel":
        return cls(LabelMap.fit_sets(train["labels"]))

    def targets(self, frame) -> np.ndarray:
        return self.label_map.encode_sets(frame["labels"])

    def column_targets(self, values, source: str, column: str, separator: str) -> np.ndarray:
        sets = [label_set(v, row, source, column, separator) for row, v in enumerate(values)]
        return self.label_map.encode_sets(sets)

    def labels(self, decided: np.ndarray) -> list[list[str]]:
        return self.label_map.decode_sets(decided)

    def output_columns(self) -> list[str]:
        return ["labels", "label_probabilities"]

    def output_rows(self, decide, probabilities, as_lists: bool, separator: str) -> dict:
        decided = decide(probabilities)
        labels = self.label_map.decode_sets(decided)
        return {
            "labels": labels if as_lists else [separator.join(x) for x in labels],
            "label_probabilities": [
                json.dumps({c: float(p) for c, p in zip(self.classes[d], row[d], strict=True)})
                for d, row in zip(decided, probabilities, strict=True)
            ],
        }

    def answers(self, decide, probabilities) -> list[dict]:
        decided = self.label_map.decode_sets(decide(probabilities))
        return [
            {"labels": labels, "probabilities": self.as_dict(row)}
            for labels, row in zip(decided, probabilities, strict=True)
        ]

    def answer_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {
                "labels": {"type": "array", "items": {"type": "string"}},
                "probabilities": PROBABILITIES_SCHEMA,
            },
            "required": ["labels", "probabilities"],
        }

    def tensors(self, decide, probabilities) -> dict[str, np.ndarray]:
        return {
            "probabilities": probabilities.astype(np.float32),
            "predicted": np.asarray(decide(probabilities), dtype=bool),
        }

    def tensor_specs(self) -> dict[str, tuple[str, list[int]]]:
        width = [-1, len(self.classes)]
        return {"probabilities": ("FP32", width), "predicted": ("BOOL", width)}


class Regression(Task):
    """A number per text. Its "probabilities" are the model's one output, the score: one
    column, so that every path that carries probabilities carries scores unchanged."""

    name, multi_label, headline_metric = REGRESSION, False, "pearson"

    @classmethod
    def fit(cls, train) -> "Regression":
        return cls(LabelMap.fit_scores(train[SCORE]))

    def targets(self, frame) -> np.ndarray:
        return frame[SCORE].to_numpy(dtype=np.float32)

    def strata(self, frame) -> np.ndarray:
        return score_bins(frame[SCORE], len(frame))

    def describe(self) -> str:
        summary = ", ".join(f"{k} {v:g}" for k, v in self.label_map.scores.items())
        return f"a score per text (regression), in training: {summary}"

    def column_targets(self, values, source: str, column: str, separator: str) -> np.ndarray:
        return score_values(values, source, column).astype(np.float32)

    def labels(self, decided: np.ndarray) -> np.ndarray:
        return np.asarray(decided, dtype=np.float32).reshape(-1)

    def output_columns(self) -> list[str]:
        return [SCORE]

    def output_rows(self, decide, probabilities, as_lists: bool, separator: str) -> dict:
        return {SCORE: self.labels(probabilities)}

    def answers(self, decide, probabilities) -> list[dict]:
        return [{SCORE: float(x)} for x in self.labels(probabilities)]

    def answer_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {SCORE: {"type": "number"}},
            "required": [SCORE],
        }

    def tensors(self, decide, probabilities) -> dict[str, np.ndarray]:
        return {SCORE: self.labels(probabilities)}

    def tensor_specs(self) -> dict[str, tuple[str, list[int]]]:
        return {SCORE: ("FP32", [-1])}


PROBABILITIES_SCHEMA = {"type": "object", "additionalProperties": {"type": "number"}}
TASKS = {task.name: task for task in (SingleLabel, MultiLabel, Regression)}


def task_of(label_map: LabelMap) -> Task:
    """The task labels.json names (a single-label map names none)."""
    return TASKS[label_map.task](label_map)
