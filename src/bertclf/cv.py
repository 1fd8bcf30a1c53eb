"""Cross-validation: stratified fold assignment over the training split, and the summary."""

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from bertclf.errors import BertclfError


def assign_folds(train: pd.DataFrame, k: int, seed: int, task) -> pd.DataFrame:
    """Columns id and fold (0..k-1), stratified on the task's targets (`Task.targets`): on the
    class, or on every label at once (iterative stratification; a label on fewer than k
    training texts is missing from some held-out folds: it cannot be otherwise). An empty
    table when k is 0."""
    if k == 0:
        return pd.DataFrame({"id": pd.Series([], dtype=str), "fold": pd.Series([], dtype=int)})
    if k < 2:
        raise BertclfError(f"params.yaml: cv.folds has {k} fold; k-fold needs at least 2")
    targets = task.strata(train)
    if task.multi_label:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        if len(train) < k:
            raise BertclfError(
                f"data/prepared/train.parquet: {len(train)} training texts; "
                f"{k}-fold cross-validation needs at least {k}"
            )
        splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        counts = pd.Series(targets).value_counts()
        if counts.min() < k:
            stratum = task.classes[counts.idxmin()] if targets.dtype.kind == "i" else "bin"
            raise BertclfError(
                f"data/prepared/train.parquet: class {str(stratum)!r} has {counts.min()} "
                f"training examples; {k}-fold cross-validation needs at least {k} per class"
            )
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.empty(len(train), dtype=int)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(train)), targets)):
        folds[held_out] = fold
    return pd.DataFrame({"id": train["id"].to_numpy(), "fold": folds})


def fold_counts(targets: np.ndarray, folds: np.ndarray, classes: list[str]) -> dict:
    """Texts of each class (multi-label: carrying each label) in each fold, as the targets of
    `Task.targets` say; a class absent from a fold is left out."""
    indicator = np.asarray(targets)
    if indicator.dtype.kind == "f" and indicator.ndim == 1:  # regression: the scores
        return {
            str(fold): {
                "n": int((folds == fold).sum()),
                "mean_score": float(indicator[folds == fold].mean()),
            }
            for fold in np.unique(folds)
        }
    if indicator.ndim == 1:  # class ids
        indicator = np.eye(len(classes), dtype=np.int64)[indicator]
    return {
        str(fold): {
            name: int(n)
            for name, n in zip(classes, indicator[folds == fold].sum(axis=0), strict=True)
            if n
        }
        for fold in np.unique(folds)
    }


def summarise(fold_metrics: list[dict]) -> dict:
    """Each fold's metrics, and the mean and standard deviation of every number across folds."""
    numbers = [_flatten(m) for m in fold_metrics]
    keys = [k for k in numbers[0] if all(n.get(k) is not None for n in numbers)] if numbers else []
    mean = {k: float(np.mean([n[k] for n in numbers])) for k in keys}
    std = {
        k: float(np.std([n[k] for n in numbers], ddof=1)) if len(numbers) > 1 else 0.0 for k in keys
    }
    return {
        "k": len(fold_metrics),
        "folds": fold_metrics,
        "mean": _unflatten(mean),
        "std": _unflatten(std),
    }


def _flatten(metrics: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float) or value is None:
            flat[f"{prefix}{key}"] = value
    return flat


def _unflatten(flat: dict) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested
