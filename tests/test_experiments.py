"""Cross-validation, queued sweeps, comparisons across commits and sharing, with the real `dvc`
on the tiny model's shared build."""

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    BEFORE_TEMPERATURE,
    TINY,
    check_label_issues,
    command_env,
    commit_all,
    read_json,
    restore,
    run,
    stages_run,
)

pytestmark = pytest.mark.e2e

METRIC_KEYS = {
    "n",
    "accuracy",
    "macro_f1",
    "weighted_f1",
    "micro_f1",
    "log_loss",
    "ece",
    "per_class",
}


@pytest.mark.retrains
def test_kfold3_cross_validation(dag_repo):
    try:
        out = run(["dvc", "exp", "run", *[f"-S{o}" for o in TINY], "-Scv=kfold3"], dag_repo)
        assert stages_run(out.stdout) == {
            "folds",
            "train_fold@0",
            "train_fold@1",
            "train_fold@2",
            "cv_summary",
            "label_issues",
        }, out.stdout
        cv = json.loads((dag_repo / "reports/cv.json").read_text())
        test_metrics = json.loads((dag_repo / "reports/metrics.json").read_text())["test"]
        # a fold's model is scored as trained: the temperature is fitted for the final model only
        test_keys = set(test_metrics) - BEFORE_TEMPERATURE
        assert cv["k"] == 3 and len(cv["folds"]) == 3
        for fold in cv["folds"]:
            assert set(fold) == test_keys
        accuracies = pd.Series([f["accuracy"] for f in cv["folds"]])
        assert cv["mean"]["accuracy"] == pytest.approx(accuracies.mean())
        assert cv["std"]["accuracy"] == pytest.approx(accuracies.std())  # pandas: ddof=1
        assert cv["mean"]["macro_f1"] == pytest.approx(sum(f["macro_f1"] for f in cv["folds"]) / 3)

        train = pd.read_parquet(dag_repo / "data/prepared/train.parquet")
        folds = pd.read_parquet(dag_repo / "data/folds.parquet")
        assert sorted(folds["id"]) == sorted(train["id"])  # disjoint and covering
        assert sum(f["n"] for f in cv["folds"]) == len(train)
        merged = folds.merge(train, on="id")
        overall = train["label"].value_counts() / 3
        for _, part in merged.groupby("fold"):
            assert ((part["label"].value_counts() - overall).abs() <= 1).all()
        test_ids = set(pd.read_parquet(dag_repo / "data/prepared/test.parquet")["id"])
        assert not test_ids & set(folds["id"])  # the test split never enters a fold

        # every training row's out-of-fold prediction, by the model that did not see it: the
        # fold's accuracy is that of its rows in the table
        table, issues = check_label_issues(dag_repo)
        probabilities = np.stack(table["probabilities"].to_numpy())
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
        for k, fold in enumerate(cv["folds"]):
            rows = table[table["fold"] == k]
            assert (rows["predicted"] == rows["label"]).mean() == pytest.approx(fold["accuracy"])
        assert set(issues["given"]) <= set(train["label"])
        assert set(issues["suggested"]) <= set(train["label"])
        summary = read_json(dag_repo, "reports/label_issues.json")
        assert sum(c["rows"] for c in summary["per_class"].values()) == len(train)
        assert "label_issues: " in out.stdout and "training rows flagged" in out.stdout

        # only the CV seed changes: the folds re-run, prepare and tokenize do not
        run(["bertclf", "params", *TINY, "cv=kfold3", "cv.seed=7"], dag_repo)
        out = run(["dvc", "repro", "--no-run-cache", "folds"], dag_repo)
        assert stages_run(out.stdout) == {"folds"}, out.stdout
        status = run(["dvc", "status"], dag_repo).stdout
        assert "train_fold@0" in status
        assert not {"prepare:", "tokenize:", "pretrained:", "train:"} & set(status.split())
    finally:
        restore(dag_repo)


