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
from bertclf.labels import MULTI_LABEL, REGRESSION, SCORE, SINGLE_LABEL
from bertclf.paths import held_out_predictions

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


def read_held_out(folds: list[int]) -> list[pd.DataFrame]:
    """Each fold's `fold_predictions`, as `train_fold@k` wrote them."""
    tables = []
    for fold in folds:
        path = held_out_predictions(fold)
        if not path.is_file():
            raise BertclfError(f"{path}: not found; run `dvc repro train_fold@{fold}`")
        tables.append(pd.read_parquet(path))
    return tables


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
            f"(first missing: {shown}); run `dvc repro` again"
        )
    return train.merge(predictions, on="id", how="left", validate="one_to_one")


def find_label_issues(table: pd.DataFrame, task, config, separator: str):
    """The flagged rows of an out-of-fold table, most likely errors first, and a summary (how
    many rows were flagged, and per class). The table is `out_of_fold`'s."""
    if table.empty:
        return pd.DataFrame(columns=ISSUE_COLUMNS), {"rows": 0, "flagged": 0, "share": 0.0}
    rule = TASK_LABEL_ISSUES[task.name]
    probabilities = np.stack(table[PROBABILITIES].to_numpy()).astype(np.float64)
    targets = task.targets(table)
    quality, flagged = rule.flag(targets, probabilities, config)
    order = np.argsort(quality[flagged], kind="stable")
    rows = table[flagged].iloc[order]
    issues = pd.DataFrame(
        {
            "rank": np.arange(1, len(rows) + 1),
            "id": rows["id"].to_numpy(),
            "text": rows["text"].to_numpy(),
            **({"text_pair": rows["text_pair"].to_numpy()} if "text_pair" in rows else {}),
            FOLD: rows[FOLD].to_numpy(),
            "given": [_shown(v, separator) for v in rows[rule.given_column]],
            "suggested": [_shown(v, separator) for v in rows[PREDICTED]],
            "label_quality": quality[flagged][order],
        }
    )
    summary = {"rows": len(table), "flagged": int(flagged.sum()), "share": float(flagged.mean())}
    carrying = rule.carrying(targets, len(task.classes))
    if carrying is not None:
        summary["per_class"] = _per_class(carrying, flagged, task.classes)
    return issues, summary


def _confident_learning(flag, quality, labels, probabilities: np.ndarray, config):
    """cleanlab's filter (`flag`) and label quality scores (`quality`) of one task's kind."""
    flagged = flag(
        labels, probabilities, filter_by=config.filter_by, frac_noise=config.frac_noise, n_jobs=1
    )
    return np.asarray(quality(labels, probabilities)), np.asarray(flagged)


class SingleLabelIssues:
    """Confident learning on the class probabilities (cleanlab.filter); the given class."""

    given_column = "label"

    @staticmethod
    def flag(targets: np.ndarray, probabilities: np.ndarray, config):
        from cleanlab.filter import find_label_issues as flag
        from cleanlab.rank import get_label_quality_scores

        labels = np.asarray(targets, dtype=np.int64)
        return _confident_learning(flag, get_label_quality_scores, labels, probabilities, config)

    @staticmethod
    def carrying(targets: np.ndarray, classes: int) -> np.ndarray:
        return np.eye(classes, dtype=bool)[targets]


class MultiLabelIssues:
    """Confident learning on each label's probability (cleanlab.multilabel_classification): a
    label set with a label missing or extra is flagged."""

    given_column = "labels"

    @staticmethod
    def flag(targets: np.ndarray, probabilities: np.ndarray, config):
        from cleanlab.multilabel_classification import get_label_quality_scores
        from cleanlab.multilabel_classification.filter import find_label_issues as flag

        labels = [np.flatnonzero(row).tolist() for row in targets]
        return _confident_learning(flag, get_label_quality_scores, labels, probabilities, config)

    @staticmethod
    def carrying(targets: np.ndarray, classes: int) -> np.ndarray:
        return np.asarray(targets) > 0


class RegressionIssues:
    """cleanlab.regression's label quality of each score given its out-of-fold prediction.
    cleanlab estimates no noise rate for regression without refitting models, so the lowest
    `label_issues.regression_fraction` of the rows are flagged."""

    given_column = SCORE

    @staticmethod
    def flag(targets: np.ndarray, probabilities: np.ndarray, config):
        from cleanlab.regression.rank import get_label_quality_scores

        quality = np.asarray(get_label_quality_scores(targets, probabilities[:, 0]))
        flagged = np.zeros(len(targets), dtype=bool)
        worst = np.argsort(quality, kind="stable")
        flagged[worst[: math.ceil(len(targets) * config.regression_fraction)]] = True
        return quality, flagged

    @staticmethod
    def carrying(targets: np.ndarray, classes: int) -> None:
        return None  # no classes to count by


TASK_LABEL_ISSUES = {
    SINGLE_LABEL: SingleLabelIssues,
    MULTI_LABEL: MultiLabelIssues,
    REGRESSION: RegressionIssues,
}


def _shown(value, separator: str):
    """A label list as one cell, joined as the data's label separator joins them."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return separator.join(str(v) for v in value)
    return value


def _per_class(carrying: np.ndarray, flagged: np.ndarray, classes) -> dict:
    """Rows given each class (multi-label: carrying each label), and how many were flagged."""
    return {
        str(name): {
            "rows": int(carrying[:, j].sum()),
            "flagged": int((carrying[:, j] & flagged).sum()),
            "share": float((carrying[:, j] & flagged).sum() / max(carrying[:, j].sum(), 1)),
        }
        for j, name in enumerate(classes)
    }
