"""The Reuters multi-label runs of docs/multi-label.md: record a finished run, and render the
table the page shows.

A run is a clone of this project where `dvc repro` ran with `task=multi_label data=reuters` and
the overrides of that run (see the page); its `dvc repro` output was kept in a log file.

    python benchmarks/reuters.py record --run DIR --log FILE --code COMMIT --name B --change "..."
    python benchmarks/reuters.py rules --run DIR --name B   (decision rules on one run)
    python benchmarks/reuters.py table       (the Markdown tables of docs/multi-label.md)

`record` appends (or replaces, by name) the run's test metrics, its baseline's, the seconds
the train stage reported, the epochs trained and the params that differ from the defaults to
reports/multi_label_reuters.json. Nothing is asserted: it records what was measured.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports/multi_label_reuters.json"
sys.path.insert(0, str(ROOT / "tools"))
KEYS = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy")


def changed_params(params: dict, defaults: dict, prefix: str = "") -> dict:
    """The params whose value differs from the default composition (data paths left out)."""
    changed = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if isinstance(value, dict):
            changed.update(changed_params(value, default or {}, f"{name}."))
        elif value != default and not name.endswith("path"):
            changed[name] = value
    return changed


def record(args: argparse.Namespace) -> None:
    from harness import machine

    run = Path(args.run)
    log = Path(args.log).read_text(encoding="utf-8", errors="replace")
    seconds = re.findall(r"train: saved \S+ after (\d+) s of training", log)
    epochs = re.findall(r"^Epoch (\d+)/\d+", log, flags=re.MULTILINE)
    params = yaml.safe_load((run / "params.yaml").read_text())
    defaults = yaml.safe_load((ROOT / "params.yaml").read_text())
    metrics = json.loads((run / "reports/metrics.json").read_text())["test"]
    baseline = json.loads((run / "reports/baseline.json").read_text())["test"]
    entry = {
        "name": args.name,
        "change": args.change,
        "params": changed_params(params, defaults),
        "n_test": metrics["n"],
        "model": {key: metrics[key] for key in KEYS},
        "baseline": {key: baseline[key] for key in KEYS},
        "train_seconds": int(seconds[-1]) if seconds else None,
        "epochs_run": int(epochs[-1]) if epochs else None,
        "code": args.code,  # the commit of this project whose code the run ran
        "machine": {key: value for key, value in machine().items() if key != "commit"},
    }
    runs = json.loads(OUT.read_text())["runs"] if OUT.is_file() else []
    runs = [r for r in runs if r["name"] != args.name] + [entry]
    OUT.write_text(json.dumps({"runs": runs}, indent=1) + "\n", encoding="utf-8")
    print(table(runs))


def rules(args: argparse.Namespace) -> None:
    """The test micro-F1 of one run's probabilities under each decision rule, thresholds chosen
    on its validation split: what per-label thresholds and `at_least_one` give, without
    training again."""
    import pandas as pd
    from sklearn.metrics import f1_score

    from bertclf import Classifier
    from bertclf.config import parse_section
    from bertclf.thresholds import decide, tune

    run = Path(args.run)
    classifier = Classifier.load(run / "models/package")
    classes = list(classifier.classes_)
    params = yaml.safe_load((run / "params.yaml").read_text())
    scored = {}
    for split in ("val", "test"):
        frame = pd.read_parquet(run / f"data/prepared/{split}.parquet")
        truth = classifier.label_map.encode_sets(frame["labels"])
        scored[split] = (truth, classifier.predict_proba(frame["text"].tolist()))
    results = {}
    for name, threshold in (("0.5 for every label", 0.5), ("one global, tuned", None),
                            ("per label, tuned", "tuned")):  # fmt: skip
        for at_least_one in (False, True):
            task = {**params["task"], "threshold": threshold or 0.5, "at_least_one": at_least_one}
            if threshold is None:  # the global threshold alone: every label falls back to it
                task.update(threshold="tuned", min_val_positives=10**9)
            rule = tune(*scored["val"], classes, parse_section("task", task))
            truth, probabilities = scored["test"]
            decided = decide(probabilities, rule.vector(classes), at_least_one)
            key = f"{name}{', at least one' if at_least_one else ''}"
            results[key] = float(f1_score(truth, decided, average="micro"))
    runs = json.loads(OUT.read_text())["runs"]
    for entry in runs:
        if entry["name"] == args.name:
            entry["decision_rules"] = results
    OUT.write_text(json.dumps({"runs": runs}, indent=1) + "\n", encoding="utf-8")
    print(rules_table(runs))


def rules_table(runs: list[dict]) -> str:
    rows = ["| run | decision rule | test micro-F1 |", "| --- | --- | --- |"]
    for r in runs:
        for rule, value in r.get("decision_rules", {}).items():
            rows.append(f"| {r['name']} | {rule} | {value:.3f} |")
    return "\n".join(rows)


def table(runs: list[dict]) -> str:
    rows = [
        "| run | what changed | micro-F1 | macro-F1 | samples-F1 | subset acc. | "
        "baseline micro-F1 | training |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        m, b = r["model"], r["baseline"]
        minutes = "n/a" if r["train_seconds"] is None else f"{r['train_seconds'] / 60:.1f} min"
        rows.append(
            f"| {r['name']} | {r['change']} | {m['micro_f1']:.3f} | {m['macro_f1']:.3f} | "
            f"{m['samples_f1']:.3f} | {m['subset_accuracy']:.3f} | {b['micro_f1']:.3f} | "
            f"{minutes}, {r['epochs_run']} epochs |"
        )
    return "\n".join(rows)


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    """`record`'s options: the run's clone, its `dvc repro` log, the code's commit, its name
    and what changed."""
    parser.add_argument("--run", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--code", required=True, help="the commit whose code the run ran")
    parser.add_argument("--name", required=True)
    parser.add_argument("--change", required=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_record_arguments(commands.add_parser("record"))
    p = commands.add_parser("rules")
    p.add_argument("--run", required=True)
    p.add_argument("--name", required=True)
    commands.add_parser("table")
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    elif args.command == "rules":
        rules(args)
    else:
        runs = json.loads(OUT.read_text())["runs"]
        print(table(runs) + "\n\n" + rules_table(runs))


if __name__ == "__main__":
    main()
