"""Decisions: the rule that turns a text's probabilities into its answer, chosen on the
validation split (`fit_rule`, by `calibrate`, the baseline and each fold) and read back from
calibration.json (`read_rule`). A single-label model answers its most probable class
(`MostProbable`, nothing to fit); a multi-label model each label that reaches its threshold.

A label is predicted when its probability reaches its threshold. `tune` chooses, for each
label with enough positives in validation, the threshold that maximises that label's F1 there;
the other labels share one global threshold, the one that maximises micro-F1 over all labels.
"""

from dataclasses import asdict, dataclass, fields

import numpy as np

from bertclf.config import TaskConfig
from bertclf.errors import BertclfError
from bertclf.files import read_json
from bertclf.labels import MULTI_LABEL, REGRESSION


def best_threshold(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The threshold that maximises F1 of `scores >= threshold` against `y_true` (0/1), and
    that F1. Thresholds sit halfway between neighbouring distinct scores, so that a score a
    float rounding away from its neighbour still falls on the side it was tuned on; on a tie,
    the highest threshold wins. With no positive, 0.5 and an F1 of 0."""
    y_true = np.asarray(y_true).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = int(y_true.sum())
    if positives == 0 or len(scores) == 0:
        return 0.5, 0.0
    order = np.argsort(-scores, kind="stable")
    sorted_scores, true_positives = scores[order], np.cumsum(y_true[order])
    # cutting after position k (predict the first k+1): only where the next score is lower
    cuts = np.flatnonzero(np.append(sorted_scores[:-1] > sorted_scores[1:], True))
    f1 = 2 * true_positives[cuts] / (cuts + 1 + positives)
    best = cuts[int(np.argmax(f1))]
    below = sorted_scores[best + 1] if best + 1 < len(sorted_scores) else 0.0
    return float((sorted_scores[best] + below) / 2), float(f1.max())


@dataclass
class Thresholds:
    """What `calibrate` writes to models/calibration.json for a multi-label model (format 7's
    also held the task, which labels.json alone holds: read and ignored, if present)."""

    method: str  # "tuned" or "global"
    global_threshold: float
    thresholds: dict[str, float]  # every label, in the label map's order
    tuned_labels: list[str]  # those with their own threshold; the others use the global one
    at_least_one: bool
    min_val_positives: int

    def vector(self, classes: list[str]) -> np.ndarray:
        return np.asarray([self.thresholds[c] for c in classes], dtype=np.float32)

    def to_json(self) -> dict:
        return asdict(self)

    def decide(self, probabilities: np.ndarray, classes: list[str]) -> np.ndarray:
        return decide(probabilities, self.vector(classes), self.at_least_one)

    def describe(self) -> str:
        return (
            f"{len(self.tuned_labels)} of {len(self.thresholds)} labels with their own "
            f"threshold; global threshold {self.global_threshold:.3f}"
        )

    @classmethod
    def from_json(cls, data: dict, source: str) -> "Thresholds":
        """The thresholds of calibration.json (which holds the temperature too), each key
        checked: a NaN threshold answered no label for every text, and "no" counted as true."""
        names = {field.name for field in fields(cls)}
        if not isinstance(data, dict):
            raise BertclfError(f"{source}: not a valid calibration file (not a JSON object)")
        try:
            thresholds = cls(**{key: value for key, value in data.items() if key in names})
        except TypeError as error:
            raise BertclfError(f"{source}: not a valid calibration file ({error})") from None

        def bad(key: str, expected: str):
            return BertclfError(f"{source}: {key} is {data.get(key)!r}; expected {expected}")

        if not isinstance(thresholds.at_least_one, bool):
            raise bad("at_least_one", "true or false")
        if thresholds.method not in ("tuned", "global"):
            raise bad("method", "'tuned' or 'global'")
        if not _probability(thresholds.global_threshold):
            raise bad("global_threshold", "a number from 0 to 1")
        if not isinstance(thresholds.thresholds, dict) or not all(
            isinstance(k, str) and _probability(v) for k, v in thresholds.thresholds.items()
        ):
            raise bad("thresholds", "an object of label: a number from 0 to 1")
        temperature = data.get("temperature")
        values = temperature if isinstance(temperature, list) else [temperature]
        if temperature is not None and not all(_positive(t) for t in values):
            raise bad("temperature", "null, or a finite number above 0 (or a list of them)")
        return thresholds

    def check_labels(self, classes: list[str], source: str) -> None:
        """One threshold per label of the model, and none for a label it does not have."""
        missing = [c for c in classes if c not in self.thresholds]
        extra = sorted(set(self.thresholds) - set(classes))
        if missing or extra:
            which = (
                f"no threshold for {missing[0]!r}" if missing else f"a threshold for {extra[0]!r}"
            )
            raise BertclfError(
                f"{source}: thresholds has {which}, which is not one per label of labels.json"
            )


def _probability(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _positive(value) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and np.isfinite(value)
        and value > 0
    )


def tune(
    y_true: np.ndarray, probabilities: np.ndarray, classes: list[str], task: TaskConfig
) -> Thresholds:
    """Thresholds from validation labels (multi-hot) and probabilities, as `task` says."""
    y_true = np.asarray(y_true) > 0.5
    if task.threshold != "tuned":
        value = float(task.threshold)
        return Thresholds(
            "global",
            value,
            dict.fromkeys(classes, value),
            [],
            task.at_least_one,
            task.min_val_positives,
        )
    global_threshold, _ = best_threshold(y_true, probabilities)
    thresholds, tuned = {}, []
    for j, name in enumerate(classes):
        if y_true[:, j].sum() >= task.min_val_positives:
            thresholds[name] = best_threshold(y_true[:, j], probabilities[:, j])[0]
            tuned.append(name)
        else:
            thresholds[name] = global_threshold
    return Thresholds(
        "tuned",
        global_threshold,
        thresholds,
        tuned,
        task.at_least_one,
        task.min_val_positives,
    )


def decide(
    probabilities: np.ndarray, thresholds: np.ndarray | float, at_least_one: bool
) -> np.ndarray:
    """Which labels each text gets (bool): those whose probability reaches the threshold; with
    `at_least_one`, a text that reaches none gets its most probable label."""
    predicted = probabilities >= np.asarray(thresholds, dtype=probabilities.dtype)
    if at_least_one and len(probabilities):
        empty = ~predicted.any(axis=1)
        predicted[empty, probabilities[empty].argmax(axis=1)] = True
    return predicted


def decide_in_graph(probabilities, thresholds, at_least_one: bool):
    """`decide` in TensorFlow ops (`thresholds` a constant, one per label)."""
    import tensorflow as tf

    predicted = probabilities >= thresholds
    if not at_least_one:
        return predicted
    top = tf.one_hot(tf.argmax(probabilities, axis=1), tf.shape(probabilities)[1]) > 0
    none = ~tf.reduce_any(predicted, axis=1, keepdims=True)
    return predicted | (top & none)


class MostProbable:
    """A single-label model's rule: the most probable class, which a temperature never
    changes; calibration.json says so in words."""

    at_least_one = True

    def vector(self, classes: list[str]) -> None:
        return None

    def decide(self, probabilities: np.ndarray, classes: list[str]) -> np.ndarray:
        return np.asarray(probabilities).argmax(axis=1)

    def to_json(self) -> dict:
        return {"rule": "most probable class"}

    def describe(self) -> str:
        return "the most probable class"


class TheScore(MostProbable):
    """A regression model's rule: its answer is the score itself."""

    def decide(self, probabilities: np.ndarray, classes: list[str]) -> np.ndarray:
        return np.asarray(probabilities, dtype=np.float32).reshape(-1)

    def to_json(self) -> dict:
        return {"rule": "the score"}

    def describe(self) -> str:
        return "the score itself"


def fit_rule(task_name: str, classes: list[str], task: TaskConfig, validation):
    """The decision rule of the task labels.json names, chosen on validation;
    `validation()` gives (truth, probabilities) and is called only by a rule that has
    something to fit."""
    if task_name != MULTI_LABEL:
        return TheScore() if task_name == REGRESSION else MostProbable()
    truth, probabilities = validation()
    return tune(truth, probabilities, classes, task)


def read_rule(task_name: str, calibration: dict, source: str):
    """The rule calibration.json holds, each key checked."""
    if task_name == MULTI_LABEL:
        return Thresholds.from_json(calibration, source)
    return TheScore() if task_name == REGRESSION else MostProbable()


def load_thresholds(path) -> Thresholds:
    return Thresholds.from_json(read_json(path), str(path))
