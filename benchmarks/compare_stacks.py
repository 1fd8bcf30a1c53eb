"""`make bench` on two checkouts of bertclf, alternating, on one machine: for changes that must not
cost speed (the move to Keras 3 and KerasHub was one).

    python benchmarks/compare_stacks.py --before ../old --after . --runs 3

Each checkout runs its own `benchmarks/bench.py` with its own `.venv` (so each runs on the
libraries its lock pins), before, after, before, after, ...; every run's reports/bench.json is
kept. Writes reports/stack_comparison.json: the runs, the medians and the ratios after/before
of the medians. Nothing is asserted: these machines are shared, which is why the runs alternate.
`table` prints the Markdown table docs/encoder-stack.md shows.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports/stack_comparison.json"
# (variant, its throughput key, unit)
MEASURES = (
    ("predict_bertclf", "texts_per_second", "texts/s"),
    ("predict_seed_way", "texts_per_second", "texts/s"),
    ("train_buckets", "real_tokens_per_second", "real tokens/s"),
    ("train_fixed_padding", "real_tokens_per_second", "real tokens/s"),
    ("train_buckets_xla", "real_tokens_per_second", "real tokens/s"),
    ("train_buckets_bf16", "real_tokens_per_second", "real tokens/s"),
)


def git_commit(checkout: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def bench_once(checkout: Path) -> dict:
    start = time.perf_counter()
    subprocess.run(
        [str(checkout / ".venv/bin/python"), "benchmarks/bench.py"],
        cwd=checkout,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    result = json.loads((checkout / "reports/bench.json").read_text())
    result["wall_seconds"] = time.perf_counter() - start
    return result


def summarise(runs: dict[str, list[dict]]) -> dict:
    medians = {
        side: {
            variant: statistics.median(run["variants"][variant][key] for run in side_runs)
            for variant, key, _ in MEASURES
        }
        for side, side_runs in runs.items()
    }
    ratios = {v: medians["after"][v] / medians["before"][v] for v, _, _ in MEASURES}
    return {"medians": medians, "ratios_after_over_before": ratios}


def compare(before: Path, after: Path, count: int) -> dict:
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for i in range(count):
        for side, checkout in (("before", before), ("after", after)):
            print(f"run {i + 1}/{count}: {side} ({checkout})", file=sys.stderr, flush=True)
            runs[side].append(bench_once(checkout))
    return {
        "before": {"commit": git_commit(before)},
        "after": {"commit": git_commit(after)},
        "order": "before, after, alternating",
        **summarise(runs),
        "runs": runs,
    }


def table(result: dict) -> str:
    lines = [
        "| variant | before: runs | before: median | after: runs | after: median "
        "| after / before |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for variant, key, unit in MEASURES:
        cells = []
        for side in ("before", "after"):
            values = [run["variants"][variant][key] for run in result["runs"][side]]
            cells.append(", ".join(f"{v:,.0f}" for v in values))
            cells.append(f"{result['medians'][side][variant]:,.0f} {unit}")
        ratio = result["ratios_after_over_before"][variant]
        lines.append(f"| {variant} | {' | '.join(cells)} | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", nargs="?", choices=["run", "table"], default="run")
    parser.add_argument("--before", type=Path, help="the checkout measured first (baseline)")
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.command == "table":
        print(table(json.loads(OUT.read_text())))
        return
    if args.before is None:
        parser.error("--before is required")
    result = compare(args.before.resolve(), args.after.resolve(), args.runs)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