def test_cv_none_has_no_fold_stages(dag_repo):
    stages = run(["dvc", "stage", "list"], dag_repo).stdout
    assert "train_fold" not in stages and "cv_summary" in stages
    assert json.loads((dag_repo / "reports/cv.json").read_text())["k"] == 0
    assert pd.read_parquet(dag_repo / "data/out_of_fold.parquet").empty
    issues = pd.read_csv(dag_repo / "reports/label_issues.csv")
    assert issues.empty and "label_quality" in issues.columns
    assert read_json(dag_repo, "reports/label_issues.json") == {
        "enabled": True,
        "rows": 0,
        "flagged": 0,
        "share": 0.0,
    }
    out = run(["dvc", "repro", "--force", "--single-item", "label_issues"], dag_repo)
    assert "label_issues: no cross-validation (cv=none)" in out.stdout
    assert "up to date" in run(["dvc", "status"], dag_repo).stdout  # the same outputs again


def test_k_larger_than_a_class_is_refused(dag_repo):
    try:
        # leave 12 texts in train (8 great, 4 other): too few for 10 folds
        args = [*TINY, "cv=kfold10", "data.val_fraction=0.997", "data.test_fraction=0.001"]
        run(["bertclf", "params", *args], dag_repo)
        out = run(["dvc", "repro", "folds"], dag_repo, check=False)
        assert out.returncode != 0
        assert (
            "error: data/prepared/train.parquet: class 'other' has 4 training examples; "
            "10-fold cross-validation needs at least 10 per class"
        ) in out.stderr, out.stderr
        assert not (dag_repo / "data/folds.parquet").exists()
    finally:
        restore(dag_repo)


def start_queue(repo: Path, jobs: int) -> None:
    """`dvc queue start`, its output not piped: its workers are daemons that inherit it, and a
    second worker can outlive the queue (DVC issue 10578: the first worker's clean-up can wipe
    the shutdown message meant for the second), which held the pipe, and the suite, for good."""
    subprocess.run(["dvc", "queue", "start", "--jobs", str(jobs)], cwd=repo, env=command_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
                   check=True)  # fmt: skip


def queue_processes(repo: Path) -> list[int]:
    """The pids of every `dvc queue` process running in `repo`: a worker, the process that
    spawned it, or the `dvc exp exec-run` of a task."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
            mine = os.readlink(entry / "cwd") == str(repo) or any(
                str(repo).encode() in word for word in words
            )
        except (OSError, ValueError):
            continue  # not a process, or gone
        queue = b"queue-worker" in words or (b"queue" in words and b"start" in words)
        if mine and (queue or b"exec-run" in words):
            found.append(int(entry.name))
    return found


def kill_queue_processes(repo: Path) -> list[int]:
    """SIGKILL every `dvc queue` process still running in `repo`; returns their pids."""
    killed = []
    for pid in queue_processes(repo):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def experiment_refs(repo: Path) -> set[str]:
    """The experiments git holds, `refs/exps/<baseline>/<name>` (not DVC's own refs under
    refs/exps: the queue's stash, a running task's temporary refs). Git writes a ref whole."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout
    return {
        ref for ref in refs.split() if re.fullmatch(r"refs/exps/[0-9a-f]{2}/[0-9a-f]{38}/.+", ref)
    }


def wait_for_queue(repo: Path, before: set[str], expected: int, timeout: float = 900) -> None:
    """Wait until the queue's `expected` experiments are saved, or its processes are all gone
    (a task failed), without asking `dvc queue status` meanwhile: DVC rewrites a task's info
    file in place while the task runs, and a status read at that moment fails (exit 255,
    "Expecting value: line 1 column 1", DVC issue 8014). Then give the workers a few seconds to
    finish their clean-up (the info file's last write) and exit, and stop any that does not
    (DVC issue 10578: a second worker can miss its shutdown message and idle for good)."""
    started = time.monotonic()
    while not queue_processes(repo) and len(experiment_refs(repo) - before) < expected:
        assert time.monotonic() < started + 60, "no queue worker started in 60 s"
        time.sleep(0.5)
    deadline = started + timeout
    while len(experiment_refs(repo) - before) < expected and queue_processes(repo):
        assert time.monotonic() < deadline, f"the queue did not finish in {timeout} s"
        time.sleep(2)
    settle = time.monotonic() + 30
    while queue_processes(repo) and time.monotonic() < settle:
        time.sleep(1)
    kill_queue_processes(repo)


