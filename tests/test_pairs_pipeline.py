"""Text pairs and regression end to end, in one build: the real `dvc repro` with the tiny model on
240 STS-B pairs (conf/data/stsb.yaml pointed at a slice of ../shared's file), with 3-fold
cross-validation; then the package's SavedModel, the Python API, `bertclf predict`,
`bertclf evaluate` and `bertclf serve` on what it built. (Single-label pairs share every layer
but the task's, which the other builds cover; the MRPC run of docs/pairs-and-regression.md
trains one for real.)"""

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers import (
    SHARED,
    TINY,
    build_repo,
    check_explained_mistakes,
    check_label_issues,
    command_env,
    copy_project,
    free_port,
    read_json,
    request,
    run,
    start_server,
    stop_server,
    triton_client,
    triton_infer,
)
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pairs_repo(tmp_path_factory):
    repo = copy_project(tmp_path_factory.mktemp("pairs") / "project")
    (repo / "data/raw").mkdir(parents=True, exist_ok=True)
    table = pd.read_json(SHARED / "fixtures/stsb_train.jsonl", lines=True).head(240)
    table.to_json(repo / "data/raw/train.jsonl", orient="records", lines=True)
    overrides = [
        *(o for o in TINY if not o.startswith("tokenize.max_length=")),
        "train.epochs=2",
        "task=regression",
        "data=stsb",
        "data.path=data/raw/train.jsonl",
        "tokenize.max_length=20",  # a fifth of the pairs are cut, longer text first
        "cv=kfold3",
    ]
    return build_repo(repo, overrides, "tiny pair regression model")


def pearson(a, b) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_the_dag_builds_pair_regression_reports_with_folds(pairs_repo):
    assert "up to date" in run(["dvc", "status"], pairs_repo).stdout
    assert read_json(pairs_repo, "models/labels.json")["task"] == "regression"
    assert read_json(pairs_repo, "models/calibration.json") == {
        "scaling": "none",
        "temperature": None,
        "rule": "the score",
    }
    keys = {"n", "pearson", "spearman", "rmse", "mae", "r2", "by_length"}
    for name in ("reports/metrics.json", "reports/baseline.json"):
        for split in ("test", "val"):
            assert set(read_json(pairs_repo, name)[split]) == keys
    prepare = read_json(pairs_repo, "reports/prepare.json")
    assert prepare["score_summary"]["test"]["n"] == 48
    tokenize = read_json(pairs_repo, "reports/tokenize.json")
    assert tokenize["text_pairs"] is True
    assert 0 < tokenize["test"]["long_texts"] < 48  # pairs cut to 20 tokens
    assert tokenize["test"]["sequences"] == 48  # one window a pair
    assert read_json(pairs_repo, "models/trained/model.json")["pair_separator_id"] == 102
    test = pd.read_parquet(pairs_repo / "data/prepared/test.parquet")
    assert list(test.columns) == ["id", "text", "text_pair", "score"]
    plots = pairs_repo / "reports/plots"
    assert sorted(p.name for p in plots.iterdir()) == ["predicted.csv", "residuals.csv"]
    errors = pd.read_csv(pairs_repo / "reports/errors.csv")
    columns = ["id", "text", "text_pair", "true_score", "predicted_score", "error"]
    assert list(errors.columns) == columns
    assert errors["error"].abs().is_monotonic_decreasing
    assert "Evaluation report (regression)" in (pairs_repo / "reports/report.md").read_text()
    check_explained_mistakes(pairs_repo)
    cv = read_json(pairs_repo, "reports/cv.json")
    assert cv["k"] == 3 and "pearson" in cv["mean"]
    table, issues = check_label_issues(pairs_repo)
    for k, fold in enumerate(cv["folds"]):  # each fold's score is its rows' in the table
        rows = table[table["fold"] == k]
        assert pearson(rows["score"], rows["predicted"]) == pytest.approx(fold["pearson"], abs=1e-4)
    assert len(issues) == math.ceil(len(table) * 0.05)  # label_issues.regression_fraction
    assert list(issues.columns[:4]) == ["rank", "id", "text", "text_pair"]
    card = (pairs_repo / "models/package/MODEL_CARD.md").read_text()
    assert "Regression" in card and "Pearson" in card
    assert "text pairs from columns `sentence1` and `sentence2`" in card


