"""Classification metrics, computed with scikit-learn."""

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """accuracy; precision, recall and F1 (macro, weighted and per class); n."""
    labels = np.arange(len(classes))
    metrics: dict = {"n": int(len(y_true)), "accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        metrics[f"{average}_precision"] = float(p)
        metrics[f"{average}_recall"] = float(r)
        metrics[f"{average}_f1"] = float(f)
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


def confusion_rows(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> list[dict]:
    """One row per (actual, predicted) pair, the shape DVC's confusion template reads."""
    return [
        {"actual": classes[t], "predicted": classes[p]} for t, p in zip(y_true, y_pred, strict=True)
    ]


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=np.arange(len(classes)))


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
