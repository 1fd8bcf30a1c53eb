"""Fixtures: the seed project's Excel file, and one tiny-model build of the whole DAG that the
end-to-end tests share. What tests import lives in helpers.py.

Under pytest-xdist (`make test` runs two workers) the shared build is made once, by whichever
worker first needs it, and each worker then works on a copy of its own, since several tests
change the build and restore it. Tests that share a module- or class-scoped fixture (a
module's own build, a running server) go to one worker together; the others are spread one by
one, the slowest first by the committed suite profile (tools/suite_profile.py)."""

import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock
from helpers import NEWS_SAMPLE, TINY, commit_all, copy_project, run
from suite_profile import SuiteTimes, scheduling_order

os.environ.pop("TF_USE_LEGACY_KERAS", None)  # Keras 2's switch: tf-keras is gone
os.environ["DVC_NO_ANALYTICS"] = "1"


def pytest_configure(config):
    config.pluginmanager.register(SuiteTimes(config), "suite_times")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Each test that shares a module- or class-scoped fixture is grouped with its module (one
    worker builds that fixture once); then the work is ordered slowest first."""
    for item in items:
        scopes = {
            definition.scope
            for name in item.fixturenames
            for definition in item._fixtureinfo.name2fixturedefs.get(name, ())
        }
        if scopes & {"module", "class", "package"}:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    items[:] = scheduling_order(items)


@pytest.fixture
def news_sample() -> Path:
    """The seed project's own Excel file, read from ../shared (never copied into the project)."""
    if not NEWS_SAMPLE.is_file():
        pytest.skip(f"{NEWS_SAMPLE} not found: clone the project beside ../shared to run this")
    return NEWS_SAMPLE


def build_tiny_dag(repo: Path) -> None:
    copy_project(repo)
    run(["bertclf", "params", *TINY], repo)
    commit_all(repo, "tiny model")
    result = run(["dvc", "repro"], repo)
    (repo / "first_repro.log").write_text(result.stdout + result.stderr)
    commit_all(repo, "built")
    run(["git", "tag", "built"], repo)


@pytest.fixture(scope="session")
def dag_repo(tmp_path_factory, worker_id) -> Path:
    """One tiny-model build of the whole DAG, shared by the end-to-end tests."""
    if worker_id == "master":  # no xdist: build it where the tests use it
        repo = tmp_path_factory.mktemp("dag") / "project"
        build_tiny_dag(repo)
        return repo
    common = tmp_path_factory.getbasetemp().parent  # the run's folder, above each worker's
    built = common / "dag" / "project"
    with FileLock(common / "dag.lock"):
        if not (common / "dag" / "built").is_file():
            shutil.rmtree(built.parent, ignore_errors=True)  # a build that failed part-way
            build_tiny_dag(built)
            (common / "dag" / "built").touch()
    # each worker's copy shares the build's DVC cache, run cache included, as clones on one
    # machine may (`dvc cache dir`): a stage one worker ran is restored, not re-run, by the other
    repo = tmp_path_factory.mktemp("dag") / "project"
    cache = built / ".dvc" / "cache"

    def not_the_cache(folder: str, names: list[str]) -> list[str]:
        return ["cache"] if Path(folder) == cache.parent else []

    shutil.copytree(built, repo, symlinks=True, ignore=not_the_cache)
    run(["dvc", "cache", "dir", "--local", str(cache)], repo)
    return repo
