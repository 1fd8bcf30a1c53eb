"""`bertclf tune`: an Optuna study over a search space declared in conf/tune/, on the DAG's
cached outputs, every finished trial a DVC experiment.

Trials train in-process on `data/tokenized` (other tokenize settings are tokenized once each
into `.tune/tokenized/`), `models/pretrained` and `models/labels.json`; the test split is never
read. Each trial reports its validation loss after every epoch to the pruner. The study lives
in `.tune/<space>.db` (SQLite, ignored by git), so an interrupted study resumes where it
stopped; `--storage` puts it in any storage Optuna takes (PostgreSQL, a journal file), which
processes on several hosts share, each in its own working copy. Each trial logs with DVCLive
into `.tune/trials/<space>-<n>/`, with a dvc.yaml of its own there (never the root one), and
is saved as the DVC experiment `<space>-<n>`, so
`dvc exp show` lists it beside ordinary runs (its params: the sampled values, `pruned`).
"""

import copy
import hashlib
import math
import os
import socket
import time
from pathlib import Path

from omegaconf import OmegaConf

from bertclf.config import PARAMS_FILE, load_params, parse_section
from bertclf.errors import BertclfError
from bertclf.paths import LABELS, PREPARED, PRETRAINED, TOKENIZED

TUNE_DIR = Path(".tune")
JOURNAL = "journal:"  # --storage journal:PATH: Optuna's journal file at PATH


def storage(url: str | None, space_name: str):
    """Optuna's storage of the study: `.tune/<space>.db` without a URL; `journal:PATH`, a
    journal file (JournalFileBackend: every process appends to it; on a file system all the
    hosts mount); any other URL goes to Optuna's RDB storage as it is (`sqlite:///...`,
    `postgresql+psycopg://user:password@host/db`)."""
    import optuna

    if url is None:
        TUNE_DIR.mkdir(exist_ok=True)
        return f"sqlite:///{TUNE_DIR / space_name}.db"
    if url.startswith(JOURNAL):
        path = Path(url[len(JOURNAL) :])
        if not path.name or not path.parent.is_dir():
            raise BertclfError(f"--storage {url}: {path.parent} is not a folder")
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    return url


def shown(url: str) -> str:
    """A storage URL as it may be printed: without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


GROUPS = ("train", "head")  # the Hydra groups the best values are written to, as `tuned`


def load_space(name: str, config_dir: Path = Path("conf")) -> dict:
    """conf/tune/<name>.yaml: the study's settings and its search space."""
    path = config_dir / "tune" / f"{name}.yaml"
    if not path.is_file():
        raise BertclfError(f"{path}: not found (the search space of `bertclf tune --space {name}`)")
    space = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    for key, spec in space.get("space", {}).items():
        section, _, _ = key.partition(".")
        if section not in ("train", "head", "tokenize", "learner") or spec.get("type") not in (
            "float",
            "int",
            "categorical",
        ):
            raise BertclfError(
                f"{path}: space.{key}: expected a train., head., tokenize. or learner. key "
                "with type float, int or categorical"
            )
    return space


def suggest(trial, space: dict) -> dict:
    """The trial's values, by dotted key."""
    values = {}
    for key, spec in space["space"].items():
        if spec["type"] == "categorical":
            values[key] = trial.suggest_categorical(key, spec["choices"])
        elif spec["type"] == "int":
            values[key] = trial.suggest_int(key, spec["low"], spec["high"])
        else:
            values[key] = trial.suggest_float(
                key, float(spec["low"]), float(spec["high"]), log=spec.get("log", False)
            )
    return values


def with_values(params: dict, values: dict) -> dict:
    """params.yaml's sections with the trial's values set (dotted keys), validated."""
    params = copy.deepcopy(params)
    for key, value in values.items():
        section, _, name = key.partition(".")
        params[section][name] = value
    for section in ("train", "head", "tokenize", "learner"):
        parse_section(section, params[section])
    return params


def token_cache_folder(tokenize) -> Path:
    """Where a study keeps the token caches of tokenize settings other than the DAG's: one
    folder per whole tokenize configuration (its JSON's sha256), so that settings that cut
    windows another way (long_text, head_fraction, chunk_stride) never share a cache."""
    import hashlib
    import json
    from dataclasses import asdict

    settings = json.dumps(asdict(tokenize), sort_keys=True)
    digest = hashlib.sha256(settings.encode("utf-8")).hexdigest()[:16]
    return TUNE_DIR / "tokenized" / f"max_length={tokenize.max_length}-{digest}"


