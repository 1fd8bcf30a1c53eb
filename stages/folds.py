"""Assign stratified cross-validation folds over the training split's ids."""

import pandas as pd

from bertclf.config import load_section
from bertclf.cv import assign_folds, fold_counts
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, write_json
from bertclf.labels import LabelMap
from bertclf.paths import FOLDS, FOLDS_REPORT, LABELS, prepared_split
from bertclf.tasks import task_of


@exits_cleanly
def main() -> None:
    cv = load_section("cv")

    task = task_of(LabelMap.load(LABELS))
    train = pd.read_parquet(prepared_split("train"))
    folds = assign_folds(train, len(cv.folds), cv.seed, task)
    with atomic_path(FOLDS) as tmp:
        folds.to_parquet(tmp, index=False)
    counts = fold_counts(task.targets(train), folds["fold"].to_numpy(), task.classes.tolist())
    write_json(FOLDS_REPORT, {"k": len(cv.folds), "seed": cv.seed, "class_counts": counts})
    print(f"folds: {len(cv.folds)} folds over {len(train)} training texts")


if __name__ == "__main__":
    main()
