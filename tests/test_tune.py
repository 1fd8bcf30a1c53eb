"""`bertclf tune` on a copy of the shared tiny build: trials that land in `dvc exp show` (one of
them pruned), an interrupted study that resumes in two processes (--jobs 2), and the tuned
options reproducing the best trial through `dvc exp run`."""

import contextlib
import json
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import ROOT, free_port, postgres_server, run, start, stop

from bertclf.tune import storage

pytestmark = pytest.mark.e2e

SPACE = {
    "seed": 3,
    "pruner": {"type": "none"},
    "space": {
        "train.learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True},
        "train.epochs": {"type": "int", "low": 2, "high": 2},
        "head.dropout": {"type": "float", "low": 0.0, "high": 0.2},
        "tokenize.max_length": {"type": "categorical", "choices": [64, 128]},
    },
}


def clone_build(dag_repo: Path, dest: Path) -> Path:
    """A git clone of the shared build with its outputs checked out from its DVC cache, so that
    experiments saved here do not reach the shared repository."""
    run(["git", "clone", "-q", str(dag_repo), str(dest)], dag_repo.parent)
    run(["git", "config", "user.name", "bertclf tests"], dest)
    run(["git", "config", "user.email", "tests@bertclf.invalid"], dest)
    cache = run(["dvc", "cache", "dir"], dag_repo).stdout.strip()  # the shared build's
    run(["dvc", "cache", "dir", "--local", cache], dest)
    run(["dvc", "checkout", "-q"], dest)
    return dest


def write_space(repo: Path, name: str, pruner: dict, epochs: int = 2) -> None:
    space = {**SPACE["space"], "train.epochs": {"type": "int", "low": epochs, "high": epochs}}
    (repo / "conf/tune").mkdir(parents=True, exist_ok=True)
    (repo / f"conf/tune/{name}.yaml").write_text(
        yaml.safe_dump({**SPACE, "pruner": pruner, "space": space})
    )


