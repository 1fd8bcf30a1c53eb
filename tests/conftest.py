"""Fixtures: the seed project's Excel file, and one tiny-model build of the whole DAG that the
end-to-end tests share. What tests import lives in helpers.py."""

import os
from pathlib import Path

import pytest
from helpers import NEWS_SAMPLE, TINY, commit_all, copy_project, run

os.environ.pop("TF_USE_LEGACY_KERAS", None)  # Keras 2's switch: tf-keras is gone
os.environ["DVC_NO_ANALYTICS"] = "1"


@pytest.fixture
def news_sample() -> Path:
    """The seed project's own Excel file, read from ../shared (never copied into the project)."""
    if not NEWS_SAMPLE.is_file():
        pytest.skip(f"{NEWS_SAMPLE} not found: clone the project beside ../shared to run this")
    return NEWS_SAMPLE


@pytest.fixture(scope="session")
def dag_repo(tmp_path_factory) -> Path:
    """One tiny-model build of the whole DAG, shared by the end-to-end tests."""
    repo = copy_project(tmp_path_factory.mktemp("dag") / "project")
    run(["bertclf", "params", *TINY], repo)
    commit_all(repo, "tiny model")
    result = run(["dvc", "repro"], repo)
    (repo / "first_repro.log").write_text(result.stdout + result.stderr)
    commit_all(repo, "built")
    run(["git", "tag", "built"], repo)
    return repo
