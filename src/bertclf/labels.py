"""The one place that knows the label order: a JSON label map, fitted on train only; and how
a multi-label cell is read as a set of labels (`label_set`).

It replaces the seed project's pickled OneHotEncoder.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils.class_weight import compute_class_weight

from bertclf.errors import BertclfError
from bertclf.files import read_json, write_json

SINGLE_LABEL, MULTI_LABEL, REGRESSION = "single_label", "multi_label", "regression"
SCORE = "score"  # a regression model's one output, and its prepared splits' target column


@dataclass(frozen=True)
class LabelMap:
    classes: tuple[str, ...]
    counts: tuple[int, ...]  # training texts of each class (multi-label: that carry the label)
    task: str = SINGLE_LABEL
    n_texts: int | None = None  # multi-label and regression: training texts
    scores: dict | None = None  # regression: the training targets' mean, sd, min and max

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI_LABEL

    @classmethod
    def fit_scores(cls, scores: Iterable[float]) -> "LabelMap":
        """Regression: one output, the score; the training targets' summary kept for the
        output's starting bias and the reports."""
        scores = np.asarray(list(scores), dtype=np.float64)
        if len(np.unique(scores)) < 2:
            raise BertclfError("the training scores hold fewer than two distinct values")
        summary = {
            "mean": float(scores.mean()),
            "sd": float(scores.std()),
            "min": float(scores.min()),
            "max": float(scores.max()),
        }
        return cls((SCORE,), (len(scores),), REGRESSION, len(scores), summary)

    @classmethod
    def fit_sets(cls, label_sets: Iterable[Sequence[str]]) -> "LabelMap":
        """Multi-label: one sigmoid per label seen in training."""
        label_sets = list(label_sets)
        counts = Counter(label for labels in label_sets for label in labels)
        if len(counts) < 2:
            raise BertclfError("the training labels hold fewer than two labels")
        classes = tuple(sorted(counts))
        return cls(classes, tuple(counts[c] for c in classes), MULTI_LABEL, len(label_sets))

    def encode_sets(self, label_sets: Iterable[Sequence[str]]) -> np.ndarray:
        """Multi-hot rows (float32, one column per label); a label the model does not know is
        refused naming the row."""
        index = {name: i for i, name in enumerate(self.classes)}
        label_sets = list(label_sets)
        matrix = np.zeros((len(label_sets), len(self.classes)), dtype=np.float32)
        for row, labels in enumerate(label_sets):
            for label in labels:
                if label not in index:
                    raise BertclfError(
                        f"row {row + 1}: label {label!r} is not one the model knows "
                        f"({', '.join(self.classes)})"
                    )
                matrix[row, index[label]] = 1.0
        return matrix

    def decode_sets(self, predicted: np.ndarray) -> list[list[str]]:
        """Each row's labels from a boolean matrix (one column per label)."""
        return [[self.classes[j] for j in np.flatnonzero(row)] for row in predicted]

    def positive_weights(self) -> np.ndarray:
        """Multi-label: negatives over positives of each label in training (the weight that
        balances a label's positive and negative terms of the binary cross-entropy)."""
        counts = np.asarray(self.counts, dtype=np.float64)
        return (self.n_texts - counts) / counts

    def prior_logits(self) -> np.ndarray:
        """Multi-label: the log-odds of each label's share of training texts. As the output
        bias at the start, every sigmoid begins at its label's base rate rather than at 0.5, so
        the first steps do not spend the encoder's gradients on pushing 90 outputs down."""
        share = np.clip(np.asarray(self.counts) / self.n_texts, 1e-4, 1 - 1e-4)
        return np.log(share / (1 - share))

    @classmethod
    def fit(cls, labels: Iterable[str]) -> "LabelMap":
        counts = Counter(labels)  # (not NumPy's str arrays: they drop trailing NUL characters)
        if len(counts) < 2:
            raise BertclfError("the training labels hold fewer than two classes")
        classes = tuple(sorted(counts))
        return cls(classes, tuple(counts[c] for c in classes))

    def encode(self, labels: Iterable[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.classes)}
        ids = []
        for row, label in enumerate(labels):
            if label not in index:
                raise BertclfError(
                    f"row {row + 1}: label {label!r} is not one the model knows "
                    f"({', '.join(self.classes)})"
                )
            ids.append(index[label])
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        return [self.classes[int(i)] for i in ids]

    def class_weights(self) -> dict[int, float]:
        """Balanced weights (n_samples / (n_classes * count)), as scikit-learn computes them."""
        y = np.repeat(np.arange(len(self.classes)), self.counts)
        weights = compute_class_weight("balanced", classes=np.arange(len(self.classes)), y=y)
        return {i: float(w) for i, w in enumerate(weights)}

    def to_json(self) -> dict:
        if self.task == REGRESSION:
            return {
                "task": self.task,
                "classes": list(self.classes),
                "n_texts": self.n_texts,
                "counts": dict(zip(self.classes, self.counts, strict=True)),
                "scores": self.scores,
            }
        if self.multi_label:
            return {
                "task": self.task,
                "classes": list(self.classes),
                "n_texts": self.n_texts,
                "counts": dict(zip(self.classes, self.counts, strict=True)),
                "positive_weights": dict(
                    zip(self.classes, self.positive_weights().round(6).tolist(), strict=True)
                ),
            }
        return {
            "classes": list(self.classes),
            "counts": dict(zip(self.classes, self.counts, strict=True)),
            "class_weights": {self.classes[i]: w for i, w in self.class_weights().items()},
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "LabelMap":
        try:
            data = read_json(path)
            classes = tuple(data["classes"])
            counts = tuple(int(data["counts"][c]) for c in classes)
            task = data.get("task", SINGLE_LABEL)  # single-label maps do not say
            n_texts = int(data["n_texts"]) if task in (MULTI_LABEL, REGRESSION) else None
            scores = None
            if task == REGRESSION:
                scores = {key: float(data["scores"][key]) for key in ("mean", "sd", "min", "max")}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BertclfError(f"{path}: not a valid label map ({error})") from None
        if task not in (SINGLE_LABEL, MULTI_LABEL, REGRESSION):
            raise BertclfError(f"{path}: not a valid label map (task {task!r})")
        if scores is not None and not all(np.isfinite(list(scores.values()))):
            raise BertclfError(f"{path}: not a valid label map (a score summary is not finite)")
        return cls(classes, counts, task, n_texts, scores)


def label_set(value, row: int, path: str, column: str, separator: str) -> tuple[str, ...]:
    """One multi-label cell as a sorted tuple of labels: a list (JSONL, Parquet) or a
    separator-joined string (CSV, TSV, XLSX). Empty means "none of the labels"."""
    where = f"{path}: row {row + 1} of column '{column}'"
    if value is None or (not isinstance(value, str | list) and _is_scalar_missing(value)):
        return ()
    if isinstance(value, str):
        parts = [] if value.strip() == "" else value.split(separator)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        parts = [str(value)]  # CSV has no types: a cell "3" is read as a number
    elif hasattr(value, "__iter__") and not isinstance(value, dict | bytes):
        parts = list(value)
        for part in parts:
            if not isinstance(part, str):
                raise BertclfError(f"{where}: label {part!r} is not a string")
            if separator in part:
                raise BertclfError(
                    f"{where}: label {part!r} holds the separator {separator!r} "
                    "(task.label_separator), so it could not be written to CSV, TSV or XLSX"
                )
    else:
        raise BertclfError(f"{where}: {value!r} is neither a list of labels nor text")
    labels = [part.strip() for part in parts]
    if "" in labels:
        raise BertclfError(f"{where}: an empty label in {value!r}")
    return tuple(sorted(set(labels)))


def _is_scalar_missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def score_values(column: pd.Series, path: str, name: str) -> np.ndarray:
    """A regression target column as float64; a cell that is not a finite number (text, a
    boolean, empty, NaN or infinite) is refused naming its row."""
    values = np.empty(len(column), dtype=np.float64)
    for row, value in enumerate(column):
        number = None
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool | np.bool_
        ):
            number = float(value)
        elif isinstance(value, str) and value.strip():
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not np.isfinite(number):
            raise BertclfError(
                f"{path}: row {row + 1} of column '{name}' holds {value!r}, not a finite "
                "number; a regression target must be one"
            )
        values[row] = number
    return values


SCORE_BINS = 5  # the score bins a regression split is stratified on


def score_bins(scores: pd.Series, n: int) -> np.ndarray:
    """Equal-count bins of the scores (ties broken by row order), as strings; fewer bins
    where there are fewer than 10 rows a bin."""
    bins = max(1, min(SCORE_BINS, n // 10))
    ranks = scores.rank(method="first").to_numpy()
    return np.minimum((ranks - 1) * bins // n, bins - 1).astype(int).astype(str)