def experiments(repo: Path) -> dict[str, dict]:
    """The experiments `dvc exp show` lists: name -> params and metrics of its trial files."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    found = {}
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            for rev in experiment["revs"]:
                data = rev["data"]
                files = {**(data.get("params") or {}), **(data.get("metrics") or {})}
                found[rev["name"]] = {path: v["data"] for path, v in files.items()}
    return found


def states(repo: Path, study: str) -> list[str]:
    with sqlite3.connect(repo / f".tune/{study}.db") as db:
        return [row[0] for row in db.execute("SELECT state FROM trials ORDER BY number")]


@pytest.fixture(scope="module")
def tuned_repo(dag_repo, tmp_path_factory):
    """Two trials of one epoch with no pruning, then the study resumed for a third of two epochs
    with a pruner that prunes every trial after its first (any validation loss is above 0)."""
    repo = clone_build(dag_repo, tmp_path_factory.mktemp("tune") / "project")
    write_space(repo, "small", {"type": "none"}, epochs=1)
    run(["bertclf", "tune", "--space", "small", "--trials", "2"], repo, timeout=600)
    write_space(repo, "small", {"type": "threshold", "upper": 0.0})
    result = run(["bertclf", "tune", "--space", "small", "--trials", "3"], repo, timeout=600)
    (repo / "tune.log").write_text(result.stdout + result.stderr)
    return repo, result.stdout


def test_tune_trials_and_the_pruned_one_are_dvc_experiments(tuned_repo):
    repo, output = tuned_repo
    assert "study small: 3 trials, 2 complete, 1 pruned" in output, output
    assert states(repo, "small") == ["COMPLETE", "COMPLETE", "PRUNED"]
    shown = experiments(repo)
    assert {"small-0", "small-1", "small-2"} <= set(shown), sorted(shown)
    for number, pruned in ((0, False), (1, False), (2, True)):
        params = shown[f"small-{number}"][f".tune/trials/small-{number}/params.yaml"]
        assert params["pruned"] is pruned and params["trial"] == number
        assert 1e-4 <= params["train.learning_rate"] <= 1e-3
        metrics = shown[f"small-{number}"][f".tune/trials/small-{number}/metrics.json"]
        # the first two asked for one epoch; the pruned one asked for two and ran one
        assert (params["train.epochs"], metrics["epochs_run"]) == ((2, 1) if pruned else (1, 1))
    # the resumed process does not draw the first trials' values again
    rates = {shown[f"small-{n}"][f".tune/trials/small-{n}/params.yaml"]["train.learning_rate"]
             for n in range(3)}  # fmt: skip
    assert len(rates) == 3, rates
    assert run(["git", "status", "--porcelain", "dvc.yaml"], repo).stdout == ""  # untouched
    # the study reads the training and validation caches, never the test split
    folders = list((repo / ".tune/tokenized").glob("max_length=*"))
    assert not [f for f in folders if (f / "test.parquet").exists()]


def test_tuned_options_reproduce_the_best_trial_through_dvc_exp_run(tuned_repo):
    repo, output = tuned_repo
    command = output.strip().splitlines()[-1]
    assert command.startswith("dvc exp run -S train=tuned -S head=tuned -S tokenize.max_length=")
    tuned = yaml.safe_load((repo / "conf/train/tuned.yaml").read_text())
    best = int(output.split("best: trial ")[1].split(",")[0])
    trial = yaml.safe_load((repo / f".tune/trials/small-{best}/params.yaml").read_text())
    assert tuned["learning_rate"] == pytest.approx(trial["train.learning_rate"])
    assert yaml.safe_load((repo / "conf/head/tuned.yaml").read_text())["dropout"] == (
        pytest.approx(trial["head.dropout"])
    )
    # the shared build's params.yaml was composed with TINY; tune says so, and the command
    # needs those overrides too (those the tuned options do not set)
    assert "params.yaml differs from conf/'s defaults in model." in output
    base = ["-Smodel=tiny", "-Spackage.precisions=[f32]"]
    run([*command.split()[:3], *base, *command.split()[3:]], repo, timeout=900)
    trial_losses = pd.read_csv(repo / f".tune/trials/small-{best}/plots/metrics/eval/loss.tsv",
                               sep="\t")["loss"]  # fmt: skip
    dag_losses = pd.read_csv(repo / "reports/train/plots/metrics/eval/loss.tsv", sep="\t")["loss"]
    assert dag_losses.tolist() == pytest.approx(trial_losses.tolist(), abs=1e-5)
    # `bertclf experiments`: the headline metrics and the params that differ, not dvc exp
    # show's thousands of columns
    shown = run(["bertclf", "experiments"], repo).stdout.splitlines()
    header = shown[0].split()
    assert header[:4] == ["experiment", "created", "test.accuracy", "test.macro_f1"], header
    assert "train.learning_rate" in header and "data.path" not in header and len(header) < 30
    assert "learner" in header  # the method auto chose (reports/train_time.json)
    names = [line.split()[0] for line in shown[1:]]
    assert names[0] == "workspace" and {"small-0", "small-1", "small-2"} <= set(names)


def test_an_interrupted_tune_study_resumes_in_two_jobs_sharing_it(dag_repo, tmp_path):
    repo = clone_build(dag_repo, tmp_path / "project")
    write_space(repo, "resume", {"type": "none"}, epochs=1)  # no pruning: one epoch will do
    process = start(["bertclf", "tune", "--space", "resume", "--trials", "3"], repo)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            db = repo / ".tune/resume.db"
            if db.exists() and "COMPLETE" in states(repo, "resume"):
                break  # the first trial is saved; the second is training
            time.sleep(0.5)
        assert process.poll() is None, "tune ended before it could be interrupted"
    finally:
        stop(process)  # SIGKILL, as a machine that goes down
    assert states(repo, "resume")[0] == "COMPLETE"
    resume = ["bertclf", "tune", "--space", "resume", "--trials", "3", "--jobs", "2"]
    result = run(resume, repo, timeout=600)
    # the killed trial is not counted; the two missing trials ran one in each process, and
    # both processes' experiment saves landed
    finished = [n for n, s in enumerate(states(repo, "resume")) if s in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3, states(repo, "resume")
    assert "study resume:" in result.stdout
    shown = experiments(repo)
    assert {f"resume-{n}" for n in finished} <= set(shown), sorted(shown)
    rates = {shown[f"resume-{n}"][f".tune/trials/resume-{n}/params.yaml"]["train.learning_rate"]
             for n in finished}  # fmt: skip
    assert len(rates) == 3, rates  # neither process drew an earlier trial's values again


def test_token_caches_of_settings_that_cut_windows_another_way_are_not_shared(
    tmp_path, monkeypatch
):
    """The study's token cache is keyed on the whole tokenize configuration: chunks after head
    at the same max_length tokenizes again instead of reusing head's windows."""
    import dataclasses
    import shutil

    from bertclf.config import load_params, parse_section
    from bertclf.labels import LabelMap
    from bertclf.model import source_directory
    from bertclf.tune import token_caches

    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", "params.yaml")
    Path("models/pretrained").mkdir(parents=True)
    encoder = source_directory(load_params()["model"]["pretrained"])
    shutil.copy(encoder / "tokenizer.json", "models/pretrained/tokenizer.json")
    Path("data/prepared").mkdir(parents=True)
    texts = ["a long review " * 40, "short", "another long one " * 40, "fine"]
    frame = pd.DataFrame({"id": list("abcd"), "text": texts, "label": ["x", "y", "x", "y"]})
    for split in ("train", "val"):
        frame.to_parquet(f"data/prepared/{split}.parquet")
    LabelMap.fit(frame["label"]).save("models/labels.json")
    base = parse_section("tokenize", load_params()["tokenize"])
    head = dataclasses.replace(base, max_length=32, chunk_stride=8, long_text="head")
    chunks = dataclasses.replace(head, long_text="chunks")
    head_train, _ = token_caches(head)
    chunks_train, _ = token_caches(chunks)
    assert len(head_train.sequences) == 4
    assert len(chunks_train.sequences) > 4  # the long texts in several windows
    assert len(token_caches(head)[0].sequences) == 4  # and head's cache is still its own


