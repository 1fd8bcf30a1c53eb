"""`bertclf experiments`: DVC's experiments with their headline metrics and the params that
differ between them. `dvc exp show` lists every param and metric (over 2,000 columns here)."""

import pandas as pd

# Metric columns shown, by their key: DVC prefixes a key with its file
# (reports/metrics.json:test.accuracy) where two metric files share it.
HEADLINE_METRICS = (
    "test.accuracy",
    "test.macro_f1",
    "test.micro_f1",  # multi-label's (single-label's equals its accuracy: not shown twice)
    "test.log_loss",
    "val.loss",
    "train_seconds",
    "learner",  # learner.method as auto resolved it (reports/train_time.json)
)
MEASURES_FILE = "reports/metrics.json"  # the model's own figures (baseline.json has the same keys)
TRAIN_TIME_FILE = "reports/train_time.json"  # train_seconds and the learner auto chose


def experiments_table(rows: list[dict], param_sections: set[str]) -> pd.DataFrame:
    """One row per experiment (and the workspace and baseline commits): its name, the headline
    metrics of the model, and each param whose value is not the same in every row."""
    frame = pd.DataFrame(rows)
    names = frame["Experiment"].fillna(frame["rev"]).astype(str)
    table = pd.DataFrame({"experiment": names, "created": frame["Created"].fillna("")})
    for key in HEADLINE_METRICS:
        column = _metric_column(frame.columns, key)
        if key == "test.micro_f1" and "test.accuracy" in table:
            continue
        if column is not None and frame[column].notna().any():
            table[key] = frame[column]
    by_key: dict[str, list[str]] = {}  # a key in several params files: one column
    for column in frame.columns:
        key = column.split(":")[-1]
        if key.split(".")[0] in param_sections:
            by_key.setdefault(key, []).append(column)
    for key, columns in by_key.items():
        values = frame[columns].bfill(axis=1).iloc[:, 0]
        if values.dropna().astype(str).nunique() > 1:
            table[key] = values
    return table


def _metric_column(columns, key: str) -> str | None:
    """The column of `key`: the model's own file's when several files have it."""
    for owner in (MEASURES_FILE, TRAIN_TIME_FILE):  # the pipeline's own files first
        if f"{owner}:{key}" in columns:
            return f"{owner}:{key}"
    matches = [c for c in columns if c == key or c.endswith(f":{key}")]
    return matches[0] if len(matches) == 1 else None
