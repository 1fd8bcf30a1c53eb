"""Cross-validation: stratified fold assignment over the training split, and the summary."""

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from bertclf.errors import BertclfError


def assign_folds(train: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Columns id and fold (0..k-1), stratified on the label. An empty table when k is 0."""
    if k == 0:
        return pd.DataFrame({"id": pd.Series([], dtype=str), "fold": pd.Series([], dtype=int)})
    if k < 2:
        raise BertclfError(f"params.yaml: cv.folds has {k} fold; k-fold needs at least 2")
    if "labels" in train.columns:
        return assign_multi_label_folds(train, k, seed)
    counts = train["label"].value_counts()
    if counts.min() < k:
        raise BertclfError(
            f"data/prepared/train.parquet: class {counts.idxmin()!r} has {counts.min()} "
            f"training examples; {k}-fold cross-validation needs at least {k} per class"
        )
    folds = np.empty(len(train), dtype=int)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(train)), train["label"])):
        folds[held_out] = fold
    return pd.DataFrame({"id": train["id"].to_numpy(), "fold": folds})


def assign_multi_label_folds(train: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Folds stratified on every label at once (iterative stratification). A label on fewer
    than k training texts is missing from some held-out folds: it cannot be otherwise."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    if len(train) < k:
        raise BertclfError(
            f"data/prepared/train.parquet: {len(train)} training texts; "
            f"{k}-fold cross-validation needs at least {k}"
        )
    classes = sorted({label for labels in train["labels"] for label in labels})
    index = {name: j for j, name in enumerate(classes)}
    y = np.zeros((len(train), len(classes)), dtype=np.int8)
    for row, labels in enumerate(train["labels"]):
        y[row, [index[label] for label in labels]] = 1
    folds = np.empty(len(train), dtype=int)
    splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(train)), y)):
        folds[held_out] = fold
    return pd.DataFrame({"id": train["id"].to_numpy(), "fold": folds})


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
