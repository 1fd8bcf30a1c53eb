"""Write reports/report.md and the training-curves PNG from the other stages' reports."""

from pathlib import Path

import pandas as pd

from bertclf.config import load_params
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, read_json
from bertclf.report import render_report, training_curves_png

REPORTS = Path("reports")
OUT = REPORTS / "report.md"
CURVES_PNG = REPORTS / "training_curves.png"


@exits_cleanly
def main() -> None:
    params = load_params()
    with atomic_path(CURVES_PNG) as tmp:
        training_curves_png(REPORTS / "train", tmp)
    report = render_report(
        params,
        read_json(REPORTS / "prepare.json"),
        read_json(REPORTS / "metrics.json"),
        read_json(REPORTS / "baseline.json"),
        pd.read_csv(REPORTS / "errors.csv", dtype={"id": str}, keep_default_na=False),
        {"Confusion matrix (test)": "confusion.png", "Training curves": "training_curves.png"},
    )
    with atomic_path(OUT) as tmp:
        tmp.write_text(report, encoding="utf-8")
    print(f"report: wrote {OUT}")


if __name__ == "__main__":
    main()
