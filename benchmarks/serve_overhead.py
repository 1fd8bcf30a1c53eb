"""What the server's per-request additions cost (the v2 routes, the metrics middleware, the
probes' exemption): one-text requests against the server of a baseline commit, on one package.

    python benchmarks/serve_overhead.py --model PACKAGE --baseline REV

Both servers start on loopback in turn, `--rounds` times, interleaved; each is loaded by
`--clients` clients for `--seconds`. Writes docs/results/serve_overhead.json with every run and
the medians, and prints the ratios. Nothing is asserted: these machines are shared and noisy.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs/results/serve_overhead.json"
sys.path.insert(0, str(ROOT / "tools"))
from harness import command_env, free_port, load, machine, start_server, stop_server  # noqa: E402

TEXTS = ["Wonderful coffee, I buy it every month.", "Arrived stale and broken.", "fine tea"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a package both servers can read")
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    worktree = Path(tempfile.mkdtemp(prefix="bertclf-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    servers = {
        "baseline": {**command_env(), "PYTHONPATH": str(worktree / "src")},
        "head": {**command_env(), "PYTHONPATH": str(ROOT / "src")},
    }
    runs = {name: [] for name in servers}
    try:
        for _ in range(args.rounds):
            for name, env in servers.items():
                port, log = free_port(), Path(tempfile.mkstemp(suffix=".log")[1])
                server = start_server(Path(args.model), port, log, env=env)
                try:
                    runs[name].append(load(port, TEXTS, args.clients, args.seconds))
                finally:
                    stop_server(server)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT,
                       check=False, capture_output=True)  # fmt: skip
    keys = ("requests_per_second", "p50_ms", "p99_ms")
    medians = {
        name: {key: statistics.median(r[key] for r in results) for key in keys}
        | {"errors": sum(r["errors"] for r in results)}
        for name, results in runs.items()
    }
    ratio = medians["head"]["requests_per_second"] / medians["baseline"]["requests_per_second"]
    result = {"machine": machine(), "baseline": args.baseline, "settings": vars(args),
              "runs": runs, "medians": medians,
              "head_over_baseline_requests_per_second": ratio}  # fmt: skip
    OUT.write_text(json.dumps(result, indent=2))
    for name, m in medians.items():
        spread = [r["requests_per_second"] for r in runs[name]]
        print(f"{name}: {m['requests_per_second']:.1f} requests/s (runs {spread}), "
              f"p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, errors {m['errors']}")  # fmt: skip
    print(f"head / baseline requests per second: {ratio:.3f}; wrote {OUT}")


if __name__ == "__main__":
    main()
