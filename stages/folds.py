"""Assign stratified cross-validation folds over the training split's ids."""

import pandas as pd

from bertclf.config import load_section
from bertclf.cv import assign_folds
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, write_json
from bertclf.paths import FOLDS, FOLDS_REPORT, prepared_split


@exits_cleanly
def main() -> None:
    cv = load_section("cv")

    train = pd.read_parquet(prepared_split("train"))
    folds = assign_folds(train, len(cv.folds), cv.seed)
    with atomic_path(FOLDS) as tmp:
        folds.to_parquet(tmp, index=False)
    labelled = folds.merge(train, on="id")
    if "labels" in labelled.columns:  # multi-label: one row per (text, label)
        labelled = labelled.explode("labels").dropna(subset=["labels"])
        labelled = labelled.rename(columns={"labels": "label"})
    write_json(
        FOLDS_REPORT,
        {
            "k": len(cv.folds),
            "seed": cv.seed,
            "class_counts": {
                str(fold): {
                    str(k): int(v) for k, v in part["label"].value_counts().sort_index().items()
                }
                for fold, part in labelled.groupby("fold")
            },
        },
    )
    print(f"folds: {len(cv.folds)} folds over {len(train)} training texts")


if __name__ == "__main__":
    main()
