"""Collect every fold's metrics into reports/cv.json, with their mean and standard deviation, and
every fold's predictions on the rows it held out into data/out_of_fold.parquet: the training
split with one out-of-fold prediction per row (empty with cv=none)."""

import pandas as pd

from bertclf.config import load_section
from bertclf.cv import summarise
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, read_json, write_json
from bertclf.label_issues import out_of_fold, read_held_out
from bertclf.labels import LabelMap
from bertclf.paths import (
    CV_SUMMARY,
    LABELS,
    OUT_OF_FOLD,
    fold_metrics,
    prepared_split,
)
from bertclf.tasks import task_of


@exits_cleanly
def main() -> None:
    cv = load_section("cv")

    summary = summarise([read_json(fold_metrics(fold)) for fold in cv.folds])
    train = pd.read_parquet(prepared_split("train"))
    table = out_of_fold(train, read_held_out(cv.folds))
    with atomic_path(OUT_OF_FOLD) as tmp:
        table.to_parquet(tmp, index=False)
    write_json(CV_SUMMARY, summary)
    if cv.folds:
        key = task_of(LabelMap.load(LABELS)).headline_metric
        mean, std = summary["mean"][key], summary["std"][key]
        print(
            f"cv_summary: {key} {mean:.4f} ± {std:.4f} over {len(cv.folds)} folds; "
            f"out-of-fold predictions for {len(table)} training rows in {OUT_OF_FOLD}"
        )
    else:
        print("cv_summary: no cross-validation (cv=none)")


if __name__ == "__main__":
    main()
