"""Run one end-to-end test function many times on one tiny build, to find a flaky test: the
build is made once (as the suite's `dag_repo`), the test is called again and again on it, and
each outcome goes to a JSON file as it finishes.

    python tools/repeat_dag_test.py TEST RUNS OUTPUT.json
    (TEST: tests/test_experiments.py::test_parallel_queued_sweep_and_experiment_diff, say)

Only for tests whose one fixture is `dag_repo` and which restore the build after themselves.
The queue's history is cleared between runs (`dvc queue remove --all`), as each worker's copy
runs the test once in the suite."""

import importlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tools")]


def main() -> None:
    target, runs, output = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    module_path, name = target.split("::")
    conftest = importlib.import_module("conftest")
    helpers = importlib.import_module("helpers")
    test = getattr(importlib.import_module(Path(module_path).stem), name)
    repo = Path(tempfile.mkdtemp(prefix="bertclf-repeat-")) / "project"
    started = time.time()
    conftest.build_tiny_dag(repo)
    results = {"test": target, "build_seconds": round(time.time() - started, 1), "runs": []}
    for number in range(1, runs + 1):
        helpers.run(["dvc", "queue", "remove", "--all"], repo)
        started = time.time()
        try:
            test(repo)
            outcome = "passed"
        except Exception as error:  # the test's own failure, recorded whole
            outcome = "failed: " + "".join(traceback.format_exception_only(error))[-2000:]
        results["runs"].append(
            {"run": number, "outcome": outcome, "seconds": round(time.time() - started, 1)}
        )
        results["passed"] = sum(r["outcome"] == "passed" for r in results["runs"])
        output.write_text(json.dumps(results, indent=1) + "\n")
        print(f"run {number}: {outcome} ({results['runs'][-1]['seconds']} s)", flush=True)


if __name__ == "__main__":
    main()
