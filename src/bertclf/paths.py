"""Where the stages read and write, relative to the project's root (as `dvc.yaml` names them).

Every stage takes its paths from here; `dvc.yaml` must name the same ones.
"""

from pathlib import Path

SPLITS = ("train", "val", "test")

DEMO_DATA = Path("data/raw/fine_food")
PREPARED = Path("data/prepared")
TOKENIZED = Path("data/tokenized")
FOLDS = Path("data/folds.parquet")

PRETRAINED = Path("models/pretrained")
LABELS = Path("models/labels.json")
TRAINED = Path("models/trained")
CALIBRATION = Path("models/calibration.json")
PACKAGE = Path("models/package")

REPORTS = Path("reports")
PREPARE_REPORT = REPORTS / "prepare.json"
TOKENIZE_REPORT = REPORTS / "tokenize.json"
TRAIN_LOGS = REPORTS / "train"  # DVCLive's
METRICS = REPORTS / "metrics.json"
PLOTS = REPORTS / "plots"
CONFUSION_PNG = REPORTS / "confusion.png"
ERRORS = REPORTS / "errors.csv"
EXPLAINED_MISTAKES = REPORTS / "explained_mistakes.json"  # the first errors' token attributions
BASELINE = REPORTS / "baseline.json"
REPORT = REPORTS / "report.md"
TRAINING_CURVES_PNG = REPORTS / "training_curves.png"
FOLDS_REPORT = REPORTS / "cv" / "folds.json"
CV_SUMMARY = REPORTS / "cv.json"
OUT_OF_FOLD = Path("data/out_of_fold.parquet")
LABEL_ISSUES = REPORTS / "label_issues.csv"
LABEL_ISSUES_SUMMARY = REPORTS / "label_issues.json"
PACKAGE_REPORT = REPORTS / "package.json"


def prepared_split(name: str) -> Path:
    return PREPARED / f"{name}.parquet"


def fold_metrics(fold: int) -> Path:
    return REPORTS / "cv" / f"fold_{fold}.json"


def held_out_predictions(fold: int) -> Path:
    """What fold `fold`'s model predicted on the training rows it held out."""
    return REPORTS / "cv" / f"fold_{fold}_held_out.parquet"
