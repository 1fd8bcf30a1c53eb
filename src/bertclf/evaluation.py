"""What `evaluate` writes besides the metrics: plot data for DVC, PNGs, and the errors table."""

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve
from sklearn.preprocessing import label_binarize

from bertclf.files import atomic_path
from bertclf.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from bertclf.metrics import calibration_bins, probability_calibration_bins


def write_plot_data(
    out_dir: Path,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    classes: list[str],
    per_class: dict,
    before_temperature: np.ndarray,
) -> None:
    """One CSV per plot that dvc.yaml declares (see its top-level `plots:`); the reliability
    diagram of the probabilities answered and of the model's own, before temperature scaling."""
    precision_recall, roc = curve_tables(y_true, probabilities, classes)
    tables = {
        "confusion.csv": confusion_rows(y_true, probabilities.argmax(axis=1), classes),
        "precision_recall.csv": precision_recall,
        "roc.csv": roc,
        "calibration.csv": calibration_bins(y_true, probabilities),
        "calibration_before_temperature.csv": calibration_bins(y_true, before_temperature),
        "per_class_f1.csv": f1_table(per_class),
    }
    write_tables(out_dir, tables)


def f1_table(per_class: dict) -> pd.DataFrame:
    return pd.DataFrame({"class": list(per_class), "f1": [m["f1"] for m in per_class.values()]})