def test_the_package_takes_pairs_and_answers_scores_in_every_runtime(pairs_repo):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the in-graph tokenizer's ops)

    from bertclf import Classifier
    from bertclf.errors import BertclfError

    package = read_json(pairs_repo, "reports/package.json")
    assert package["token_ids_identical"] == 1.0 and package["max_probability_difference"] <= 1e-4
    f32 = package["openvino"]["precisions"]["f32"]
    assert f32["passed"] and abs(f32["pearson"] - f32["tensorflow_pearson"]) <= 0.005
    test = pd.read_parquet(pairs_repo / "data/prepared/test.parquet")
    texts, pairs = test["text"].tolist(), test["text_pair"].tolist()
    saved = tf.saved_model.load(str(pairs_repo / "models/package/saved_model"))
    serving = saved.signatures["serving_default"]
    assert set(serving.structured_input_signature[1]) == {"text", "text_pair"}
    exported = serving(text=tf.constant(texts), text_pair=tf.constant(pairs))["score"].numpy()
    reported = read_json(pairs_repo, "reports/metrics.json")["test"]["pearson"]
    for runtime in ("tensorflow", "openvino"):
        classifier = Classifier.load(pairs_repo / "models/package", runtime=runtime)
        assert classifier.text_pair
        scores = classifier.predict(texts, text_pairs=pairs)
        assert scores.dtype == np.float32 and scores.shape == (len(texts),)
        np.testing.assert_allclose(scores, exported, atol=1e-4)
        assert pearson(test["score"], scores) == pytest.approx(reported, abs=1e-4)
    swapped = classifier.predict(pairs, text_pairs=texts)
    assert not np.allclose(swapped, scores, atol=1e-6)  # (b, a) is another example
    with pytest.raises(BertclfError, match="answers scores, not probabilities"):
        classifier.predict_proba(texts, text_pairs=pairs)
    with pytest.raises(BertclfError, match="takes text pairs"):
        classifier.predict(texts)
    with pytest.raises(BertclfError, match="give one second text per text"):
        classifier.predict(texts, text_pairs=pairs[:-1])
    with pytest.raises(BertclfError, match=r"text_pairs\[0\] is empty"):
        classifier.predict(texts[:1], text_pairs=[" "])


def test_predict_and_evaluate_take_the_pair_column(pairs_repo, tmp_path):
    test = pd.read_parquet(pairs_repo / "data/prepared/test.parquet")
    source = tmp_path / "test.csv"
    test.rename(columns={"text": "sentence1", "text_pair": "sentence2"}).to_csv(source, index=False)
    base = ["--model", "models/package", "--input", str(source), "--text-column", "sentence1"]
    out = tmp_path / "predicted.csv"
    refused = run(["bertclf", "predict", *base, "--output", str(out)], pairs_repo, check=False)
    assert refused.returncode != 0 and not out.exists()
    assert "takes text pairs" in refused.stderr and "--text-pair-column" in refused.stderr
    base += ["--text-pair-column", "sentence2"]
    run(["bertclf", "predict", *base, "--output", str(out)], pairs_repo)
    predicted = pd.read_csv(out)
    assert list(predicted.columns) == ["sentence1", "sentence2", "score"]
    reported = read_json(pairs_repo, "reports/metrics.json")["test"]["pearson"]
    assert pearson(test["score"], predicted["score"]) == pytest.approx(reported, abs=1e-4)
    scored = tmp_path / "scored.json"
    run(["bertclf", "evaluate", *base, "--label-column", "score", "--output", str(scored)],
        pairs_repo)  # fmt: skip
    assert json.loads(scored.read_text())["pearson"] == pytest.approx(reported, abs=1e-4)


def test_serve_takes_text_pairs_and_answers_scores(pairs_repo, tmp_path):
    from bertclf import Classifier

    test = pd.read_parquet(pairs_repo / "data/prepared/test.parquet")
    texts, pairs = test["text"][:3].tolist(), test["text_pair"][:3].tolist()
    expected = Classifier.load(pairs_repo / "models/package").predict(texts, text_pairs=pairs)
    port = free_port()
    options = ["--max-request-chars", "300"]
    server = start_server(
        pairs_repo / "models/package", port, tmp_path / "serve.log", *options, env=command_env()
    )
    try:
        status, about = request(port, "GET", "/v1/metadata")
        assert status == 200 and about["inputs"] == ["text", "text_pair"]
        assert about["task"] == "regression" and about["format_version"] == 11

        def post(body):
            return request(port, "POST", "/v1/predict", json.dumps(body).encode())

        status, answer = post({"texts": texts, "text_pairs": pairs})
        assert status == 200
        scores = [prediction["score"] for prediction in answer["predictions"]]
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        status, answer = post({"texts": ["a", "b"], "text_pairs": ["c"]})
        assert status == 422 and "2 texts and 1 text_pairs" in json.dumps(answer)
        status, answer = post({"texts": ["a cat sat"]})
        assert status == 422 and "text_pairs" in json.dumps(answer)
        status, answer = post({"texts": ["x" * 100] * 2, "text_pairs": ["y" * 100] * 2})
        assert status == 413  # 400 characters in all: both texts of a pair count
        status, schema = request(port, "GET", "/openapi.json")
        body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
        assert "text_pairs" in body["application/json"]["schema"]["properties"]
        # the Open Inference Protocol, through a real v2 client: two BYTES inputs, one score
        metadata = triton_client(port).get_model_metadata("package")
        assert [i["name"] for i in metadata["inputs"]] == ["text", "text_pair"]
        assert metadata["outputs"] == [{"name": "score", "datatype": "FP32", "shape": [-1]}]
        result = triton_infer(port, "package", {"text": texts, "text_pair": pairs})
        np.testing.assert_allclose(result.as_numpy("score"), expected, atol=1e-5)
        with pytest.raises(InferenceServerException) as error:
            triton_infer(port, "package", {"text": texts})  # no text_pair
        assert error.value.status() == "400" and "text_pair" in error.value.message()
    finally:
        stop_server(server)
    assert server.returncode is not None