@pytest.mark.retrains
def test_parallel_queued_sweep_and_experiment_diff(dag_repo):
    try:
        out = run(
            [
                "dvc",
                "exp",
                "run",
                "--queue",
                *[f"-S{o}" for o in TINY],
                "-S",
                "train.learning_rate=1e-4,3e-4",
                "-S",
                "train.threads=1",  # two jobs on two cores: one thread each
            ],
            dag_repo,
        )
        assert out.stdout.count("Queued experiment") == 2, out.stdout
        before = experiment_refs(dag_repo)
        start_queue(dag_repo, jobs=2)
        wait_for_queue(dag_repo, before, expected=2)
        status = run(["dvc", "queue", "status"], dag_repo).stdout
        assert status.count("Success") == 2, (
            status + run(["dvc", "queue", "logs", status.split()[-4]], dag_repo, check=False).stdout
        )

        rows = json.loads(run(["dvc", "exp", "show", "--json"], dag_repo).stdout)
        experiments = {}
        for baseline in rows:
            for exp in baseline.get("experiments") or []:
                for rev in exp["revs"]:
                    data = rev["data"]
                    lr = data["params"]["params.yaml"]["data"]["train"]["learning_rate"]
                    metrics = data["metrics"]["reports/metrics.json"]["data"]
                    experiments[lr] = (rev["name"], metrics)
        assert {1e-4, 3e-4} <= set(experiments), experiments  # (the kfold3 run is one too)
        for _, metrics in experiments.values():
            assert 0 <= metrics["test"]["accuracy"] <= 1
        first, second = (experiments[1e-4][0], experiments[3e-4][0])
        diff = run(["dvc", "exp", "diff", first, second], dag_repo).stdout
        assert "train.learning_rate" in diff and "0.0001" in diff
    finally:
        run(["dvc", "queue", "stop", "--kill"], dag_repo, check=False)
        kill_queue_processes(dag_repo)  # a worker DVC lost track of (see start_queue)
        restore(dag_repo)


@pytest.mark.retrains
def test_metrics_and_plots_diff_between_commits(dag_repo, tmp_path):
    try:
        run(["bertclf", "params", *TINY, "train.epochs=2"], dag_repo)
        run(["dvc", "repro"], dag_repo)
        commit_all(dag_repo, "two epochs")
        diff = run(["dvc", "metrics", "diff", "built", "--json"], dag_repo).stdout
        changed = json.loads(diff)
        assert "reports/metrics.json" in changed
        assert "test.log_loss" in changed["reports/metrics.json"]
        params = run(["dvc", "params", "diff", "built"], dag_repo).stdout
        assert "train.epochs" in params
        out = tmp_path / "diff"
        run(["dvc", "plots", "diff", "built", "-o", str(out)], dag_repo)
        html = (out / "index.html").read_text()
        assert "Confusion matrix (test)" in html and "built" in html
    finally:
        restore(dag_repo)


def test_push_and_pull_through_a_local_remote(dag_repo, tmp_path):
    remote = tmp_path / "remote"
    try:
        run(["dvc", "remote", "add", "-d", "shared", str(remote)], dag_repo)
        commit_all(dag_repo, "a local remote")
        run(["dvc", "push"], dag_repo)
        # register a version as GTO does (an annotated tag), then fetch the artifact by name
        run(
            ["git", "tag", "-a", "bertclf-classifier@v0.1.0", "-m", "bertclf-classifier 0.1.0"],
            dag_repo,
        )
        fetched = tmp_path / "fetched"
        run(
            ["dvc", "artifacts", "get", str(dag_repo), "bertclf-classifier", "-o", str(fetched)],
            tmp_path,
        )
        assert (fetched / "manifest.json").read_bytes() == (
            dag_repo / "models/package/manifest.json"
        ).read_bytes()
        clone = tmp_path / "clone"
        run(["git", "clone", "-q", str(dag_repo), str(clone)], tmp_path)
        run(["dvc", "pull"], clone)
        assert "up to date" in run(["dvc", "status"], clone).stdout
        out = run(["dvc", "repro"], clone)
        assert stages_run(out.stdout) == set(), out.stdout
        assert (clone / "models/package/manifest.json").is_file()
    finally:
        run(["git", "tag", "-d", "bertclf-classifier@v0.1.0"], dag_repo, check=False)
        restore(dag_repo)
