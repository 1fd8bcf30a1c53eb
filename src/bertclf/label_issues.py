"""Label errors in the training split, found by confident learning (cleanlab) in the out-of-fold
predictions of cross-validation.

Each `train_fold@k` writes its model's probabilities and answers on the texts it held out
(`fold_predictions`); `cv_summary` gathers them with the prepared training split into one table
that covers every training row once (`out_of_fold`); the `label_issues` stage ranks that
table's rows by cleanlab's label quality and flags the likely errors (`find_label_issues`).
Validation and test rows are in no fold, so they are never flagged.
"""

import math

import numpy as np
import pandas as pd

from bertclf.errors import BertclfError
from bertclf.labels import SCORE

PROBABILITIES = "probabilities"
PREDICTED = "predicted"
FOLD = "fold"
ISSUE_COLUMNS = ["rank", "id", "text", "fold", "given", "suggested", "label_quality"]


def fold_predictions(ids, probabilities: np.ndarray, predicted, fold: int) -> pd.DataFrame:
    """One fold's held-out texts: id, the fold, its model's probabilities (regression: the
    score, one column) and its answer (class, label list or score)."""
    return pd.DataFrame(
        {
            "id": np.asarray(ids, dtype=str),
            FOLD: fold,
            PROBABILITIES: list(np.asarray(probabilities, dtype=np.float32)),
            PREDICTED: list(predicted),
        }
    )


def out_of_fold(train: pd.DataFrame, folds: list[pd.DataFrame]) -> pd.DataFrame:
    """The prepared training split with each row's out-of-fold prediction, in the split's order.
    Every training row must be held out by exactly one fold. No folds: an empty table."""
    if not folds:
        return train.iloc[:0].assign(**{FOLD: [], PROBABILITIES: [], PREDICTED: []})
    predictions = pd.concat(folds, ignore_index=True)
    repeated = predictions["id"][predictions["id"].duplicated()]
    if not repeated.empty:
        raise BertclfError(
            f"reports/cv: training row {repeated.iloc[0]!r} is held out by more than one fold"
        )
    missing = sorted(set(train["id"]) - set(predictions["id"]))
    if missing or len(predictions) != len(train):
        shown = missing[0] if missing else "(an id not in the training split)"
        raise BertclfError(
            f"reports/cv: the folds' predictions do not cover the training split "
            f"(first missing: {shown}); run `dvc repro cv_summary` again"
        )
    return train.merge(predictions, on="id", how="left", validate="one_to_one")


def find_label_issues(table: pd.DataFrame, task, config, separator: str):
    """The flagged rows of an out-of-fold table, most likely errors first, and a summary (how
    many rows were flagged, and per class). The table is `out_of_fold`'s."""
    if table.empty:
        return pd.DataFrame(columns=ISSUE_COLUMNS), {"rows": 0, "flagged": 0, "share": 0.0}
    probabilities = np.stack(table[PROBABILITIES].to_numpy()).astype(np.float64)
    targets = task.targets(table)
    if task.name == "regression":
        quality, flagged = _regression(targets, probabilities[:, 0], config)
    else:
        quality, flagged = _classification(targets, probabilities, task, config)
    order = np.argsort(quality[flagged], kind="stable")
    rows = table[flagged].iloc[order]
    issues = pd.DataFrame(
        {
            "rank": np.arange(1, len(rows) + 1),
            "id": rows["id"].to_numpy(),
            "text": rows["text"].to_numpy(),
            **({"text_pair": rows["text_pair"].to_numpy()} if "text_pair" in rows else {}),
            FOLD: rows[FOLD].to_numpy(),
            "given": [_shown(v, separator) for v in _given(rows, task)],
            "suggested": [_shown(v, separator) for v in rows[PREDICTED]],
            "label_quality": quality[flagged][order],
        }
    )
    return issues, _summary(targets, flagged, task)


def _classification(targets: np.ndarray, probabilities: np.ndarray, task, config):
    if task.multi_label:
        from cleanlab.multilabel_classification import get_label_quality_scores
        from cleanlab.multilabel_classification.filter import find_label_issues as flag

        labels = [np.flatnonzero(row).tolist() for row in targets]
    else:
        from cleanlab.filter import find_label_issues as flag
        from cleanlab.rank import get_label_quality_scores

        labels = np.asarray(targets, dtype=np.int64)
    flagged = flag(
        labels, probabilities, filter_by=config.filter_by, frac_noise=config.frac_noise, n_jobs=1
    )
    return np.asarray(get_label_quality_scores(labels, probabilities)), np.asarray(flagged)


def _regression(scores: np.ndarray, predictions: np.ndarray, config):
    from cleanlab.regression.rank import get_label_quality_scores

    quality = np.asarray(get_label_quality_scores(scores, predictions))
    flagged = np.zeros(len(scores), dtype=bool)
    flagged[
        np.argsort(quality, kind="stable")[: math.ceil(len(scores) * config.regression_fraction)]
    ] = True
    return quality, flagged


def _given(rows: pd.DataFrame, task):
    if task.name == "regression":
        return rows[SCORE].to_numpy()
    return rows["labels" if task.multi_label else "label"].to_numpy()


def _shown(value, separator: str):
    """A label list as one cell, joined as the data's label separator joins them."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return separator.join(str(v) for v in value)
    return value


def _summary(targets: np.ndarray, flagged: np.ndarray, task) -> dict:
    n = len(flagged)
    summary = {"rows": n, "flagged": int(flagged.sum()), "share": float(flagged.mean())}
    if task.name == "regression":
        return summary
    carrying = targets.astype(bool) if task.multi_label else np.eye(len(task.classes))[targets] > 0
    summary["per_class"] = {
        str(name): {
            "rows": int(carrying[:, j].sum()),
            "flagged": int((carrying[:, j] & flagged).sum()),
            "share": float((carrying[:, j] & flagged).sum() / max(carrying[:, j].sum(), 1)),
        }
        for j, name in enumerate(task.classes)
    }
    return summary
