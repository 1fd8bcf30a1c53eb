"""What `evaluate` writes besides the metrics: plot data for DVC, PNGs, and the errors table."""

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve
from sklearn.preprocessing import label_binarize

from bertclf.files import atomic_path
from bertclf.metrics import calibration_bins

PLOT_FILES = (
    "confusion.csv",
    "precision_recall.csv",
    "roc.csv",
    "calibration.csv",
    "per_class_f1.csv",
)


def write_plot_data(
    out_dir: Path,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    classes: list[str],
    per_class: dict,
) -> None:
    """One CSV per plot that dvc.yaml declares (see its top-level `plots:`)."""
    precision_recall, roc = curve_tables(y_true, probabilities, classes)
    tables = {
        "confusion.csv": confusion_rows(y_true, probabilities.argmax(axis=1), classes),
        "precision_recall.csv": precision_recall,
        "roc.csv": roc,
        "calibration.csv": calibration_bins(y_true, probabilities),
        "per_class_f1.csv": pd.DataFrame(
            {"class": list(per_class), "f1": [m["f1"] for m in per_class.values()]}
        ),
    }
    with atomic_path(out_dir, replace_directory=True) as tmp:
        tmp.mkdir()
        for name in PLOT_FILES:
            tables[name].to_csv(tmp / name, index=False)


def write_confusion_png(
    path: str | Path, y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> None:
    with atomic_path(path) as tmp:
        save_confusion_png(y_true, probabilities.argmax(axis=1), classes, str(tmp), "test")


def errors_table(
    frame: pd.DataFrame, y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> pd.DataFrame:
    """The misclassified texts with their confidence, most confident mistakes first."""
    y_pred = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(np.asarray(y_true) != y_pred)
    table = pd.DataFrame(
        {
            "id": frame["id"].to_numpy()[wrong],
            "text": frame["text"].to_numpy()[wrong],
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
