"""Choosing the default recipe by evidence: the study's trials, then recipes over seeds.

    python benchmarks/recipes.py study --repo ../repro      # the trials table, as it goes
    python benchmarks/recipes.py run --repo ../repro \\
        --recipe default= --recipe "tuned=train=tuned head=tuned tokenize.max_length=128"
    python benchmarks/recipes.py table      # the Markdown docs/default-recipe.md shows
    python benchmarks/recipes.py jobs --repo ../repro       # what --jobs 2 costs

`study` reads the Optuna study `bertclf tune` keeps in <repo>/.tune/<space>.db and writes
docs/results/tune_<space>.csv (one row per trial: state, validation loss, duration, values).
`run` trains each recipe (Hydra overrides) with each seed through the pipeline,
`dvc exp run evaluate -S seed=N ...` in <repo> (a checkout with the DAG built), seeds
interleaved so that a run cut short leaves pairs, and writes one <recipe>-seed<N>.json in
docs/results/recipes/ (or --results) as each finishes: test metrics (with and without the
temperature), the fit's wall clock, epochs run and the composed params. Runs whose file exists
are skipped, so the comparison may span sessions. `seed` drives the validation split, the head's
initialisation, dropout and batch order; the test split is the dataset's own file and stays.
`jobs` times the same small study (2 trials of one epoch) with --jobs 1 and --jobs 2 and
writes docs/results/tune_jobs.json.
Nothing is asserted: the machine is shared, and training time is one run's wall clock.
"""

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/results"
# metrics.json's test keys each run records, and the table's columns
TEST_KEYS = (
    "accuracy",
    "macro_f1",
    "log_loss",
    "ece",
    "log_loss_before_temperature",
    "ece_before_temperature",
)
COLUMNS = (
    ("accuracy", "test accuracy", 3),
    ("macro_f1", "macro F1", 3),
    ("train_seconds", "training (s)", 0),
    ("epochs_run", "epochs", 1),
    ("ece_before_temperature", "ECE before T", 4),
    ("ece", "ECE after T", 4),
    ("log_loss_before_temperature", "log loss before T", 4),
    ("log_loss", "log loss after T", 4),
)


def study_table(repo: Path, space: str) -> Path:
    import optuna

    storage = f"sqlite:///{repo / '.tune' / space}.db"
    study = optuna.load_study(study_name=space, storage=storage)
    out = RESULTS / f"tune_{space}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({key for trial in study.trials for key in trial.params})
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "state", "val_loss", "epochs_reported", "seconds", *keys])
        for trial in study.trials:
            seconds = (
                (trial.datetime_complete - trial.datetime_start).total_seconds()
                if trial.datetime_complete and trial.datetime_start
                else ""
            )
            reported = trial.intermediate_values
            value = trial.value if trial.value is not None else min(reported.values(), default="")
            row = [trial.number, trial.state.name, value, len(reported), seconds]
            writer.writerow([*row, *(trial.params.get(key, "") for key in keys)])
    return out


def run_recipe(repo: Path, name: str, overrides: list[str], seed: int) -> dict:
    command = [sys.executable, "-m", "dvc", "exp", "run", "evaluate", "-S", f"seed={seed}"]
    for override in overrides:
        command += ["-S", override]
    start = time.perf_counter()
    subprocess.run([*command, "--name", f"recipe-{name}-seed{seed}"], cwd=repo, check=True)
    wall = time.perf_counter() - start
    reports, params = repo / "reports", repo / "params.yaml"
    import yaml

    metrics = json.loads((reports / "metrics.json").read_text())["test"]
    composed = yaml.safe_load(params.read_text())
    epochs = (reports / "train/plots/metrics/eval/loss.tsv").read_text().splitlines()
    return {
        "recipe": name,
        "overrides": overrides,
        "seed": seed,
        "test": {key: metrics[key] for key in TEST_KEYS},
        "train_seconds": json.loads((reports / "train_time.json").read_text())["train_seconds"],
        "epochs_run": len(epochs) - 1,  # early stopping may end before train.epochs
        "temperature": json.loads((repo / "models/calibration.json").read_text())["temperature"],
        "pipeline_seconds": round(wall, 1),
        "params": {key: composed[key] for key in ("train", "head", "tokenize", "seed")},
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        ).stdout.strip(),
    }


