"""Classification metrics, scikit-learn's where it has the function."""

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)
from sklearn.preprocessing import label_binarize

from bertclf.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL

TOP_K = 3  # top_k_accuracy is reported where there are more than five classes
CALIBRATION_BINS = 10


# What a summary shows of a split's metrics: by length, the model card, `bertclf evaluate`.
HEADLINE_KEYS = ("n", "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1")


def standard_error(accuracy: float, n: int) -> float:
    """One standard error of an accuracy measured on n texts (binomial)."""
    return (accuracy * (1 - accuracy) / max(n, 1)) ** 0.5


def lift_within_noise(test: dict, base: dict) -> str | None:
    """Single-label: a sentence when the model's accuracy lift over the baseline is within two
    standard errors of their difference (binomial, as if independent), else None."""
    if "accuracy" not in test or "accuracy" not in base:
        return None
    lift = test["accuracy"] - base["accuracy"]
    error = (
        standard_error(test["accuracy"], test["n"]) ** 2
        + standard_error(base["accuracy"], base.get("n", test["n"])) ** 2
    ) ** 0.5
    if abs(lift) >= 2 * error:
        return None
    return (
        f"the accuracy lift over the baseline ({lift:+.3f}) is within two standard errors "
        f"({2 * error:.3f}) on {test['n']} test texts: these figures cannot tell the two apart"
    )


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> dict:
    """Every single-label metric of reports/metrics.json for one split, from true ids and
    probabilities (the prediction is the most probable class)."""
    y_true = np.asarray(y_true)
    labels = np.arange(len(classes))
    y_pred = probabilities.argmax(axis=1)
    metrics: dict = {"n": int(len(y_true)), "accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted", "micro"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        metrics[f"{average}_precision"] = float(p)
        metrics[f"{average}_recall"] = float(r)
        metrics[f"{average}_f1"] = float(f)
    metrics["log_loss"] = float(log_loss(y_true, probabilities, labels=labels))
    metrics["roc_auc"] = _defined(
        lambda: roc_auc_score(
            y_true,
            probabilities[:, 1] if len(classes) == 2 else probabilities,
            multi_class="ovr",
            labels=labels,
        )
    )
    metrics["average_precision"] = _defined(
        lambda: average_precision_score(
            y_true == 1 if len(classes) == 2 else label_binarize(y_true, classes=labels),
            probabilities[:, 1] if len(classes) == 2 else probabilities,
            average="macro",
        )
    )
    if len(classes) > 5:
        metrics["top_k_accuracy"] = float(
            top_k_accuracy_score(y_true, probabilities, k=TOP_K, labels=labels)
        )
    metrics["ece"] = expected_calibration_error(y_true, probabilities)
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    metrics["per_class"] = {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, name in enumerate(classes)
    }
    return metrics


def score_name(figures: dict) -> str:
    """The task's figure a runtime is gated on in a package's checks (accuracy, micro-F1 or
    Pearson; `openvino_build.compare`, `compare_scores`)."""
    return next(key for key in ("accuracy", "micro_f1", "pearson") if key in figures)


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _defined(compute) -> float | None:
    """None where the metric is undefined on this split (e.g. a class absent from it): scikit-learn
    then warns and returns nan, or a made-up value such as a recall of one."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(compute())
        except ValueError:
            return None
    return None if caught or np.isnan(value) else value


def calibration_bins(
    y_true: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS
) -> pd.DataFrame:
    """Confidence (the top probability) against accuracy in equal-width bins (lo, hi]."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append(
                {
                    "bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                    "count": int(members.sum()),
                }
            )
    return pd.DataFrame(rows, columns=["bin", "confidence", "accuracy", "count"])


