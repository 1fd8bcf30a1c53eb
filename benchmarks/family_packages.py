"""The package of each encoder family, tiny: its size and its load time. Builds the tests' tiny
BERT (`model=tiny`, random) and a tiny checkpoint of each other family of the same shape (the
tests' `write_tiny_checkpoint`, hidden 16, 2 layers) with the same tiny-build params in fresh
copies of the project, then loads each package `--repeats` times per runtime.

    python benchmarks/family_packages.py --out docs/results/family_packages.json

Sizes are bytes on disk per part; load times are `Classifier.load` wall clock in a fresh
process each time (median, min and max), on TensorFlow and on OpenVINO; each package's OpenVINO
checks (f32 and int8, the int8 gate's verdict) as the package stage recorded them. Nothing is
asserted.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

from harness import machine  # noqa: E402
from helpers import (  # noqa: E402
    TINY,
    TINY_FAMILIES,
    build_repo,
    copy_project,
    write_tiny_checkpoint,
)

LOAD = """
import sys, time
start = time.perf_counter()
from bertclf import Classifier
Classifier.load(sys.argv[1], runtime=sys.argv[2])
print(time.perf_counter() - start)
"""


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        tiny_shape = ["model.random_init.hidden_size=16", "model.random_init.intermediate_size=32"]
        # the tiny build's params, with OpenVINO int8 beside f32: its gate per family
        tiny = [o for o in TINY if not o.startswith("package.precisions")]
        tiny.append("package.precisions=[f32,int8]")
        builds = {"bert": [*tiny, *tiny_shape]}
        for family in TINY_FAMILIES:
            checkpoint = write_tiny_checkpoint(scratch / f"{family}-ckpt", family, prefixed=True)
            builds[family] = [*tiny, f"model.pretrained={checkpoint}", "model.random_init=null"]
        for family, overrides in builds.items():
            repo = build_repo(copy_project(scratch / family), overrides, family)
            package = repo / "models/package"
            loads = {}
            for runtime in ("tensorflow", "openvino"):
                times = [
                    float(
                        subprocess.run(
                            [sys.executable, "-c", LOAD, str(package), runtime],
                            capture_output=True, text=True, check=True, cwd=repo,
                        ).stdout.strip().splitlines()[-1]
                    )
                    for _ in range(args.repeats)
                ]  # fmt: skip
                loads[runtime] = {
                    "median_s": statistics.median(times),
                    "min_s": min(times),
                    "max_s": max(times),
                }
            results[family] = {
                "parameters": json.loads((repo / "models/pretrained/source.json").read_text())[
                    "parameters"
                ],
                "bytes": {
                    "package": size(package),
                    "saved_model": size(package / "saved_model"),
                    "openvino": size(package / "openvino"),
                },
                "load": loads,
                "openvino_checks": json.loads((repo / "reports/package.json").read_text())[
                    "openvino"
                ]["precisions"],
            }
            print(family, json.dumps(results[family]))
    args.out.write_text(
        json.dumps({"machine": machine(), "repeats": args.repeats, "families": results}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main()
