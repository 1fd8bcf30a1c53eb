"""Write reports/report.md and the training-curves PNG from the other stages' reports, with
the tokens that drove the first mistakes (their token attributions, from `evaluate`)."""

import pandas as pd

from bertclf.config import load_params
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, read_json
from bertclf.labels import LabelMap
from bertclf.paths import EXPLAINED_MISTAKES, LABELS, REPORT, REPORTS, TRAINING_CURVES_PNG
from bertclf.report import render_report, training_curves_png
from bertclf.tasks import task_of


@exits_cleanly
def main() -> None:
    params = load_params()
    with atomic_path(TRAINING_CURVES_PNG) as tmp:
        training_curves_png(REPORTS / "train", tmp)
    errors = pd.read_csv(REPORTS / "errors.csv", dtype={"id": str}, keep_default_na=False)
    explained = read_json(EXPLAINED_MISTAKES)
    report = render_report(
        task_of(LabelMap.load(LABELS)).name,  # the task, as labels.json alone says
        params,
        read_json(REPORTS / "prepare.json"),
        read_json(REPORTS / "metrics.json"),
        read_json(REPORTS / "baseline.json"),
        errors,
        {"Confusion matrix (test)": "confusion.png", "Training curves": "training_curves.png"},
        explained,
    )
    with atomic_path(REPORT) as tmp:
        tmp.write_text(report, encoding="utf-8")
    print(f"report: wrote {REPORT}")


if __name__ == "__main__":
    main()
