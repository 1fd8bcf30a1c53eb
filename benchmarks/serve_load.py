"""Load on `bertclf serve`: concurrent clients posting for a fixed time; requests per second,
latency percentiles and errors.

`python benchmarks/serve_load.py --model models/package` starts the server on loopback three
times: as it starts by default (the `auto` runtime, concurrent requests merged into one model
call), on TensorFlow (--runtime tensorflow, merged), and without merging (--max-batch-texts 1);
loads each the same way, writes reports/serve_bench.json and prints the ratios. Nothing is
asserted: these machines are shared and noisy.
"""

import argparse
import json
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports/serve_bench.json"
sys.path.insert(0, str(ROOT / "tools"))
from harness import abuse, free_port, load, machine, start_server, stop_server  # noqa: E402


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(ROOT / "models/package"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--texts-per-request", type=int, default=1)
    args = parser.parse_args()
    texts = pd.read_parquet(ROOT / "data/prepared/test.parquet")["text"].tolist()
    results = {}
    runs = [
        ("merged", []),
        ("merged_tensorflow", ["--runtime", "tensorflow"]),
        ("one_request_per_call", ["--max-batch-texts", "1"]),
    ]
    for name, options in runs:
        port = free_port()
        log = Path(f"/tmp/bertclf-serve-{name}.log")
        server = start_server(Path(args.model), port, log, *options)
        try:
            load(port, texts, 2, 3.0, args.texts_per_request)  # warm the model's shapes
            results[name] = load(port, texts, args.clients, args.seconds, args.texts_per_request)
            if name == "merged":  # the same load beside 71 misbehaving connections
                abusers = threading.Thread(target=abuse, args=(port, args.seconds, 10.0))
                abusers.start()
                results["merged_beside_misbehaving_clients"] = load(
                    port, texts, args.clients, args.seconds, args.texts_per_request
                )
                abusers.join()
        finally:
            stop_server(server)
        results[name]["runtime"] = runtime_line(log)
        print(name, results[name], flush=True)
    ratio = (
        results["merged"]["requests_per_second"]
        / results["one_request_per_call"]["requests_per_second"]
    )
    results["merged_over_unmerged_rps"] = round(ratio, 2)
    default, tensorflow = results["merged"], results["merged_tensorflow"]
    results["default_over_tensorflow_rps"] = round(
        default["requests_per_second"] / tensorflow["requests_per_second"], 2
    )
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    print(
        f"default runtime ({default['runtime']}): "
        f"{results['default_over_tensorflow_rps']:.2f}x TensorFlow's requests per second, "
        f"p99 {default['p99_ms']:.0f} ms against {tensorflow['p99_ms']:.0f} ms"
    )
    print(f"merging concurrent requests: {ratio:.2f}x the requests per second; wrote {OUT}")


def runtime_line(log: Path) -> str:
    """What the server said runs its model (its first line: `runtime openvino, precision bf16`)."""
    for line in log.read_text(errors="replace").splitlines():
        if "runtime " in line and ", precision " in line:
            return line.split(": ", 1)[-1]
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
