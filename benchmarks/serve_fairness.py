"""Head-of-line blocking in `bertclf serve`: one-text requests beside a stream of 256-text ones.

    python benchmarks/serve_fairness.py --model PACKAGE --texts TABLE --baseline REV

starts the server once for each setting, in turn, and measures:
- a one-text request's latency on the idle server (its idle latency);
- with --large-clients clients posting 256-text requests back to back for --seconds, one
  client posting one-text requests: their p50 and p99, and the large requests' texts a second.
The settings: the server of commit REV (a git worktree of it, run from its own src/; its
default --max-batch-texts, 256), and this one's with each --max-batch-texts in --parts.
Each runs --repeats times; the medians and the spread (min-max) go to
docs/results/serve_fairness.json, and the ratios against the baseline are printed. Nothing is
asserted: these machines are shared and noisy. The package must be one both can read.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs/results/serve_fairness.json"
sys.path.insert(0, str(ROOT / "tools"))
from harness import command_env, free_port, load, machine, start_server, stop_server  # noqa: E402


def one_run(model: Path, options: list[str], texts: list[str], args, env: dict) -> dict:
    port = free_port()
    log = Path(tempfile.gettempdir()) / "bertclf-serve-fairness.log"
    server = start_server(model, port, log, *options, "--no-access-log", env=env)
    try:
        load(port, texts, 1, 3.0, 256)  # warm the model's shapes
        idle = load(port, texts, 1, 5.0, 1)
        results: dict = {}

        def large() -> None:
            results["large"] = load(port, texts, args.large_clients, args.seconds, 256)

        thread = threading.Thread(target=large)
        thread.start()
        results["small"] = load(port, texts, 1, args.seconds, 1)
        thread.join()
    finally:
        stop_server(server)
    answered = results["large"]["requests"] - results["large"]["errors"]
    return {
        "idle_p50_ms": idle["p50_ms"],
        "small_p50_ms": results["small"]["p50_ms"],
        "small_p99_ms": results["small"]["p99_ms"],
        "small_errors": results["small"]["errors"],
        "large_texts_per_second": round(answered * 256 / results["large"]["seconds"], 1),
        "large_errors": results["large"]["errors"],
    }


def main() -> None:
    from bertclf.tables import read_table

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a package both servers can read")
    parser.add_argument("--texts", required=True, help="a table with a text column")
    parser.add_argument("--text-chars", type=int, default=600,
                        help="texts cut to this many characters: 256 fit in 200,000")  # fmt: skip
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--parts", default="256,64,32,16")
    parser.add_argument("--large-clients", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = [text[: args.text_chars] for text in read_table(args.texts)["text"]]
    worktree = Path(tempfile.mkdtemp(prefix="bertclf-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    baseline_env = {**command_env(), "PYTHONPATH": str(worktree / "src")}
    settings = {"baseline": ([], baseline_env)}
    for part in args.parts.split(","):
        settings[f"max_batch_texts_{part}"] = (["--max-batch-texts", part], command_env())
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    try:
        for repeat in range(args.repeats):
            for name, (options, env) in settings.items():  # in turn: noise spreads over all
                runs[name].append(one_run(Path(args.model), options, texts, args, env))
                print(repeat, name, runs[name][-1], flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)
    summary = {
        name: {
            key: {
                "median": statistics.median(r[key] for r in results),
                "min": min(r[key] for r in results),
                "max": max(r[key] for r in results),
            }
            for key in results[0]
        }
        for name, results in runs.items()
    }
    base = summary["baseline"]
    for name, s in summary.items():
        p50, p99 = s["small_p50_ms"]["median"], s["small_p99_ms"]["median"]
        idle, large = s["idle_p50_ms"]["median"], s["large_texts_per_second"]["median"]
        print(
            f"{name}: small p50 {p50} ms, p99 {p99} ms ({p99 / idle:.1f}x idle {idle} ms); "
            f"large {large} texts/s ({large / base['large_texts_per_second']['median']:.2f}x "
            "the baseline's)"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "args": vars(args), "summary": summary, "runs": runs}
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
