"""Head-of-line blocking in `bertclf serve`: one-text requests beside a stream of 256-text ones.

`python benchmarks/serve_fairness.py --model models/package` starts the server once for each
`--max-batch-texts` in --parts (256 first: a 256-text request is then one model call, the
behaviour before the requests took turns), and measures:
- a one-text request's latency on the idle server (its idle latency);
- with --large-clients clients posting 256-text requests back to back for --seconds, one
  client posting one-text requests: their p50 and p99, and the large requests' texts a second.
Each setting runs --repeats times, in turn; the medians and the spread (min-max) go to
reports/serve_fairness.json, and the ratios against 256 are printed. Nothing is asserted:
these machines are shared and noisy.
"""

import argparse
import json
import statistics
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports/serve_fairness.json"
sys.path.insert(0, str(ROOT / "tests"))
from helpers import free_port, load, machine, start_server, stop_server  # noqa: E402


def one_run(model: Path, part: int, texts: list[str], args) -> dict:
    port = free_port()
    log = Path(f"/tmp/bertclf-serve-fairness-{part}.log")
    server = start_server(model, port, log, "--max-batch-texts", str(part), "--no-access-log")
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
    large_texts = results["large"]["requests"] * 256 - results["large"]["errors"] * 256
    return {
        "idle_p50_ms": idle["p50_ms"],
        "small_p50_ms": results["small"]["p50_ms"],
        "small_p99_ms": results["small"]["p99_ms"],
        "small_errors": results["small"]["errors"],
        "large_texts_per_second": round(large_texts / results["large"]["seconds"], 1),
        "large_errors": results["large"]["errors"],
    }


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(ROOT / "models/package"))
    parser.add_argument("--texts", default=str(ROOT / "data/prepared/test.parquet"))
    parser.add_argument("--parts", default="256,64,32,16")
    parser.add_argument("--large-clients", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = pd.read_parquet(args.texts)["text"].tolist()
    parts = [int(p) for p in args.parts.split(",")]
    runs: dict[int, list[dict]] = {part: [] for part in parts}
    for repeat in range(args.repeats):
        for part in parts:  # in turn, so that a noisy minute spreads over every setting
            runs[part].append(one_run(Path(args.model), part, texts, args))
            print(repeat, part, runs[part][-1], flush=True)
    summary = {}
    for part, results in runs.items():
        summary[part] = {
            key: {
                "median": statistics.median(r[key] for r in results),
                "min": min(r[key] for r in results),
                "max": max(r[key] for r in results),
            }
            for key in results[0]
        }
    base = summary[parts[0]]
    for part in parts:
        s = summary[part]
        p99, idle = s["small_p99_ms"]["median"], s["idle_p50_ms"]["median"]
        large = s["large_texts_per_second"]["median"]
        print(
            f"--max-batch-texts {part}: small p99 {p99} ms ({p99 / idle:.1f}x idle), large "
            f"{large} texts/s ({large / base['large_texts_per_second']['median']:.2f}x of "
            f"{parts[0]})"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {"machine": machine(), "args": vars(args), "summary": summary, "runs": runs},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
