"""Regression end to end: the real `dvc repro` with the tiny model on a CSV of rated reviews,
with 3-fold cross-validation; then the package, the Python API and `bertclf predict` on what it
built, `bertclf predict` and `bertclf serve`."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import (
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

GOOD = ["great", "wonderful", "excellent", "superb"]
BAD = ["awful", "terrible", "poor", "dreadful"]


def rated_reviews(n: int, seed: int) -> pd.DataFrame:
    """A review's rating is how many of its four words are good, plus a little noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        good = int(rng.integers(0, 5))
        words = " ".join(rng.permutation(GOOD[:good] + BAD[: 4 - good]))
        rows.append({"text": f"Review {i}: {words} service.", "rating": good + rng.normal(0, 0.2)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def rated_repo(tmp_path_factory):
    repo = copy_project(tmp_path_factory.mktemp("regression") / "project")
    (repo / "data/raw").mkdir(parents=True, exist_ok=True)
    rated_reviews(240, seed=0).to_csv(repo / "data/raw/ratings.csv", index=False)
    overrides = [
        *TINY,
        "train.epochs=2",
        "task=regression",
        "data=table",
        "data.path=data/raw/ratings.csv",
        "data.label_column=rating",
        "cv=kfold3",
    ]
    return build_repo(repo, overrides, "tiny regression model")


def test_the_dag_builds_regression_reports(rated_repo):
    assert "up to date" in run(["dvc", "status"], rated_repo).stdout
    assert read_json(rated_repo, "models/labels.json")["task"] == "regression"
    assert read_json(rated_repo, "models/calibration.json") == {
        "scaling": "none",
        "temperature": None,
        "rule": "the score",
    }
    keys = {"n", "pearson", "spearman", "rmse", "mae", "r2", "by_length"}
    for name in ("reports/metrics.json", "reports/baseline.json"):
        for split in ("test", "val"):
            assert set(read_json(rated_repo, name)[split]) == keys
    baseline = read_json(rated_repo, "reports/baseline.json")["test"]
    assert baseline["pearson"] > 0.9  # the ridge baseline reads these words easily
    prepare = read_json(rated_repo, "reports/prepare.json")
    assert prepare["score_summary"]["test"]["n"] == 48
    plots = rated_repo / "reports/plots"
    assert sorted(p.name for p in plots.iterdir()) == ["predicted.csv", "residuals.csv"]
    errors = pd.read_csv(rated_repo / "reports/errors.csv")
    assert list(errors.columns) == ["id", "text", "true_score", "predicted_score", "error"]
    assert errors["error"].abs().is_monotonic_decreasing
    assert "Evaluation report (regression)" in (rated_repo / "reports/report.md").read_text()
    cv = read_json(rated_repo, "reports/cv.json")
    assert cv["k"] == 3 and "pearson" in cv["mean"]
    card = (rated_repo / "models/package/MODEL_CARD.md").read_text()
    assert "Regression" in card and "Pearson" in card


def test_the_package_answers_the_scores_training_computed(rated_repo):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the in-graph tokenizer's ops)

    from bertclf import Classifier
    from bertclf.errors import BertclfError

    package = read_json(rated_repo, "reports/package.json")
    assert package["max_probability_difference"] <= 1e-4
    f32 = package["openvino"]["precisions"]["f32"]
    assert f32["passed"] and abs(f32["pearson"] - f32["tensorflow_pearson"]) <= 0.005
    test = pd.read_parquet(rated_repo / "data/prepared/test.parquet")
    texts = test["text"].tolist()
    classifier = Classifier.load(rated_repo / "models/package")
    scores = classifier.predict(texts)
    assert scores.dtype == np.float32 and scores.shape == (len(texts),)
    serve = tf.saved_model.load(str(rated_repo / "models/package/saved_model"))
    exported = serve.signatures["serving_default"](text=tf.constant(texts))["score"].numpy()
    np.testing.assert_allclose(exported, scores, atol=1e-4)
    reported = read_json(rated_repo, "reports/metrics.json")["test"]["pearson"]
    assert np.corrcoef(test["score"], scores)[0, 1] == pytest.approx(reported, abs=1e-4)
    with pytest.raises(BertclfError, match="answers scores, not probabilities"):
        classifier.predict_proba(texts)


def test_predict_and_serve_answer_scores(rated_repo, tmp_path):
    from bertclf import Classifier

    test = pd.read_parquet(rated_repo / "data/prepared/test.parquet")
    test.to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "scored.csv"
    command = ["bertclf", "predict", "--model", "models/package", "--input"]
    run(
        [*command, str(tmp_path / "test.csv"), "--output", str(out), "--id-column", "id"],
        rated_repo,
    )
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["id", "text", "score"]
    reported = read_json(rated_repo, "reports/metrics.json")["test"]["pearson"]
    assert np.corrcoef(test["score"], scored["score"])[0, 1] == pytest.approx(reported, abs=1e-4)
    expected = Classifier.load(rated_repo / "models/package").predict(test["text"][:3].tolist())
    port = free_port()
    log = tmp_path / "serve.log"
    server = start_server(rated_repo / "models/package", port, log, env=command_env())
    try:
        status, about = request(port, "GET", "/v1/metadata")
        assert status == 200 and about["task"] == "regression" and about["inputs"] == ["text"]
        body = json.dumps({"texts": test["text"][:3].tolist()}).encode()
        status, answer = request(port, "POST", "/v1/predict", body)
        assert status == 200
        scores = [prediction["score"] for prediction in answer["predictions"]]
        np.testing.assert_allclose(scores, expected, atol=1e-5)
    finally:
        stop_server(server)
    assert server.returncode is not None
