"""Training spread over devices and processes by tf.distribute, and sharded batch prediction.

Logical devices and MultiWorkerMirroredStrategy must be set up before TensorFlow starts, so
every training case runs in processes of its own, under a hard timeout that kills them."""

import json
import socket
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, TINY, restore, run, start, stop

from bertclf.batching import bucketed_batches, full_batches
from bertclf.distribution import is_chief
from bertclf.errors import BertclfError

TIMEOUT = 300
# Dropout draws different masks when a batch is split over replicas; without it, the only
# difference left between strategies is arithmetic.
NO_DROPOUT = [
    "head.dropout=0",
    "model.random_init.hidden_dropout_prob=0",
    "model.random_init.attention_probs_dropout_prob=0",
]


def test_full_batches_have_equal_size_and_drop_only_the_remainder():
    lengths = np.random.default_rng(0).integers(1, 300, size=1003)
    batches = full_batches(bucketed_batches(lengths, 32, 32, 256, np.random.default_rng(1)), 32)
    assert {len(b) for b in batches} == {32}
    assert len(batches) == 1003 // 32
    members = np.concatenate(batches)
    assert len(set(members.tolist())) == len(members)


@pytest.mark.parametrize(
    ("tf_config", "chief"),
    [
        (None, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
        (
            {
                "cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                "task": {"type": "worker", "index": 0},
            },
            False,
        ),
        (
            {
                "cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                "task": {"type": "chief", "index": 0},
            },
            True,
        ),
    ],
)
def test_chief_is_read_from_tf_config(monkeypatch, tf_config, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert is_chief() is chief


def test_malformed_tf_config_is_one_message(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(BertclfError, match="TF_CONFIG: not valid JSON of the form"):
        is_chief()


def test_train_threads_set_tensorflows_thread_pools(tmp_path):
    code = (
        "import bertclf, tensorflow as tf\n"
        "from bertclf.distribution import configure\n"
        "configure('auto', 1)\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads())\n"
    )
    out = run([sys.executable, "-c", code], tmp_path, timeout=TIMEOUT).stdout
    assert out.split()[-2:] == ["1", "1"]


def train_metrics(repo) -> dict:
    return json.loads((repo / "reports/train/metrics.json").read_text())


@pytest.mark.e2e
@pytest.mark.retrains
def test_mirrored_over_two_cpus_matches_one_device(dag_repo):
    try:
        run(["bertclf", "params", *TINY, *NO_DROPOUT, "train.distribution=one_device"], dag_repo)
        one = run(["dvc", "repro", "train"], dag_repo, timeout=TIMEOUT).stdout
        assert "training: one_device, 1 replica(s)" in one
        single = train_metrics(dag_repo)

        run(["bertclf", "params", *TINY, *NO_DROPOUT, "train.distribution=mirrored"], dag_repo)
        script = [sys.executable, str(ROOT / "tests/with_cpu_devices.py"), "2", "stages/train.py"]
        out = run(script, dag_repo, timeout=TIMEOUT, env={"PYTHONPATH": "src"}).stdout
        assert "training: mirrored, 2 replica(s)" in out
        mirrored = train_metrics(dag_repo)

        # Same global batches. Batches of even size split evenly and give the same numbers to
        # float rounding; an odd-sized batch (the last of a length bucket) is split 16/15 and
        # Keras averages the loss per replica, which weights its texts slightly unequally.
        for split in ("train", "eval"):
            assert mirrored[split]["loss"] == pytest.approx(single[split]["loss"], abs=2e-3)
            assert mirrored[split]["accuracy"] == pytest.approx(single[split]["accuracy"], abs=0.01)
    finally:
        restore(dag_repo)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.e2e
@pytest.mark.retrains
def test_multi_worker_two_processes_keep_only_the_chiefs_outputs(dag_repo, tmp_path):
    stage = [sys.executable, "stages/train.py"]
    try:
        run(["bertclf", "params", *TINY, "train.distribution=multi_worker"], dag_repo)
        refused = run(stage, dag_repo, check=False, timeout=TIMEOUT, env={"PYTHONPATH": "src"})
        assert refused.returncode == 2
        assert "error: train.distribution=multi_worker needs the TF_CONFIG" in refused.stderr
        assert "Traceback" not in refused.stderr

        for out in ("models/trained", "reports/train"):
            run(["rm", "-rf", out], dag_repo)
        cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
        workers = []
        for index in range(2):
            task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            env = {"PYTHONPATH": "src", "TF_CONFIG": json.dumps(task), "TMPDIR": str(tmp_path)}
            workers.append(start(stage, dag_repo, env))
        try:
            results = [w.communicate(timeout=TIMEOUT) for w in workers]
        finally:
            for w in workers:
                stop(w)
        for w, (stdout, stderr) in zip(workers, results, strict=True):
            assert w.returncode == 0, stdout + stderr
            assert "training: multi_worker, 2 replica(s)" in stdout
        # the custom loop's logs are the whole global batch's (summed across the workers),
        # so both workers print the same figures for every epoch
        epochs = [[ln for ln in out.splitlines() if ln.startswith("epoch ")] for out, _ in results]
        assert epochs[0] and epochs[0] == epochs[1]
        assert "val_accuracy" in epochs[0][0]
        assert "train: saved models/trained/" in results[0][0]
        assert f"train: saved {tmp_path}" in results[1][0]  # the non-chief's scratch copy ...
        assert list(tmp_path.iterdir()) == []  # ... is gone
        assert sorted(p.name for p in (dag_repo / "models/trained").iterdir()) == [
            "model.json",
            "model.weights.h5",
        ]
        assert train_metrics(dag_repo)["eval"]["loss"] > 0
    finally:
        restore(dag_repo)


@pytest.mark.e2e
def test_sharded_prediction_covers_the_input_once(dag_repo, tmp_path):
    base = ["bertclf", "predict", "--model", "models/package", "--id-column", "id"]
    base += ["--input", "data/prepared/test.parquet", "--chunk-rows", "70", "--quiet"]
    run([*base, "--output", str(tmp_path / "all.csv")], dag_repo, timeout=TIMEOUT)
    whole = pd.read_csv(tmp_path / "all.csv", dtype={"id": str})
    shards = []
    for i, suffix in enumerate(["jsonl", "parquet", "csv"]):
        out = tmp_path / f"shard_{i}.{suffix}"
        result = run([*base, "--shard", f"{i}/3", "--output", str(out)], dag_repo, timeout=TIMEOUT)
        assert f"(shard {i}/3)" in result.stdout
        shards.append(
            pd.read_parquet(out)
            if suffix == "parquet"
            else pd.read_json(out, lines=True, dtype={"id": str})
            if suffix == "jsonl"
            else pd.read_csv(out, dtype={"id": str})
        )
    # shard i holds chunks i, i+3, ...: its rows keep the input order
    expected_first = whole.iloc[0:70]["id"].tolist()
    assert shards[0]["id"].tolist()[:70] == expected_first
    assert shards[1]["id"].tolist()[:70] == whole.iloc[70:140]["id"].tolist()
    union = pd.concat(shards).set_index("id")
    assert sorted(union.index) == sorted(whole["id"])  # every row once
    union = union.loc[whole["id"]]
    assert union["label"].tolist() == whole["label"].tolist()
    np.testing.assert_allclose(union["probability"], whole["probability"], atol=1e-6)


def test_bad_shard_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out.csv"
    result = run(
        ["bertclf", "predict", "--model", "m", "--input", "in.csv", "--output", str(out)]
        + ["--shard", "3/3"],
        tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --shard 3/3: expected I/N with 0 <= I < N, such as 0/4"
    assert not out.exists()
