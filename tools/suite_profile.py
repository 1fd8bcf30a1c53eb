"""The suite's times: a pytest plugin that records every test's setup, call and teardown and
every slow fixture's setup, and a command that reports them against the committed profile.

    make test                                  # writes .suite/times.json, then `report`
    python tools/suite_profile.py report       # wall time beside the guideline, what moved
    python tools/suite_profile.py save         # the last run becomes the committed profile

Nothing here fails on time: tests never assert timings. The profile is committed so that the
next change sees what it costs (`report` compares against it)."""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAST = ROOT / ".suite/times.json"
COMMITTED = ROOT / "docs/results/suite_profile.json"
GUIDELINE_MINUTES = 20
SLOW_FIXTURE_SECONDS = 1.0


class SuiteTimes:
    """Registered by tests/conftest.py. Under pytest-xdist each worker records its fixtures and
    the controller, which sees every test's reports, writes the file."""

    def __init__(self, config) -> None:
        self.config = config
        self.worker = getattr(config, "workerinput", {}).get("workerid")
        self.started = time.time()
        self.tests: dict[str, dict] = {}
        self.fixtures: list[dict] = []

    def pytest_runtest_logreport(self, report) -> None:
        if self.worker is not None:
            return
        name = report.nodeid.split("@tests/")[0]  # without pytest-xdist's group suffix
        entry = self.tests.setdefault(name, {"outcome": "passed"})
        entry[report.when] = round(report.duration, 3)
        if report.failed or (report.skipped and report.when != "teardown"):
            entry["outcome"] = report.outcome
        worker = getattr(report, "node", None)
        if worker is not None:
            entry["worker"] = worker.gateway.id

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        start = time.perf_counter()
        try:
            return (yield)
        finally:
            seconds = time.perf_counter() - start
            if fixturedef.scope != "function" or seconds >= SLOW_FIXTURE_SECONDS:
                self.fixtures.append(
                    {
                        "fixture": fixturedef.argname,
                        "scope": fixturedef.scope,
                        "requested_by": request.node.nodeid,
                        "seconds": round(seconds, 2),
                        "worker": self.worker,
                    }
                )

    def pytest_sessionfinish(self, session) -> None:
        LAST.parent.mkdir(exist_ok=True)
        if self.worker is not None:
            part = LAST.parent / f"fixtures-{self.worker}.json"
            part.write_text(json.dumps(self.fixtures))
            return
        fixtures = list(self.fixtures)
        for part in sorted(LAST.parent.glob("fixtures-*.json")):
            fixtures += json.loads(part.read_text())
            part.unlink()
        workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT") or getattr(
            self.config.option, "numprocesses", None
        )
        LAST.write_text(
            json.dumps(
                {
                    "wall_seconds": round(time.time() - self.started, 1),
                    "workers": workers or 0,
                    "machine": machine_summary(),
                    "tests": dict(sorted(self.tests.items())),
                    "fixtures": sorted(fixtures, key=lambda f: -f["seconds"]),
                },
                indent=1,
            )
            + "\n"
        )


def scheduling_order(items: list) -> list:
    """`items` with each xdist group kept together and in its own order (a module's fixture is
    built once), the groups and lone tests slowest first by the committed profile, so that
    neither worker is left with a long test at the end. A test the profile does not know
    counts a second."""
    seconds = {}
    if COMMITTED.is_file():
        tests = json.loads(COMMITTED.read_text())["tests"]
        seconds = {name: test_seconds(entry) for name, entry in tests.items()}
    groups: dict[str, list] = {}
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        key = marker.args[0] if marker is not None and marker.args else item.nodeid
        groups.setdefault(key, []).append(item)
    cost = {key: sum(seconds.get(i.nodeid, 1.0) for i in group) for key, group in groups.items()}
    order = sorted(groups, key=lambda key: -cost[key])  # stable: ties keep collection order
    return [item for key in order for item in groups[key]]


def machine_summary() -> str:
    cpu = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def test_seconds(entry: dict) -> float:
    return sum(entry.get(when, 0.0) for when in ("setup", "call", "teardown"))


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def report(install_seconds: float | None, top: int) -> None:
    if not LAST.is_file():
        sys.exit(f"error: {LAST.relative_to(ROOT)} not found: run the tests first (make test)")
    last = json.loads(LAST.read_text())
    tests = {name: test_seconds(entry) for name, entry in last["tests"].items()}
    wall = last["wall_seconds"]
    print(f"\nsuite: {len(tests)} tests in {minutes(wall)} (pytest wall time, "
          f"{last['workers'] or 1} worker(s))", end="")  # fmt: skip
    if install_seconds is not None:
        print(f", installation {minutes(install_seconds)}", end="")
        wall += install_seconds
    verdict = "within" if wall <= GUIDELINE_MINUTES * 60 else "OVER"
    print(f"; the guideline is {GUIDELINE_MINUTES}:00 in all, installation included: "
          f"{verdict} it ({minutes(wall)})")  # fmt: skip
    print(f"the {top} slowest (setup + call + teardown, seconds):")
    for name, seconds in sorted(tests.items(), key=lambda t: -t[1])[:top]:
        print(f"  {seconds:7.1f}  {name}")
    if not COMMITTED.is_file():
        return
    committed = json.loads(COMMITTED.read_text())
    before = {name: test_seconds(entry) for name, entry in committed["tests"].items()}
    print(f"against {COMMITTED.relative_to(ROOT)} ({committed['commit']}: "
          f"{minutes(committed['wall_seconds'])}, {len(before)} tests):")  # fmt: skip
    moved = {n: s - before.get(n, 0.0) for n, s in tests.items()}
    for name, delta in sorted(moved.items(), key=lambda t: -abs(t[1]))[:top]:
        if abs(delta) >= 5:
            new = "" if name in before else "  (new)"
            print(f"  {delta:+7.1f}  {name}{new}")
    gone = sorted(set(before) - set(tests))
    if gone:
        print(f"  {len(gone)} committed test(s) not run here, e.g. {gone[0]}")


def save() -> None:
    import subprocess

    last = json.loads(LAST.read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    COMMITTED.write_text(json.dumps({"commit": commit, **last}, indent=1) + "\n")
    print(f"wrote {COMMITTED.relative_to(ROOT)} ({commit})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("report", help="the last run against the committed profile")
    show.add_argument("--install-seconds", type=float)
    show.add_argument("--top", type=int, default=15)
    commands.add_parser("save", help="commit the last run's times as the profile")
    args = parser.parse_args()
    if args.command == "report":
        report(args.install_seconds, args.top)
    else:
        save()


if __name__ == "__main__":
    main()