def token_caches(tokenize) -> tuple:
    """The train and validation token caches for these tokenize settings: the DAG's own when
    they are the DAG's, else tokenized once into `token_cache_folder(tokenize)`."""
    from bertclf.labels import LabelMap
    from bertclf.tasks import task_of
    from bertclf.tokenization import (
        encode_split,
        load_tokenizer,
        read_token_cache,
        write_encoded_cache,
    )

    base = parse_section("tokenize", load_params()["tokenize"])
    if tokenize == base:
        folder = TOKENIZED
    else:
        folder = token_cache_folder(tokenize)
        if not all((folder / f"{s}.parquet").is_file() for s in ("train", "val")):
            import json

            import pandas as pd

            from bertclf.files import atomic_path

            tokenizer, task = load_tokenizer(PRETRAINED), task_of(LabelMap.load(LABELS))
            folder.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder, replace_directory=True) as tmp:
                tmp.mkdir()
                (tmp / "tokenize.json").write_text(json.dumps(vars(tokenize), indent=2) + "\n")
                for split in ("train", "val"):
                    frame = pd.read_parquet(PREPARED / f"{split}.parquet")
                    encoded = encode_split(tokenizer, frame, tokenize)
                    write_encoded_cache(
                        tmp / f"{split}.parquet", frame["id"].tolist(), encoded, task.targets(frame)
                    )
    return tuple(read_token_cache(folder / f"{s}.parquet") for s in ("train", "val"))


def pruning_callback(trial, monitor: str):
    """Reports the monitored validation metric after every epoch; stops training when the
    pruner says so (the trial is then marked pruned)."""
    import keras

    class Pruning(keras.callbacks.Callback):
        pruned = False
        values: list[float] = []

        def on_epoch_end(self, epoch, logs=None):
            self.values = [*self.values, float(logs[monitor])]
            trial.report(self.values[-1], epoch)
            if trial.should_prune():
                self.pruned = True
                self.model.stop_training = True

    return Pruning()


def run_trial(trial, space_name: str, space: dict, save_lock) -> float:
    """Train one trial; its best validation loss is the objective."""
    import optuna
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from bertclf.labels import LabelMap
    from bertclf.learners import FINETUNE, learn, log_fitted

    values = suggest(trial, space)
    params = with_values(load_params(), values)
    train = parse_section("train", {**params["train"], "threads": 0})  # set once per process
    head = parse_section("head", params["head"])
    tokenize = parse_section("tokenize", params["tokenize"])
    learner = parse_section("learner", params["learner"])
    monitor = "val_loss"
    train_cache, val_cache = token_caches(tokenize)
    name = f"{space_name}-{trial.number}"
    live_dir = TUNE_DIR / "trials" / name
    with save_lock:  # Live() reads the baseline commit, which another process's save moves
        live = Live(
            str(live_dir), dvcyaml=str(live_dir / "dvc.yaml"), save_dvc_exp=True, exp_name=name
        )
    live.log_params({**values, "trial": trial.number, "study": space_name})
    pruning = pruning_callback(trial, monitor)

    class EpochLogger(DVCLiveCallback):
        """DVCLive's per-epoch logging without its `live.end()` at the end of training: that
        end saves the DVC experiment, which this trial does below, under the save lock."""

        def on_train_end(self, logs=None):
            pass

    label_map = LabelMap.load(LABELS)
    learned = learn(  # the method auto chooses for the table, or the one the space samples
        PRETRAINED,
        label_map,
        train_cache,
        val_cache,
        train,
        head,
        tokenize,
        learner,
        params["seed"],
        callbacks=[EpochLogger(live=live), pruning],
        monitor=monitor,
    )
    losses = pruning.values or [math.inf]
    if learned.method != FINETUNE:  # fitted, not trained by epochs: one validation loss
        splits = {"train": train_cache, "eval": val_cache}
        losses = [log_fitted(live, learned, label_map, splits, train, tokenize)["eval/loss"]]
    live.log_params({"learner": learned.method})
    live.log_params({"pruned": pruning.pruned})
    live.summary.update({"best_val_loss": float(min(losses)), "epochs_run": len(losses)})
    with save_lock:  # `dvc exp save` takes the repository's lock: one trial at a time
        live.end()
    if pruning.pruned:
        raise optuna.TrialPruned()
    return float(min(losses))


