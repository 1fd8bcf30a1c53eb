"""The text-pair runs of docs/pairs-and-regression.md (MRPC, single-label; STS-B, regression):
record a finished run, and render the table the page shows.

A run is a clone of this project, beside ../shared, where `dvc repro` ran with `data=mrpc` or
`task=regression data=stsb` and the overrides of that run (see the page); its `dvc repro`
output was kept in a log file.

    python benchmarks/pairs.py record --run DIR --log FILE --code COMMIT --name N --change "..."
    python benchmarks/pairs.py table

`record` appends (or replaces, by name) to docs/results/pairs_and_regression.json: the run's
test metrics beside its baseline's (same splits), the standard error of the model's headline
figure and whether the model beats the baseline by more than two of them, the seconds the
train stage reported, and the same figure computed again from `bertclf predict`'s output on
the test split (the package, through the command a user runs). Nothing is asserted: it records
what was measured.
"""

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs/results/pairs_and_regression.json"
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))
FIGURES = {  # per task: the figures the table shows, the first the headline
    "single_label": ("accuracy", "macro_f1", "positive_f1"),
    "regression": ("pearson", "spearman", "rmse"),
}
POSITIVE = "equivalent"  # MRPC's F1 is the F1 of this class, as GLUE reports it


def figures(metrics: dict, task: str) -> dict:
    found = {key: metrics[key] for key in FIGURES[task] if key in metrics}
    if task == "single_label" and POSITIVE in metrics.get("per_class", {}):
        found["positive_f1"] = metrics["per_class"][POSITIVE]["f1"]
    return found


def standard_error(value: float, n: int, key: str) -> float:
    """Of a test accuracy (binomial) or a Pearson correlation (Fisher's z mapped back)."""
    if key == "accuracy":
        return math.sqrt(value * (1 - value) / n)
    return (1 - value**2) / math.sqrt(n - 3)


def predicted_figure(run: Path, task: str, runtime: list[str]) -> tuple[float, int]:
    """The headline figure from `bertclf predict --text-pair-column` (with the `runtime`
    options) on the run's test split, and the number of test pairs."""
    test = pd.read_parquet(run / "data/prepared/test.parquet")
    with tempfile.TemporaryDirectory() as scratch:
        source, output = Path(scratch) / "test.csv", Path(scratch) / "predicted.csv"
        test.to_csv(source, index=False)
        subprocess.run(
            ["bertclf", "predict", "--model", str(run / "models/package"), "--input",
             str(source), "--text-pair-column", "text_pair", "--output", str(output),
             "--quiet", *runtime],
            check=True,
            cwd=run,
        )  # fmt: skip
        predicted = pd.read_csv(output)
    if task == "regression":
        return float(np.corrcoef(test["score"], predicted["score"])[0, 1]), len(test)
    return float((predicted["label"] == test["label"]).mean()), len(test)


def record(args: argparse.Namespace) -> None:
    from harness import machine
    from reuters import changed_params

    run = Path(args.run)
    log = Path(args.log).read_text(encoding="utf-8", errors="replace")
    seconds = re.findall(r"train: saved \S+ after (\d+) s of training", log)
    epochs = re.findall(r"^Epoch (\d+)/\d+", log, flags=re.MULTILINE)
    params = yaml.safe_load((run / "params.yaml").read_text())
    defaults = yaml.safe_load((ROOT / "params.yaml").read_text())
    task = params["task"]["type"]
    metrics = json.loads((run / "reports/metrics.json").read_text())["test"]
    baseline = json.loads((run / "reports/baseline.json").read_text())["test"]
    headline = FIGURES[task][0]
    error = standard_error(metrics[headline], metrics["n"], headline)
    again, n = predicted_figure(run, task, ["--runtime", "tensorflow"])
    default, _ = predicted_figure(run, task, [])  # OpenVINO, bf16 where the CPU has it
    entry = {
        "name": args.name,
        "data": params["data"]["name"],
        "task": task,
        "change": args.change,
        "params": changed_params(params, defaults),
        "n_test": metrics["n"],
        "model": figures(metrics, task),
        "baseline": figures(baseline, task),
        "headline": headline,
        "standard_error": error,
        "beats_baseline_by_two_se": metrics[headline] - baseline[headline] > 2 * error,
        # as evaluate computed the reported figure (TensorFlow, float32), and as a user's
        # default runs it (OpenVINO; bfloat16 on this CPU)
        "bertclf_predict": {headline: again, "difference": again - metrics[headline], "n": n},
        "bertclf_predict_default_runtime": {
            headline: default,
            "difference": default - metrics[headline],
        },
        "train_seconds": int(seconds[-1]) if seconds else None,
        "epochs_run": int(epochs[-1]) if epochs else None,
        "code": args.code,  # the commit of this project whose code the run ran
        "machine": {key: value for key, value in machine().items() if key != "commit"},
    }
    runs = json.loads(OUT.read_text())["runs"] if OUT.is_file() else []
    runs = [r for r in runs if r["name"] != args.name] + [entry]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"runs": runs}, indent=1) + "\n", encoding="utf-8")
    print(table(runs))


def shown(values: dict, task: str) -> str:
    return ", ".join(f"{key} {values[key]:.3f}" for key in FIGURES[task] if key in values)


def table(runs: list[dict]) -> str:
    rows = [
        "| run | data, task | what changed | model | baseline (same splits) | 2 SE | beats it "
        "| `bertclf predict`: TensorFlow; default runtime | training |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        again, default = r["bertclf_predict"], r["bertclf_predict_default_runtime"]
        minutes = "n/a" if r["train_seconds"] is None else f"{r['train_seconds'] / 60:.1f} min"
        rows.append(
            f"| {r['name']} | {r['data']}, {r['task']} ({r['n_test']} test pairs) | "
            f"{r['change']} | {shown(r['model'], r['task'])} | {shown(r['baseline'], r['task'])} | "
            f"{2 * r['standard_error']:.3f} | {'yes' if r['beats_baseline_by_two_se'] else 'no'} | "
            f"{r['headline']} {again[r['headline']]:.4f} ({again['difference']:+.1e}); "
            f"{default[r['headline']]:.4f} ({default['difference']:+.1e}) | "
            f"{minutes}, {r['epochs_run']} epochs |"
        )
    return "\n".join(rows)


def main() -> None:
    from reuters import add_record_arguments

    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_record_arguments(commands.add_parser("record"))
    commands.add_parser("table")
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    else:
        print(table(json.loads(OUT.read_text())["runs"]))


if __name__ == "__main__":
    main()