def run(repo: Path, recipes: dict[str, list[str]], seeds: list[int], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for name, overrides in recipes.items():
            out = folder / f"{name}-seed{seed}.json"
            if out.exists():
                print(f"{out.name}: done before, skipped")
                continue
            result = run_recipe(repo, name, overrides, seed)
            out.write_text(json.dumps(result, indent=2) + "\n")
            print(f"{out.name}: accuracy {result['test']['accuracy']:.3f}, "
                  f"{result['train_seconds']:.0f} s of training")  # fmt: skip


def jobs_cost(repo: Path, trials: int) -> Path:
    """The same study (one epoch a trial, no pruning) with --jobs 1, then --jobs 2."""
    import sqlite3

    import yaml

    space = {
        "seed": 7,
        "pruner": {"type": "none"},
        "space": {
            "train.learning_rate": {"type": "float", "low": 3.0e-5, "high": 1.0e-4, "log": True},
            "train.epochs": {"type": "int", "low": 1, "high": 1},
        },
    }
    result = {"trials": trials, "space": space}
    for jobs in (1, 2):
        name = f"jobs-cost-{jobs}"
        (repo / f"conf/tune/{name}.yaml").write_text(yaml.safe_dump(space))
        (repo / f".tune/{name}.db").unlink(missing_ok=True)
        command = ["bertclf", "tune", "--space", name, "--trials", str(trials), "--jobs", str(jobs)]
        start = time.perf_counter()
        subprocess.run(command, cwd=repo, check=True)
        seconds = time.perf_counter() - start
        with sqlite3.connect(repo / f".tune/{name}.db") as db:
            rows = db.execute("SELECT datetime_start, datetime_complete FROM trials").fetchall()
        result[f"jobs_{jobs}"] = {"seconds": round(seconds, 1), "trials": rows}
    ratio = result["jobs_2"]["seconds"] / result["jobs_1"]["seconds"]
    result["ratio_jobs_2_over_1"] = round(ratio, 3)
    out = RESULTS / "tune_jobs.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


def value(result: dict, key: str) -> float:
    return result["test"][key] if key in result["test"] else result[key]


def study_markdown(space: str) -> str:
    with (RESULTS / f"tune_{space}.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    keys = [key for key in rows[0] if "." in key] if rows else []
    header = ["trial", "state", "val loss", "epochs", "minutes", *keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["trial"], row["state"].lower()]
        cells.append(f"{float(row['val_loss']):.4f}" if row["val_loss"] else "")
        cells.append(row["epochs_reported"])
        cells.append(f"{float(row['seconds']) / 60:.1f}" if row["seconds"] else "")
        for key in keys:
            try:
                number = float(row[key])
                cells.append(row[key] if number.is_integer() else f"{number:.3g}")
            except ValueError:
                cells.append(row[key])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recipes_markdown(folder: Path = RESULTS / "recipes") -> str:
    runs: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        runs.setdefault(result["recipe"], []).append(result)
    header = ["recipe", "seeds", *(title for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, results in runs.items():
        cells = [name, " ".join(str(r["seed"]) for r in sorted(results, key=lambda r: r["seed"]))]
        for key, _, digits in COLUMNS:
            values = [value(r, key) for r in results]
            spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.{digits}f}{spread}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    study = commands.add_parser("study", help="write the study's trials table")
    study.add_argument("--repo", type=Path, default=ROOT)
    study.add_argument("--space", default="default")
    runs = commands.add_parser("run", help="train the recipes over the seeds")
    runs.add_argument("--repo", type=Path, default=ROOT)
    runs.add_argument("--recipe", action="append", required=True, help="NAME=OVERRIDES")
    runs.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    runs.add_argument("--results", type=Path, default=RESULTS / "recipes", help="the runs' folder")
    jobs = commands.add_parser("jobs", help="time a small study with --jobs 1 and --jobs 2")
    jobs.add_argument("--repo", type=Path, default=ROOT)
    jobs.add_argument("--trials", type=int, default=2)
    tables = commands.add_parser("table", help="print the trials and the comparison as Markdown")
    tables.add_argument("--space", default="default")
    tables.add_argument(
        "--results", type=Path, default=RESULTS / "recipes", help="the runs' folder"
    )
    args = parser.parse_args()
    if args.command == "study":
        print(study_table(args.repo.resolve(), args.space))
    elif args.command == "run":
        recipes = {}
        for recipe in args.recipe:
            name, _, overrides = recipe.partition("=")
            recipes[name] = overrides.split()
        run(args.repo.resolve(), recipes, args.seeds, args.results)
    elif args.command == "jobs":
        print(jobs_cost(args.repo.resolve(), args.trials))
    else:
        print(study_markdown(args.space) + "\n\n" + recipes_markdown(args.results))


if __name__ == "__main__":
    main()