def make_study(
    space_name: str,
    space: dict,
    worker: int = 0,
    storage_url: str | None = None,
    worker_id: str | None = None,
):
    """The study, created or loaded: in .tune/NAME.db, or in `storage_url`. A fresh study in
    one process samples as TPESampler(seed); a resumed study, or the second of --jobs
    processes, seeds its sampler from (seed, worker, trials so far): TPE draws its first
    trials at random, and the same seed would draw the values of trials the study already
    holds again. A study in a storage of the user's is shared by hosts that may all start as
    worker 0 at once: their seeds take `worker_id` too (by default the host's name and the
    process id), so that no two draw alike."""
    import numpy as np
    import optuna

    settings = space.get("pruner", {})
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(
            n_startup_trials=settings.get("startup_trials", 2),
            n_warmup_steps=settings.get("warmup_epochs", 0),
        ),
        "threshold": lambda: optuna.pruners.ThresholdPruner(upper=settings["upper"]),
        "none": optuna.pruners.NopPruner,
    }
    kind = settings.get("type", "median")
    if kind not in pruners:
        raise BertclfError(f"conf/tune/{space_name}.yaml: pruner.type {kind!r}: expected one of "
                           f"{', '.join(pruners)}")  # fmt: skip
    seed = space.get("seed", 0)
    where = storage(storage_url, space_name)
    try:
        study = create_study(
            study_name=space_name,
            storage=where,
            load_if_exists=True,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=pruners[kind](),
        )
    except Exception as error:  # a URL Optuna or SQLAlchemy refuses, a server not reached
        if storage_url is None:
            raise
        message = " ".join(str(error).split()).replace(storage_url, shown(storage_url))
        raise BertclfError(
            f"--storage {shown(storage_url)}: {type(error).__name__}: {message[:300]}"
        ) from None
    if worker_id is None and storage_url is not None:
        worker_id = f"{socket.gethostname()}-{os.getpid()}"
    started = len(study.trials)
    if worker or started or worker_id is not None:
        words = [seed, worker, started]
        if worker_id is not None:
            words.append(int.from_bytes(hashlib.sha256(worker_id.encode()).digest()[:8]))
        state = np.random.SeedSequence(words).generate_state(1)[0]
        study.sampler = optuna.samplers.TPESampler(seed=int(state))
    return study


