"""`bertclf predict --engine ray`: batch scoring on Ray Data, over a local Ray cluster that
bertclf starts on this machine (its CPUs: 2 here), against `bertclf predict` on the same rows."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from helpers import SHARED, run

REUTERS = SHARED / "fixtures" / "reuters21578_modapte_test.jsonl"
TIMEOUT = 300


def reuters_texts(rows: int) -> pd.DataFrame:
    """Real news texts (the first 400 characters: the tiny model's length) with ids."""
    if not REUTERS.is_file():
        pytest.skip(f"{REUTERS} not found: clone the project beside ../shared to run this")
    with REUTERS.open(encoding="utf-8") as lines:
        texts = [json.loads(line)["text"][:400] for line in itertools.islice(lines, rows)]
    return pd.DataFrame({"doc": [f"r{i:05d}" for i in range(len(texts))], "text": texts})


def predict(repo, *options: str, check: bool = True):
    base = ["bertclf", "predict", "--model", "models/package", "--id-column", "doc", "--quiet"]
    return run([*base, *options], repo, check=check, timeout=TIMEOUT)


def assert_same_predictions(ray_output, local: pd.DataFrame) -> None:
    scored = pd.read_parquet(ray_output)
    assert len(scored) == len(local)
    assert sorted(scored["doc"]) == sorted(local["doc"])  # every row once, its id kept
    scored = scored.set_index("doc").loc[local["doc"]]
    assert scored["text"].tolist() == local["text"].tolist()
    assert scored["label"].tolist() == local["label"].tolist()
    np.testing.assert_allclose(scored["probability"], local["probability"], atol=1e-3)


@pytest.mark.e2e
def test_ray_engine_predicts_every_row_once_as_the_local_engine_does(dag_repo, tmp_path):
    table = reuters_texts(2400)
    parquet_dir, csv_dir = tmp_path / "parquet", tmp_path / "csv"
    parquet_dir.mkdir(), csv_dir.mkdir()
    bounds = [0, 400, 1000, 1350, 1850, len(table)]  # several files, of unequal sizes
    for part, (start, end) in enumerate(itertools.pairwise(bounds)):
        table.iloc[start:end].to_parquet(parquet_dir / f"part-{part}.parquet", index=False)
    table.iloc[:300].to_csv(csv_dir / "a.csv", index=False)
    table.iloc[300:450].to_csv(csv_dir / "b.csv", index=False)
    (csv_dir / "notes.txt").write_text("not matched by the glob")
    table.to_parquet(tmp_path / "all.parquet", index=False)

    local_output = tmp_path / "local.parquet"
    predict(dag_repo, "--input", str(tmp_path / "all.parquet"), "--output", str(local_output))
    local = pd.read_parquet(local_output)

    result = predict(
        dag_repo, "--engine", "ray", "--input", str(parquet_dir),
        "--output", str(tmp_path / "scored"),
        "--concurrency", "2", "--cpus-per-actor", "0.5", "--chunk-rows", "256",
    )  # fmt: skip
    assert f"wrote {len(table)} predictions" in result.stdout, result.stdout
    assert_same_predictions(tmp_path / "scored", local)

    predict(
        dag_repo, "--engine", "ray", "--input", str(csv_dir / "*.csv"),
        "--output", str(tmp_path / "scored_csv"),
    )  # fmt: skip
    assert_same_predictions(tmp_path / "scored_csv", local.iloc[:450])
    # the output folders hold the partitions only; nothing else was left beside them
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["parquet", "csv", "all.parquet", "local.parquet", "scored", "scored_csv"]
    )


@pytest.mark.e2e
def test_ray_engine_refuses_in_one_line_and_writes_nothing(dag_repo, tmp_path):
    table = reuters_texts(300)
    inputs = tmp_path / "in"
    inputs.mkdir()
    table.iloc[:150].to_parquet(inputs / "a.parquet", index=False)
    table.iloc[150:].assign(text=lambda t: t["text"].where(t["doc"] != "r00222", "   ")).to_parquet(
        inputs / "b.parquet", index=False
    )
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")

    refusals = {
        # checked before Ray starts
        (str(inputs), str(existing)): f"{existing}: exists",
        (str(tmp_path / "none" / "*.parquet"), str(tmp_path / "out")): "no Parquet or CSV files",
        (str(inputs), str(tmp_path / "out"), "--shard", "0/2"): "--shard is for the local engine",
        (str(inputs), str(tmp_path / "out"), "--text-pair-column", "text"): (
            "models/package: the model takes one text per example"
        ),
        # checked on the cluster: the actors would leave no CPU to read with
        (str(inputs), str(tmp_path / "out"), "--concurrency", "2"): "Ray Data needs one more",
        # found by an actor, in the second file
        (str(inputs), str(tmp_path / "out"), "--cpus-per-actor", "0.5"): (
            f"{inputs}: the row with doc 'r00222' of column 'text' is empty or only whitespace"
        ),
    }
    for (source, output, *options), message in refusals.items():
        result = predict(
            dag_repo, "--engine", "ray", "--input", source, "--output", output, *options,
            check=False,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], result.stderr
        assert "Traceback" not in result.stderr
    assert (existing / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "in"]  # no partial output


def test_an_actor_s_error_is_its_one_line_whichever_way_ray_carries_it():
    """A batch's error arrives as the cause of a RayTaskError; an actor that failed to start
    (the package missing on a worker node) as an ActorDiedError holding only its text."""
    import ray.exceptions

    from bertclf.errors import BertclfError
    from bertclf.ray_predict import _bertclf_error

    line = "/models/package: package directory not found"
    traceback = (
        f'Traceback (most recent call last):\n  File "a.py"\nbertclf.errors.BertclfError: {line}\n'
    )
    task_error = ray.exceptions.RayTaskError("__init__", traceback, BertclfError(line))
    assert str(_bertclf_error(task_error.as_instanceof_cause())) == line
    assert str(_bertclf_error(ray.exceptions.ActorDiedError(task_error))) == line
    assert _bertclf_error(ray.exceptions.ActorDiedError()) is None  # not ours: left as it is
