"""An output exists whole or not at all; training survives a kill and resumes exactly; runs
with the same seed repeat exactly. Real stages, real `dvc`, on the tiny model's shared build."""

import signal
import sys

import pytest
from helpers import ROOT, TINY, kill_after_first_checkpoint, restore, run

pytestmark = [pytest.mark.e2e, pytest.mark.retrains]
TIMEOUT = 600


def train_logs(repo) -> dict[str, str]:
    """DVCLive's metrics and per-epoch logs of the train stage, file by file."""
    logs = repo / "reports/train"
    return {str(p.relative_to(logs)): p.read_text() for p in sorted(logs.rglob("*")) if p.is_file()}


def test_same_seed_repeats_training_exactly(dag_repo):
    try:
        built = train_logs(dag_repo)
        weights = (dag_repo / "models/trained/model.weights.h5").read_bytes()
        run(["dvc", "repro", "--force", "--no-run-cache", "-s", "train"], dag_repo, timeout=TIMEOUT)
        assert train_logs(dag_repo) == built
        assert (dag_repo / "models/trained/model.weights.h5").read_bytes() == weights
    finally:
        restore(dag_repo)


def test_training_killed_after_an_epoch_resumes_and_ends_as_if_uninterrupted(dag_repo):
    two_epochs = [*TINY, "train.epochs=2", "train.checkpoint_every_seconds=0"]  # every epoch
    try:
        run(["bertclf", "params", *two_epochs], dag_repo)
        run(["dvc", "repro", "train"], dag_repo, timeout=TIMEOUT)
        uninterrupted = train_logs(dag_repo)
        weights = (dag_repo / "models/trained/model.weights.h5").read_bytes()
        assert not list((dag_repo / ".checkpoints").iterdir())  # removed on success

        state = kill_after_first_checkpoint(
            ["dvc", "repro", "--force", "--no-run-cache", "-s", "train"], dag_repo, TIMEOUT
        )
        assert state["next_epoch"] == 1
        assert not (dag_repo / "models/trained").exists()  # DVC removed it; nothing half-written
        assert "train" in run(["dvc", "status"], dag_repo).stdout

        resumed = run(["dvc", "repro", "--no-run-cache", "train"], dag_repo, timeout=TIMEOUT)
        assert "resuming from .checkpoints/train-" in resumed.stdout
        assert "after epoch 1" in resumed.stdout
        assert "Epoch 1/2" not in resumed.stdout and "Epoch 2/2" in resumed.stdout
        # Exact equality: the same ops on the same inputs, with the state restored bit for bit
        # and dropout reseeded from (seed, epoch).
        assert train_logs(dag_repo) == uninterrupted
        assert (dag_repo / "models/trained/model.weights.h5").read_bytes() == weights
        assert not list((dag_repo / ".checkpoints").iterdir())
    finally:
        restore(dag_repo)


@pytest.mark.parametrize(("rename", "whole"), [(1, []), (2, ["data/tokenized"])])
def test_stage_killed_while_writing_leaves_no_partial_output(dag_repo, rename, whole):
    """tokenize writes data/tokenized, then reports/tokenize.json, each by a rename."""
    outputs = ["data/tokenized", "reports/tokenize.json"]
    try:
        built = run(["dvc", "status"], dag_repo).stdout
        assert "up to date" in built
        for out in outputs:  # what DVC does before it runs a stage
            run(["rm", "-rf", out], dag_repo)
        killer = [sys.executable, str(ROOT / "tests/kill_at_rename.py"), str(rename)]
        killed = run(
            [*killer, "stages/tokenize_texts.py"],
            dag_repo,
            check=False,
            timeout=TIMEOUT,
            env={"PYTHONPATH": "src"},
        )
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        target = outputs[rename - 1]
        assert f"killing before rename {target}" not in killed.stdout  # (its temporary path...)
        assert killed.stdout.rstrip().endswith(f"-> {target}")  # ... is renamed to the output
        for out in outputs:
            assert (dag_repo / out).exists() == (out in whole), out
        assert "tokenize" in run(["dvc", "status"], dag_repo).stdout

        # forced: where the DVC cache holds every output of the locked stage (an experiment's
        # run cache stores the uncached reports/tokenize.json too), DVC checks the outputs out
        # instead of running it, and only the stage's next run clears the killed one's scratch
        command = ["dvc", "repro", "--no-run-cache", "--force", "--single-item", "tokenize"]
        rerun = run(command, dag_repo, timeout=TIMEOUT).stdout
        assert "Running stage 'tokenize'" in rerun
        assert "up to date" in run(["dvc", "status"], dag_repo).stdout
        assert not list((dag_repo / "data").glob(".tokenized.*.tmp"))  # the killed run's scratch
    finally:
        restore(dag_repo)