@pytest.fixture(scope="module")
def host_copies(dag_repo, tmp_path_factory) -> list[Path]:
    """Two clones of the build, as two hosts would hold; each storage's study has its own space
    name, so the experiments of one study are told apart from the other's."""
    hosts = tmp_path_factory.mktemp("hosts")
    return [clone_build(dag_repo, hosts / name) for name in ("a", "b")]


@pytest.mark.parametrize("kind", ["postgresql", "journal"])
def test_two_working_copies_share_one_study_on_a_storage_of_their_own(host_copies, tmp_path, kind):
    """Two processes in two clones, as two hosts would run, on one study in PostgreSQL (a real
    server) or in a journal file: both start as worker 0 with the same seed, so only the seed
    from the host and process keeps their first draws apart; the study stops at its trials in
    all."""
    import optuna

    copies, name = host_copies, f"shared_{kind}"
    for repo in copies:
        write_space(repo, name, {"type": "none"}, epochs=1)
    with contextlib.ExitStack() as stack:
        if kind == "postgresql":
            url = stack.enter_context(postgres_server())
        else:
            url = f"journal:{tmp_path / 'shared.journal'}"
        command = ["bertclf", "tune", "--space", name, "--trials", "2", "--storage", url]
        processes = [start(command, repo) for repo in copies]
        outputs = []
        for process in processes:
            try:
                out, err = process.communicate(timeout=900)
            finally:
                stop(process)
            outputs.append(out + err)
            assert process.returncode == 0, out + err
        study = optuna.load_study(study_name=name, storage=storage(url, name))
        trials = study.get_trials(deepcopy=False)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert 2 <= len(trials) <= 3  # a trial another process had begun may finish past 2
    vectors = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(vectors)) == len(vectors), vectors  # no two draws alike
    # each trial is a DVC experiment in the copy that ran it, and every copy ran some
    ran = [{n for n in experiments(repo) if n.startswith(f"{name}-")} for repo in copies]
    assert all(ran) and not ran[0] & ran[1], ran
    assert ran[0] | ran[1] == {f"{name}-{t.number}" for t in trials}
    assert not (copies[0] / f".tune/{name}.db").exists()  # the default storage is not used
    assert all(f"study {name}: " in output for output in outputs), outputs


def test_a_storage_that_cannot_be_reached_is_one_line_without_its_password(tmp_path):
    from bertclf.errors import BertclfError
    from bertclf.tune import make_study

    space = {"seed": 0, "pruner": {"type": "none"}, "space": {}}
    url = f"postgresql+psycopg://bertclf:hunter2@127.0.0.1:{free_port()}/tune"
    with pytest.raises(
        BertclfError, match=r"^--storage postgresql\+psycopg://bertclf:\*\*\*@"
    ) as error:
        make_study("shared", space, storage_url=url)
    assert "hunter2" not in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(BertclfError, match="is not a folder"):
        make_study("shared", space, storage_url=f"journal:{tmp_path / 'no/such/x.journal'}")


def test_hosts_starting_together_on_a_new_database_all_open_the_study():
    """Four processes open one study at once on a new PostgreSQL database: each creates
    Optuna's schema, and without asking again one of them failed on a duplicate CREATE TYPE
    (4 of 16 processes over four such rounds, before `tune.create_study` asked again)."""
    import subprocess
    import sys

    code = (
        "import sys, optuna; optuna.logging.set_verbosity(optuna.logging.ERROR); "
        "from bertclf.tune import create_study; "
        "create_study(study_name='s', storage=sys.argv[1], load_if_exists=True)"
    )
    for _ in range(2):
        with postgres_server() as url:
            processes = [
                subprocess.Popen(
                    [sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True
                )
                for _ in range(4)
            ]
            for process in processes:
                _, err = process.communicate(timeout=120)
                assert process.returncode == 0, err


def test_a_space_may_search_the_learner_and_a_fitted_trial_is_one_validation_loss(
    dag_repo, tmp_path
):
    """learner.method in the space: a frozen trial fits its head (no epochs), reports its
    validation loss as the objective, and the best trial's command sets the method."""
    repo = clone_build(dag_repo, tmp_path / "project")
    space = {**SPACE, "pruner": {"type": "none"}, "space": {
        "learner.method": {"type": "categorical", "choices": ["frozen"]},
        "train.batch_size": {"type": "categorical", "choices": [16]},
    }}  # fmt: skip
    (repo / "conf/tune/learners.yaml").write_text(yaml.safe_dump(space))
    result = run(["bertclf", "tune", "--space", "learners", "--trials", "1"], repo, timeout=600)
    assert "learner: frozen (learner.method=frozen)" in result.stdout, result.stdout
    shown = experiments(repo)["learners-0"]
    params = shown[".tune/trials/learners-0/params.yaml"]
    assert params["learner"] == "frozen" and params["learner.method"] == "frozen"
    metrics = shown[".tune/trials/learners-0/metrics.json"]
    assert metrics["epochs_run"] == 1
    assert metrics["best_val_loss"] == pytest.approx(metrics["eval"]["loss"])
    command = result.stdout.strip().splitlines()[-1]
    assert command.endswith("-S learner.method=frozen"), command
