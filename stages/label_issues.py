"""Rank the training rows by how likely their label is wrong (cleanlab, on the out-of-fold
predictions of cross-validation): reports/label_issues.csv, most likely errors first, and the
count and share flagged per class in reports/label_issues.json. Nothing changes the data."""

import pandas as pd

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, write_json
from bertclf.label_issues import find_label_issues
from bertclf.labels import LabelMap
from bertclf.paths import LABEL_ISSUES, LABEL_ISSUES_SUMMARY, LABELS, OUT_OF_FOLD
from bertclf.tasks import task_of


@exits_cleanly
def main() -> None:
    config = load_section("label_issues")
    cv = load_section("cv")
    separator = load_section("task").label_separator

    task = task_of(LabelMap.load(LABELS))
    table = pd.read_parquet(OUT_OF_FOLD)
    if not cv.folds or not config.enabled:
        table = table.iloc[:0]
    issues, summary = find_label_issues(table, task, config, separator)
    with atomic_path(LABEL_ISSUES) as tmp:
        issues.to_csv(tmp, index=False)
    write_json(LABEL_ISSUES_SUMMARY, {"enabled": config.enabled, **summary})
    if not cv.folds:
        print("label_issues: no cross-validation (cv=none), so no out-of-fold predictions to read")
    elif not config.enabled:
        print("label_issues: off (label_issues=off)")
    else:
        print(
            f"label_issues: {summary['flagged']} of {summary['rows']} training rows flagged "
            f"({summary['share']:.1%}; {config.filter_by}), in {LABEL_ISSUES}"
        )


if __name__ == "__main__":
    main()
