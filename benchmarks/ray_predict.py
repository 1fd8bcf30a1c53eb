"""Batch scoring throughput: `bertclf predict` in one process, `--shard` over two processes
run at once, and `--engine ray` on a local Ray cluster, on the same rows of one package.

    python benchmarks/ray_predict.py --model PACKAGE [--rows 2000] [--rounds 3]

The rows are the first `--rows` Reuters test texts (../shared; repeated past its 3,019),
written once as one Parquet file (for the local engine and the shards) and as four (for Ray).
Each round runs every variant in turn; each run is a whole command, start-up and package
loading included, as a user would time it. Writes `--output` (by default
docs/results/ray_predict.json) with every run and the medians, and prints rows per second and
the ratios against the local engine measured in the same rounds. Nothing is asserted: these
machines are shared and noisy.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs/results/ray_predict.json"
sys.path.insert(0, str(ROOT / "tools"))
from harness import SHARED, command_env, machine  # noqa: E402

REUTERS = SHARED / "fixtures" / "reuters21578_modapte_test.jsonl"


def variants(model: str, data: Path) -> dict[str, list[list[str]]]:
    """Each variant's commands (run at once), writing under a fresh folder `{out}`."""
    base = ["bertclf", "predict", "--model", model, "--id-column", "id", "--quiet"]
    one_file = [*base, "--input", str(data / "all.parquet")]
    ray = [*base, "--engine", "ray", "--input", str(data / "parts"), "--output", "{out}/scored"]
    return {
        "local": [[*one_file, "--output", "{out}/all.parquet"]],
        "shard_2_processes": [
            [*one_file, "--output", f"{{out}}/part-{i}.parquet", "--shard", f"{i}/2"]
            for i in range(2)
        ],
        "ray_1_actor": [ray],
        "ray_2_actors": [[*ray, "--concurrency", "2", "--cpus-per-actor", "0.5"]],
    }


def timed(commands: list[list[str]]) -> float:
    """Seconds until every command, started together, has finished (each must succeed)."""
    out = tempfile.mkdtemp(prefix="bertclf-bench-")
    started = time.perf_counter()
    processes = [
        subprocess.Popen([a.replace("{out}", out) for a in c], env=command_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]  # fmt: skip
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(process.args)} failed:\n{stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the package to score with")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    texts = pd.read_json(REUTERS, lines=True)["text"]
    repeats = -(-args.rows // len(texts))  # more rows than the file holds repeat its texts
    table = pd.DataFrame({"text": pd.concat([texts] * repeats).head(args.rows).tolist()})
    table.insert(0, "id", [f"row{i}" for i in range(len(table))])
    data = Path(tempfile.mkdtemp(prefix="bertclf-bench-data-"))
    (data / "parts").mkdir()
    table.to_parquet(data / "all.parquet", index=False)
    for part in range(4):
        table.iloc[part::4].to_parquet(data / "parts" / f"part-{part}.parquet", index=False)
    runs = {name: [] for name in variants(args.model, data)}
    for _ in range(args.rounds):
        for name, commands in variants(args.model, data).items():
            runs[name].append(timed(commands))
            print(f"{name}: {runs[name][-1]:.1f} s", flush=True)
    rates = {name: round(len(table) / statistics.median(s), 1) for name, s in runs.items()}
    result = {
        "machine": machine(),
        "model": args.model,
        "rows": len(table),
        "rounds": args.rounds,
        "seconds": runs,
        "rows_per_second": rates,
        "ratio_to_local": {name: round(rate / rates["local"], 3) for name, rate in rates.items()},
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, rate in result["rows_per_second"].items():
        spread = f"{min(runs[name]):.1f}-{max(runs[name]):.1f} s"
        print(f"{name}: {rate} rows/s ({result['ratio_to_local'][name]}x local; runs {spread})")


if __name__ == "__main__":
    main()