def expected_calibration_error(
    y_true: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """Sum over bins of |accuracy - confidence|, weighted by the bin's share of texts.

    scikit-learn has no multi-class ECE (calibration_curve is binary), so it is computed here.
    """
    table = calibration_bins(y_true, probabilities, bins)
    weights = table["count"] / len(y_true)
    return float((weights * (table["accuracy"] - table["confidence"]).abs()).sum())


def probability_scores(y_true: np.ndarray, probabilities: np.ndarray, multi_label: bool) -> dict:
    """How good the probabilities are as probabilities: log loss and expected calibration error
    (single-label: of the top probability; multi-label: of every (text, label) probability)."""
    if not multi_label:
        labels = np.arange(probabilities.shape[1])
        return {
            "log_loss": float(log_loss(y_true, probabilities, labels=labels)),
            "ece": expected_calibration_error(y_true, probabilities),
        }
    truth = (np.asarray(y_true) > 0.5).ravel()
    table = probability_calibration_bins(y_true, probabilities)
    weights = table["count"] / max(truth.size, 1)
    return {
        "log_loss": float(log_loss(truth, np.asarray(probabilities).ravel(), labels=[0, 1])),
        "ece": float((weights * (table["accuracy"] - table["confidence"]).abs()).sum()),
    }


# Multi-label: what a summary shows, and every metric of reports/metrics.json.
MULTI_LABEL_HEADLINE_KEYS = (
    "n",
    "micro_f1",
    "macro_f1",
    "samples_f1",
    "subset_accuracy",
    "micro_precision",
    "micro_recall",
)


def multi_label_metrics(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    predicted: np.ndarray,
    classes: list[str],
    thresholds: np.ndarray,
) -> dict:
    """From multi-hot truth, per-label probabilities and the predicted label sets (bool)."""
    from sklearn.metrics import (
        coverage_error,
        hamming_loss,
        label_ranking_average_precision_score,
    )

    y_true = np.asarray(y_true) > 0.5
    predicted = np.asarray(predicted, dtype=bool)
    metrics: dict = {"n": int(len(y_true))}
    for average in ("micro", "macro", "weighted", "samples"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, predicted, average=average, zero_division=0
        )
        metrics[f"{average}_precision"] = float(p)
        metrics[f"{average}_recall"] = float(r)
        metrics[f"{average}_f1"] = float(f)
    metrics["subset_accuracy"] = float(accuracy_score(y_true, predicted))
    metrics.update(probability_scores(y_true, probabilities, multi_label=True))
    metrics["hamming_loss"] = float(hamming_loss(y_true, predicted))
    metrics["label_ranking_average_precision"] = float(
        label_ranking_average_precision_score(y_true, probabilities)
    )
    metrics["coverage_error"] = float(coverage_error(y_true, probabilities))
    both = (y_true.any(axis=0)) & (~y_true.all(axis=0))  # labels with both classes present
    metrics["roc_auc"] = (
        _defined(lambda: roc_auc_score(y_true[:, both], probabilities[:, both], average="macro"))
        if both.any()
        else None
    )
    metrics["average_precision"] = (
        _defined(
            lambda: average_precision_score(
                y_true[:, both], probabilities[:, both], average="macro"
            )
        )
        if both.any()
        else None
    )
    p, r, f, s = precision_recall_fscore_support(y_true, predicted, average=None, zero_division=0)
    metrics["per_label"] = {
        name: {
            "precision": float(p[j]),
            "recall": float(r[j]),
            "f1": float(f[j]),
            "support": int(s[j]),
            "average_precision": float(average_precision_score(y_true[:, j], probabilities[:, j]))
            if both[j]
            else None,
            "threshold": float(thresholds[j]),
        }
        for j, name in enumerate(classes)
    }
    metrics["label_cardinality"] = {
        "true": float(y_true.sum(axis=1).mean()) if len(y_true) else 0.0,
        "predicted": float(predicted.sum(axis=1).mean()) if len(y_true) else 0.0,
    }
    return metrics


def probability_calibration_bins(
    y_true: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS
) -> pd.DataFrame:
    """Multi-label reliability: every (text, label) probability in equal-width bins against the
    share of those pairs whose label is true. Columns as `calibration_bins`."""
    scores = np.asarray(probabilities, dtype=np.float64).ravel()
    truth = (np.asarray(y_true) > 0.5).ravel()
    index = np.clip(np.ceil(scores * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append(
                {
                    "bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
                    "confidence": float(scores[members].mean()),
                    "accuracy": float(truth[members].mean()),
                    "count": int(members.sum()),
                }
            )
    return pd.DataFrame(rows, columns=["bin", "confidence", "accuracy", "count"])


class TaskMetrics:
    """A task's metrics of one split, behind one interface: `split` gives every metric with
    `by_length` (the headline ones for texts that fit the window and for longer ones), from
    the truth, the probabilities, the decisions (`Preprocessor.decide`) and the thresholds
    (multi-label)."""

    headline_keys: tuple[str, ...]  # what a summary shows: by length, the card, `evaluate`
    per_label_key: str  # the metrics' table of one row per class or label
    multi_label: bool

    def compute(self, y_true, probabilities, decided, classes, thresholds) -> dict:
        raise NotImplementedError

    def split(
        self,
        y_true: np.ndarray,
        probabilities: np.ndarray,
        decided: np.ndarray,
        classes: list[str],
        long: np.ndarray,
        thresholds: np.ndarray | None = None,
    ) -> dict:
        y_true, decided = np.asarray(y_true), np.asarray(decided)
        metrics = self.compute(y_true, probabilities, decided, classes, thresholds)
        parts = {}
        for name, rows in (("fits", ~long), ("long", long)):
            if not rows.any():
                parts[name] = {"n": 0}
                continue
            part = self.compute(
                y_true[rows], probabilities[rows], decided[rows], classes, thresholds
            )
            parts[name] = {key: part[key] for key in self.headline_keys}
        metrics["by_length"] = parts
        return metrics

    def probability_scores(self, y_true: np.ndarray, probabilities: np.ndarray) -> dict:
        return probability_scores(y_true, probabilities, self.multi_label)

    def summary(self, metrics: dict) -> str:
        """A line's worth of a split's metrics: its first three headline figures and n;
        what the temperature changed, where there is one."""
        figures = ", ".join(f"{key} {_figure(metrics[key])}" for key in self.headline_keys[1:4])
        line = f"{figures} (n={metrics['n']})"
        if metrics.get("ece_before_temperature") is not None:
            line += (
                f"; ECE {metrics['ece_before_temperature']:.4f} -> {metrics['ece']:.4f} and log "
                f"loss {metrics['log_loss_before_temperature']:.4f} -> {metrics['log_loss']:.4f}"
            )
        return line

    def reliability(self, y_true: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
        """The reliability diagram's bins."""
        raise NotImplementedError


class SingleLabelMetrics(TaskMetrics):
    headline_keys, per_label_key, multi_label = HEADLINE_KEYS, "per_class", False

    def compute(self, y_true, probabilities, decided, classes, thresholds) -> dict:
        return classification_metrics(y_true, probabilities, classes)

    def reliability(self, y_true: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
        return calibration_bins(y_true, probabilities)


class MultiLabelMetrics(TaskMetrics):
    headline_keys, per_label_key, multi_label = MULTI_LABEL_HEADLINE_KEYS, "per_label", True

    def compute(self, y_true, probabilities, decided, classes, thresholds) -> dict:
        return multi_label_metrics(y_true, probabilities, decided, classes, thresholds)

    def reliability(self, y_true: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
        return probability_calibration_bins(y_true, probabilities)


REGRESSION_HEADLINE_KEYS = ("n", "pearson", "spearman", "rmse", "mae", "r2")


def regression_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict:
    """Root mean squared error, mean absolute error and R² (scikit-learn's), and Pearson's and
    Spearman's correlations (SciPy's; None where a side is constant)."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    varied = len(y_true) > 1 and np.ptp(y_true) > 0 and np.ptp(scores) > 0
    return {
        "n": int(len(y_true)),
        "pearson": float(pearsonr(y_true, scores)[0]) if varied else None,
        "spearman": float(spearmanr(y_true, scores)[0]) if varied else None,
        "rmse": float(np.sqrt(mean_squared_error(y_true, scores))),
        "mae": float(mean_absolute_error(y_true, scores)),
        "r2": _defined(lambda: r2_score(y_true, scores)) if len(y_true) > 1 else None,
    }


class RegressionMetrics(TaskMetrics):
    """A score per text: its "probabilities" are the scores, one column; nothing is decided."""

    headline_keys, per_label_key, multi_label = REGRESSION_HEADLINE_KEYS, None, False

    def compute(self, y_true, probabilities, decided, classes, thresholds) -> dict:
        return regression_metrics(y_true, probabilities)

    def probability_scores(self, y_true: np.ndarray, probabilities: np.ndarray) -> dict:
        return {}  # a score is no probability

    def reliability(self, y_true: np.ndarray, probabilities: np.ndarray) -> pd.DataFrame:
        raise ValueError("a regression model's scores have no reliability diagram")


TASK_METRICS = {
    SINGLE_LABEL: SingleLabelMetrics(),
    MULTI_LABEL: MultiLabelMetrics(),
    REGRESSION: RegressionMetrics(),
}


def metrics_of(task_name: str) -> TaskMetrics:
    """The metrics of the task labels.json names (`Task.name`)."""
    return TASK_METRICS[task_name]
