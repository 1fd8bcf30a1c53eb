"""What `evaluate` writes besides the metrics: plot data for DVC, PNGs, and the errors table."""

from pathlib import Path

import numpy as np
import pandas as pd

from bertclf.files import atomic_path
from bertclf.metrics import calibration_bins, confusion_rows, curve_tables, save_confusion_png

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
