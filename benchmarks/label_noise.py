"""How well the label_issues stage finds labels known to be wrong: inject noise into the training
split, run cross-validation and label_issues through the pipeline, and score what was flagged.

    git clone . ../noise
    python benchmarks/label_noise.py --repo ../noise --folds 5 --share 0.05 \\
        --out docs/results/label_noise/fine_food.json
    python benchmarks/label_noise.py --repo ../noise --folds 5 --share 0 \\
        --out docs/results/label_noise/fine_food_clean.json
    python benchmarks/label_noise.py --repo ../noise --folds 3 --share 0.05 \\
        --out docs/results/label_noise/reuters.json task=multi_label data=reuters

In <repo> (a clone of the project; this venv's bertclf runs it) it composes params.yaml with
cv=kfoldK and the overrides given, runs `dvc repro prepare`, then changes the labels of `--share`
of the prepared training rows, drawn with `--seed` (single-label: another class; multi-label:
one label added or removed), and records the change as the prepare stage's output
(`dvc commit -f prepare`), so that validation and test rows, and the split itself, stay as they
were. `dvc repro label_issues` then trains the K folds and flags rows. Scored against the
changed rows: every filter of label_issues.filter_by on the same out-of-fold table, and the
simplest baseline, the training rows ranked by the out-of-fold probability of their given
label (multi-label: of the given label set, the product over labels of p or 1 - p), cut at the
same number of rows as the default filter flagged and at the number of changed rows. With
`--share 0` it records the top of the list on the data as it is, for a person to read. Writes
one JSON file; nothing is asserted.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))

from harness import machine  # noqa: E402

from bertclf.config import LABEL_ISSUE_FILTERS, LabelIssuesConfig  # noqa: E402
from bertclf.label_issues import (  # noqa: E402
    PROBABILITIES,
    TASK_LABEL_ISSUES,
    find_label_issues,
)
from bertclf.labels import LabelMap  # noqa: E402
from bertclf.tasks import task_of  # noqa: E402

TOP = 25  # rows of the list kept in the result


def run(args: list[str], repo: Path) -> str:
    result = subprocess.run(args, cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def inject(train: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """`share` of the rows with a changed label; returns the table and the changed rows' ids."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(train), round(share * len(train)), replace=False))
    noisy = train.copy()
    if "labels" in train:  # multi-label: one label added or removed
        names = sorted({label for labels in train["labels"] for label in labels})
        sets = list(noisy["labels"])
        for i in rows:
            label = names[rng.integers(len(names))]
            current = set(sets[i])
            sets[i] = sorted(current ^ {label})
        noisy["labels"] = sets
    else:
        classes = sorted(train["label"].unique())
        labels = noisy["label"].to_numpy(dtype=object)
        for i in rows:
            labels[i] = rng.choice([c for c in classes if c != labels[i]])
        noisy["label"] = labels
    return noisy, train["id"].iloc[rows].tolist()


def given_label_probability(table: pd.DataFrame, task) -> np.ndarray:
    """The baseline's score: the out-of-fold probability of the given label (set)."""
    probabilities = np.stack(table[PROBABILITIES].to_numpy()).astype(np.float64)
    targets = task.targets(table)
    if task.multi_label:
        return np.prod(np.where(targets > 0, probabilities, 1 - probabilities), axis=1)
    return probabilities[np.arange(len(table)), targets]


def label_quality(table: pd.DataFrame, task) -> np.ndarray:
    """cleanlab's label quality of every row, as label_issues ranks its flagged rows."""
    probabilities = np.stack(table[PROBABILITIES].to_numpy()).astype(np.float64)
    config = LabelIssuesConfig(True, "prune_by_noise_rate", 1.0, 0.05)
    return TASK_LABEL_ISSUES[task.name].flag(task.targets(table), probabilities, config)[0]


def scores(found: set[str], changed: set[str]) -> dict:
    hits = len(found & changed)
    precision = hits / len(found) if found else 0.0
    recall = hits / len(changed) if changed else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"flagged": len(found), "correct": hits, "precision": precision, "recall": recall,
            "f1": f1}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5, choices=(3, 5, 10))
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    repo = args.repo.resolve()

    run(["bertclf", "params", f"cv=kfold{args.folds}", *args.overrides], repo)
    run(["dvc", "repro", "prepare"], repo)
    changed: list[str] = []
    if args.share > 0:
        split = repo / "data/prepared/train.parquet"
        noisy, changed = inject(pd.read_parquet(split), args.share, args.seed)
        noisy.to_parquet(split, index=False)
        run(["dvc", "commit", "-f", "prepare"], repo)
    start = time.perf_counter()
    log = run(["dvc", "repro", "label_issues"], repo)
    seconds = time.perf_counter() - start

    task = task_of(LabelMap.load(repo / "models/labels.json"))
    table = pd.read_parquet(repo / "data/out_of_fold.parquet")
    changed_set = set(changed)
    filters = {}
    for name in LABEL_ISSUE_FILTERS:
        config = LabelIssuesConfig(True, name, 1.0, 0.05)
        issues, _ = find_label_issues(table, task, config, "|")
        filters[name] = scores(set(issues["id"]), changed_set)
    ranked = table["id"].to_numpy()[np.argsort(given_label_probability(table, task))]
    default_count = filters["prune_by_noise_rate"]["flagged"]
    quality = label_quality(table, task)
    by_quality = table["id"].to_numpy()[np.argsort(quality, kind="stable")]
    listed = pd.read_csv(repo / "reports/label_issues.csv", dtype={"id": str},
                         keep_default_na=False)  # fmt: skip
    top = listed.head(TOP).assign(changed=lambda d: d["id"].isin(changed_set))
    result = {
        "machine": machine(),
        "overrides": [f"cv=kfold{args.folds}", *args.overrides],
        "seed": args.seed,
        "training_rows": len(table),
        "changed_rows": len(changed),
        "pipeline_seconds": seconds,
        "cv": json.loads((repo / "reports/cv.json").read_text())["mean"],
        "filters": filters,
        "baseline_given_label_probability": {
            "at_default_count": scores(set(ranked[:default_count]), changed_set),
            "at_changed_count": scores(set(ranked[: len(changed)]), changed_set),
        },
        "label_quality_ranking_at_changed_count": scores(
            set(by_quality[: len(changed)]), changed_set
        ),
        "changed_ids": changed,
        "top": top.to_dict(orient="records"),
        "log": log.splitlines()[-12:],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("changed_rows", "filters")}, indent=1))
    print(json.dumps(result["baseline_given_label_probability"], indent=1))


if __name__ == "__main__":
    main()
