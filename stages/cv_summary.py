"""Collect every fold's metrics into reports/cv.json, with their mean and standard deviation."""

from bertclf.config import load_section
from bertclf.cv import summarise
from bertclf.errors import exits_cleanly
from bertclf.files import read_json, write_json
from bertclf.labels import LabelMap
from bertclf.paths import CV_SUMMARY, LABELS, fold_metrics
from bertclf.tasks import task_of


@exits_cleanly
def main() -> None:
    cv = load_section("cv")

    summary = summarise([read_json(fold_metrics(fold)) for fold in cv.folds])
    write_json(CV_SUMMARY, summary)
    if cv.folds:
        key = task_of(LabelMap.load(LABELS)).headline_metric
        mean, std = summary["mean"][key], summary["std"][key]
        print(f"cv_summary: {key} {mean:.4f} ± {std:.4f} over {len(cv.folds)} folds")
    else:
        print("cv_summary: no cross-validation (cv=none)")


if __name__ == "__main__":
    main()
