"""Text pairs end to end: the real `dvc repro` with the tiny model on a few hundred MRPC pairs
(conf/data/mrpc.yaml pointed at a slice of ../shared's files), with 3-fold cross-validation;
then the package's SavedModel, the Python API, `bertclf predict`, `bertclf evaluate` and
`bertclf serve` on what it built."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import (
    SHARED,
    TINY,
    build_repo,
    command_env,
    copy_project,
    free_port,
    read_json,
    request,
    run,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.e2e

MRPC = SHARED / "fixtures"


@pytest.fixture(scope="module")
def pairs_repo(tmp_path_factory):
    repo = copy_project(tmp_path_factory.mktemp("pairs") / "project")
    raw = repo / "data/raw"
    raw.mkdir(parents=True, exist_ok=True)
    train = pd.read_json(MRPC / "mrpc_train.jsonl", lines=True).head(240)
    test = pd.read_json(MRPC / "mrpc_test.jsonl", lines=True).head(80)
    train.to_json(raw / "train.jsonl", orient="records", lines=True)
    test.to_json(raw / "test.jsonl", orient="records", lines=True)
    overrides = [
        *(o for o in TINY if not o.startswith("tokenize.max_length=")),
        "data=mrpc",
        "data.path=data/raw/train.jsonl",
        "data.test_path=data/raw/test.jsonl",
        "tokenize.max_length=48",  # some pairs are cut, longer text first
        "cv=kfold3",
    ]
    return build_repo(repo, overrides, "tiny pair model")


def test_the_dag_builds_a_pair_model_with_folds_baseline_and_reports(pairs_repo):
    assert "up to date" in run(["dvc", "status"], pairs_repo).stdout
    tokenize = read_json(pairs_repo, "reports/tokenize.json")
    assert tokenize["text_pairs"] is True
    assert 0 < tokenize["test"]["long_texts"] < 80  # pairs cut to 48 tokens
    assert tokenize["test"]["sequences"] == 80  # one window a pair
    spec = read_json(pairs_repo, "models/trained/model.json")
    assert spec["pair_separator_id"] == 102  # [SEP]
    assert set(read_json(pairs_repo, "reports/baseline.json")["test"]) >= {"accuracy", "macro_f1"}
    assert read_json(pairs_repo, "reports/cv.json")["k"] == 3
    errors = pd.read_csv(pairs_repo / "reports/errors.csv")
    assert list(errors.columns[:3]) == ["id", "text", "text_pair"]
    test = pd.read_parquet(pairs_repo / "data/prepared/test.parquet")
    assert list(test.columns) == ["id", "text", "text_pair", "label"]


def test_the_package_takes_pairs_in_every_runtime(pairs_repo):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the in-graph tokenizer's ops)

    from bertclf import Classifier
    from bertclf.errors import BertclfError

    package = read_json(pairs_repo, "reports/package.json")
    assert package["token_ids_identical"] == 1.0 and package["max_probability_difference"] <= 1e-4
    test = pd.read_parquet(pairs_repo / "data/prepared/test.parquet")
    texts, pairs = test["text"].tolist(), test["text_pair"].tolist()
    saved = tf.saved_model.load(str(pairs_repo / "models/package/saved_model"))
    serving = saved.signatures["serving_default"]
    assert set(serving.structured_input_signature[1]) == {"text", "text_pair"}
    exported = serving(text=tf.constant(texts), text_pair=tf.constant(pairs))
    for runtime in ("tensorflow", "openvino"):
        classifier = Classifier.load(pairs_repo / "models/package", runtime=runtime)
        assert classifier.text_pair
        probabilities = classifier.predict_proba(texts, text_pairs=pairs)
        np.testing.assert_allclose(probabilities, exported["probabilities"].numpy(), atol=1e-4)
    swapped = classifier.predict_proba(pairs, text_pairs=texts)
    assert not np.allclose(swapped, probabilities, atol=1e-6)  # (b, a) is another example
    with pytest.raises(BertclfError, match="takes text pairs"):
        classifier.predict(texts)
    with pytest.raises(BertclfError, match="give one second text per text"):
        classifier.predict(texts, text_pairs=pairs[:-1])
    with pytest.raises(BertclfError, match=r"text_pairs\[0\] is empty"):
        classifier.predict(texts[:1], text_pairs=[" "])


def test_predict_and_evaluate_take_the_pair_column(pairs_repo, tmp_path):
    test = pd.read_json(pairs_repo / "data/raw/test.jsonl", lines=True)
    test.to_csv(tmp_path / "test.csv", index=False)
    base = ["--model", "models/package", "--input", str(tmp_path / "test.csv")]
    columns = ["--text-column", "sentence1"]
    out = tmp_path / "predicted.csv"
    refused = run(["bertclf", "predict", *base, *columns, "--output", str(out)], pairs_repo, False)
    assert refused.returncode != 0 and not out.exists()
    assert "takes text pairs" in refused.stderr and "--text-pair-column" in refused.stderr
    columns += ["--text-pair-column", "sentence2"]
    run(["bertclf", "predict", *base, *columns, "--output", str(out)], pairs_repo)
    predicted = pd.read_csv(out)
    assert list(predicted.columns[:2]) == ["sentence1", "sentence2"]
    reported = read_json(pairs_repo, "reports/metrics.json")["test"]
    right = (predicted["label"] == test["label"]).sum()
    assert abs(right - reported["accuracy"] * len(test)) <= 1  # within one text
    scored = tmp_path / "scored.json"
    evaluate = ["bertclf", "evaluate", *base, *columns, "--output", str(scored)]
    run(evaluate, pairs_repo)
    assert json.loads(scored.read_text())["accuracy"] == pytest.approx(
        reported["accuracy"], abs=1.5 / len(test)
    )


def test_serve_takes_text_pairs(pairs_repo, tmp_path):
    port = free_port()
    options = ["--max-request-chars", "300"]
    server = start_server(
        pairs_repo / "models/package", port, tmp_path / "serve.log", *options, env=command_env()
    )
    try:
        status, about = request(port, "GET", "/v1/metadata")
        assert status == 200 and about["inputs"] == ["text", "text_pair"]
        assert about["task"] == "single_label" and about["format_version"] == 9

        def post(body):
            return request(port, "POST", "/v1/predict", json.dumps(body).encode())

        status, answer = post({"texts": ["a cat sat", "rain"], "text_pairs": ["a cat sits", "sun"]})
        assert status == 200 and len(answer["predictions"]) == 2
        status, answer = post({"texts": ["a", "b"], "text_pairs": ["c"]})
        assert status == 422 and "2 texts and 1 text_pairs" in json.dumps(answer)
        status, answer = post({"texts": ["a cat sat"]})
        assert status == 422 and "text_pairs" in json.dumps(answer)
        status, answer = post({"texts": ["x" * 100] * 2, "text_pairs": ["y" * 100] * 2})
        assert status == 413  # 400 characters in all: both texts of a pair count
        status, schema = request(port, "GET", "/openapi.json")
        body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
        assert "text_pairs" in body["application/json"]["schema"]["properties"]
    finally:
        stop_server(server)
    assert server.returncode is not None