def create_study(attempts: int = 5, **options):
    """`optuna.create_study`, asked again when the database refuses its schema: two hosts that
    start together on a new database both create Optuna's tables and types, and the second's
    `CREATE TYPE` fails with a duplicate key (seen with PostgreSQL) although the schema is
    then there."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(1, attempts + 1):
        try:
            return optuna.create_study(**options)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts:
                raise
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def finished(study) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def optimize(
    space_name: str,
    n_trials: int,
    timeout: float | None,
    threads: int,
    worker: int = 0,
    storage_url: str | None = None,
    worker_id: str | None = None,
    total: int | None = None,
) -> None:
    """One process's share of the study: `n_trials` more trials, or fewer at the timeout, or
    once the study holds `total` finished trials (processes on other hosts add theirs)."""
    import filelock
    import optuna

    from bertclf.distribution import configure

    configure("auto", threads)
    space = load_space(space_name)
    study = make_study(space_name, space, worker, storage_url, worker_id)
    TUNE_DIR.mkdir(exist_ok=True)
    lock = filelock.FileLock(str(TUNE_DIR / "exp-save.lock"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    callbacks = [] if total is None else [optuna.study.MaxTrialsCallback(total, states)]
    study.optimize(
        lambda trial: run_trial(trial, space_name, space, lock),
        n_trials=n_trials,
        timeout=timeout,
        callbacks=callbacks,
    )


def missing_outputs() -> list[str]:
    """The DAG's outputs absent from the workspace (`dvc exp save`, which saves each trial,
    fails on them)."""
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BertclfError(f"dvc status failed: {result.stderr.strip().splitlines()[-1:]}")
    missing = set()
    for changes in json.loads(result.stdout or "{}").values():
        for change in changes if isinstance(changes, list) else []:
            for path in (change.get("changed outs") or {}) if isinstance(change, dict) else {}:
                if not Path(path).exists():
                    missing.add(path)
    return sorted(missing)


def tune(
    space_name: str,
    trials: int,
    timeout: float | None,
    jobs: int,
    storage_url: str | None = None,
    worker_id: str | None = None,
) -> dict:
    """Run (or resume) the study with `jobs` processes, until it holds `trials` finished ones
    (with those of other hosts, on a shared storage); write the best values as Hydra options
    and return a summary."""
    import multiprocessing

    if not Path(PARAMS_FILE).is_file() or not (TOKENIZED / "train.parquet").is_file():
        raise BertclfError("bertclf tune needs the DAG's outputs: run `dvc repro` first")
    load_space(space_name)  # a bad space fails here, before any process starts
    missing = missing_outputs()
    if missing:
        raise BertclfError(
            f"bertclf tune saves every trial as a DVC experiment, which needs the DAG's outputs "
            f"in the workspace; missing: {', '.join(missing)}: run `dvc repro` first"
        )
    # trials the study still needs, split between the processes up front (a process that
    # counted finished trials itself would start one more while another's is still running)
    study = make_study(space_name, load_space(space_name), 0, storage_url, worker_id)
    remaining = max(0, trials - finished(study))
    shares = [n for n in (remaining // jobs + (w < remaining % jobs) for w in range(jobs)) if n]
    threads = max(1, (os.cpu_count() or 1) // len(shares)) if len(shares) > 1 else 0
    shared = (storage_url, worker_id, trials)
    if len(shares) == 1:
        optimize(space_name, shares[0], timeout, threads, 0, *shared)
    elif shares:
        context = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
        workers = [
            context.Process(
                target=optimize, args=(space_name, n, timeout, threads, worker, *shared)
            )
            for worker, n in enumerate(shares)
        ]
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                worker.join()
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
                    worker.join()
        failed = [w.exitcode for w in workers if w.exitcode]
        if failed:
            raise BertclfError(f"bertclf tune: {len(failed)} of {jobs} worker processes failed")
    return write_tuned(space_name, storage_url=storage_url)


def write_tuned(
    space_name: str, config_dir: Path = Path("conf"), storage_url: str | None = None
) -> dict:
    """conf/train/tuned.yaml and conf/head/tuned.yaml: the groups' default options with the
    best trial's values; returns the study's summary and the command that reproduces it."""
    import optuna

    space = load_space(space_name, config_dir)
    study = make_study(space_name, space, storage_url=storage_url)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise BertclfError(f"study {space_name}: no trial finished unpruned yet")
    best = study.best_trial
    params = load_params()
    for group in GROUPS:
        values = {k.split(".", 1)[1]: v for k, v in best.params.items() if k.startswith(group)}
        options = {**params[group], **values}
        header = (
            f"# Written by `bertclf tune --space {space_name}`: the best of its trials "
            f"(trial {best.number}, validation loss {best.value:.4f}). Use with -S {group}=tuned.\n"
        )
        text = header + OmegaConf.to_yaml(OmegaConf.create(options))
        (config_dir / group / "tuned.yaml").write_text(text, encoding="utf-8")
    # tokenize and learner keys are given as they are (learner's group holds only its method)
    as_given = ("tokenize.", "learner.")
    tuned_keys = {key for key in space["space"] if key.startswith(as_given)}
    overrides = [f"-S {group}=tuned" for group in GROUPS]
    overrides += [f"-S {k}={v}" for k, v in best.params.items() if k.startswith(as_given)]
    states = [t.state.name for t in study.trials]
    return {
        "trials": len(study.trials),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "best_trial": best.number,
        "best_val_loss": best.value,
        "best_params": best.params,
        "command": "dvc exp run " + " ".join(overrides),
        "params_differ_from_defaults": differing_keys(params, set(GROUPS) | tuned_keys),
    }


def differing_keys(params: dict, tuned: set[str]) -> list[str]:
    """The keys where params.yaml differs from conf/'s default composition, outside what the
    tuned options set: the overrides params.yaml was made with, which the command needs too."""
    import tempfile

    from bertclf.config import compose_params

    with tempfile.TemporaryDirectory(prefix="bertclf-tune-") as scratch:
        compose_params(Path(scratch) / "defaults.yaml")
        defaults = load_params(Path(scratch) / "defaults.yaml")
    differing = []
    for section in sorted(set(params) | set(defaults)):
        if section in tuned:
            continue
        ours, theirs = params.get(section), defaults.get(section)
        if isinstance(ours, dict) and isinstance(theirs, dict):
            differing += [
                f"{section}.{key}"
                for key in sorted(set(ours) | set(theirs))
                if f"{section}.{key}" not in tuned and ours.get(key) != theirs.get(key)
            ]
        elif ours != theirs:
            differing.append(section)
    return differing