def write_tables(out_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    """The plot files, in one directory written whole."""
    with atomic_path(out_dir, replace_directory=True) as tmp:
        tmp.mkdir()
        for name, table in tables.items():
            table.to_csv(tmp / name, index=False)


def write_confusion_png(
    path: str | Path, y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> None:
    with atomic_path(path) as tmp:
        save_confusion_png(y_true, probabilities.argmax(axis=1), classes, str(tmp), "test")


def texts_of(frame: pd.DataFrame, rows) -> dict[str, np.ndarray]:
    """The `rows` of a split's text column, and of its text_pair column for pairs."""
    return {name: frame[name].to_numpy()[rows] for name in ("text", "text_pair") if name in frame}


def errors_table(
    frame: pd.DataFrame, y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """The misclassified texts with their confidence, most confident mistakes first."""
    y_pred = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(np.asarray(y_true) != y_pred)
    table = pd.DataFrame(
        {
            "id": frame["id"].to_numpy()[wrong],
            **texts_of(frame, wrong),
            "true_label": [classes[i] for i in np.asarray(y_true)[wrong]],
            "predicted_label": [classes[i] for i in y_pred[wrong]],
            "confidence": probabilities[wrong].max(axis=1),
        }
    )
    return table.sort_values("confidence", ascending=False, kind="stable")


def curve_tables(
    y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Precision-recall and ROC curves: of the second class for two classes, else micro-averaged
    one-vs-rest."""
    if len(classes) == 2:
        truth, scores = np.asarray(y_true) == 1, probabilities[:, 1]
    else:
        truth = label_binarize(y_true, classes=np.arange(len(classes))).ravel()
        scores = probabilities.ravel()
    return curves(truth, scores)


def curves(truth: np.ndarray, scores: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Precision-recall and ROC curves of binary truth against scores."""
    precision, recall, _ = precision_recall_curve(truth, scores)
    fpr, tpr, _ = roc_curve(truth, scores)
    return (
        pd.DataFrame({"recall": recall, "precision": precision}),
        pd.DataFrame({"fpr": fpr, "tpr": tpr}),
    )


def confusion_rows(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per text (actual, predicted): the shape DVC's confusion templates read."""
    return pd.DataFrame(
        {"actual": [classes[t] for t in y_true], "predicted": [classes[p] for p in y_pred]}
    )


def save_confusion_png(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], path: str, title: str
) -> None:
    """Counts, and rows normalised by true class, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.6 * len(classes) + 2)
    figure, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, normalize, name in (
        (axes[0], None, "counts"),
        (axes[1], "true", "normalised by true class"),
    ):
        ConfusionMatrixDisplay.from_predictions(
            y_true,
            y_pred,
            labels=np.arange(len(classes)),
            display_labels=classes,
            normalize=normalize,
            ax=ax,
            colorbar=False,
            values_format=".2f" if normalize else "d",
            xticks_rotation=45,
        )
        ax.set_title(f"{title}: {name}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# Multi-label: the same files, read the multi-label way.
NONE = "(none)"


def write_multi_label_plot_data(
    out_dir: Path,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    predicted: np.ndarray,
    classes: list[str],
    per_label: dict,
    before_temperature: np.ndarray,
) -> None:
    """The files of `write_plot_data` for a multi-label model: label-wise confusion (see
    `label_pairs`), micro-averaged precision-recall and ROC over every (text, label) pair,
    the reliability of the per-label probabilities, and F1 per label."""
    precision_recall, roc = curves((np.asarray(y_true) > 0.5).ravel(), probabilities.ravel())
    tables = {
        "confusion.csv": label_pairs(y_true, predicted, classes),
        "precision_recall.csv": precision_recall,
        "roc.csv": roc,
        "calibration.csv": probability_calibration_bins(y_true, probabilities),
        "calibration_before_temperature.csv": probability_calibration_bins(
            y_true, before_temperature
        ),
        "per_class_f1.csv": f1_table(per_label),
    }
    write_tables(out_dir, tables)


def label_pairs(y_true: np.ndarray, predicted: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per (text, label) that is true or predicted: actual is the label or "(none)"
    (a false positive), predicted likewise (a miss). DVC's confusion templates read it."""
    truth = np.asarray(y_true) > 0.5
    pairs = list(zip(*np.nonzero(truth | predicted), strict=True))
    return pd.DataFrame(
        {
            "actual": [classes[j] if truth[i, j] else NONE for i, j in pairs],
            "predicted": [classes[j] if predicted[i, j] else NONE for i, j in pairs],
        },
        columns=["actual", "predicted"],
    )


def multi_label_errors_table(
    frame: pd.DataFrame,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    predicted: np.ndarray,
    classes: list[str],
    separator: str = "|",
) -> pd.DataFrame:
    """The texts whose predicted set differs from the true one, with the labels missed and the
    extra ones; those with the most wrong labels first."""
    truth = np.asarray(y_true) > 0.5
    names = np.asarray(classes, dtype=object)

    def joined(row: np.ndarray) -> str:
        return separator.join(names[row])

    wrong = np.flatnonzero((truth != predicted).any(axis=1))
    table = pd.DataFrame(
        {
            "id": frame["id"].to_numpy()[wrong],
            **texts_of(frame, wrong),
            "true_labels": [joined(truth[i]) for i in wrong],
            "predicted_labels": [joined(predicted[i]) for i in wrong],
            "missing": [joined(truth[i] & ~predicted[i]) for i in wrong],
            "extra": [joined(predicted[i] & ~truth[i]) for i in wrong],
            "wrong_labels": (truth != predicted)[wrong].sum(axis=1),
            "confidence": [float(probabilities[i][predicted[i]].max(initial=0.0)) for i in wrong],
        }
    )
    return table.sort_values(["wrong_labels", "confidence"], ascending=False, kind="stable")


def write_label_counts_png(
    path: str | Path, y_true: np.ndarray, predicted: np.ndarray, classes: list[str], top: int = 30
) -> None:
    """Multi-label's confusion figure: true positives, false positives and misses of the `top`
    most frequent labels of the test split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = np.asarray(y_true) > 0.5
    shown = np.argsort(-truth.sum(axis=0), kind="stable")[:top][::-1]
    counts = {
        "true positives": (truth & predicted).sum(axis=0)[shown],
        "false positives": (~truth & predicted).sum(axis=0)[shown],
        "misses": (truth & ~predicted).sum(axis=0)[shown],
    }
    figure, ax = plt.subplots(figsize=(8, max(3.0, 0.3 * len(shown) + 1)))
    left = np.zeros(len(shown))
    for name, values in counts.items():
        ax.barh([classes[j] for j in shown], values, left=left, label=name)
        left += values
    ax.set_title(f"test: the {len(shown)} most frequent labels")
    ax.set_xlabel("texts")
    ax.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(str(tmp), dpi=100, format="png")
    plt.close(figure)


class SingleLabelTables:
    """What `evaluate` writes besides the metrics for a single-label model: the plot files,
    the confusion matrix PNG, and the misclassified texts."""

    def write(self, plots, png, y_true, probabilities, decided, classes, metrics, before) -> None:
        """The test split's (`metrics` of both splits, `before` the temperature)."""
        per_class = metrics["test"]["per_class"]
        write_plot_data(plots, y_true, probabilities, classes, per_class, before)
        write_confusion_png(png, y_true, probabilities, classes)

    def errors(self, frame, y_true, probabilities, decided, classes) -> pd.DataFrame:
        return errors_table(frame, y_true, probabilities, classes)


class MultiLabelTables:
    """The same for a multi-label model: label-wise plot files, the label counts PNG, and the
    texts whose label set is wrong."""

    def write(self, plots, png, y_true, probabilities, decided, classes, metrics, before) -> None:
        per_label = metrics["test"]["per_label"]
        write_multi_label_plot_data(
            plots, y_true, probabilities, decided, classes, per_label, before
        )
        write_label_counts_png(png, y_true, decided, classes)

    def errors(self, frame, y_true, probabilities, decided, classes) -> pd.DataFrame:
        return multi_label_errors_table(frame, y_true, probabilities, decided, classes)


class RegressionTables:
    """The same for a regression model: predicted against true scores, the residuals, a
    scatter PNG, and the texts with the largest errors."""

    def write(self, plots, png, y_true, probabilities, decided, classes, metrics, before) -> None:
        truth, predicted = np.asarray(y_true, dtype=np.float64), np.asarray(decided)
        write_tables(
            plots,
            {
                "predicted.csv": pd.DataFrame({"true": truth, "predicted": predicted}),
                "residuals.csv": pd.DataFrame(
                    {"predicted": predicted, "residual": predicted - truth}
                ),
            },
        )
        write_scatter_png(png, truth, predicted, metrics["test"])

    def errors(self, frame, y_true, probabilities, decided, classes) -> pd.DataFrame:
        error = np.asarray(decided, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
        table = pd.DataFrame(
            {
                "id": frame["id"].to_numpy(),
                **texts_of(frame, slice(None)),
                "true_score": np.asarray(y_true, dtype=np.float64),
                "predicted_score": np.asarray(decided, dtype=np.float64),
                "error": error,
            }
        )
        order = np.argsort(-np.abs(error), kind="stable")
        return table.iloc[order].reset_index(drop=True)


def write_scatter_png(path: str | Path, truth: np.ndarray, predicted: np.ndarray, test: dict):
    """Predicted against true scores on the test split, the diagonal drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(truth, predicted, s=6, alpha=0.5)
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    pearson = test.get("pearson")
    ax.set_title(f"test: predicted against true (Pearson {pearson:.3f})" if pearson else "test")
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(str(tmp), dpi=100, format="png")
    plt.close(figure)


TASK_TABLES = {
    SINGLE_LABEL: SingleLabelTables(),
    MULTI_LABEL: MultiLabelTables(),
    REGRESSION: RegressionTables(),
}


def tables_of(task_name: str):
    """The tables of the task labels.json names (`Task.name`)."""
    return TASK_TABLES[task_name]
