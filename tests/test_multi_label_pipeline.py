"""Multi-label end to end: the real `dvc repro` with the tiny model on a tagged CSV table (labels
joined by "|"), with 3-fold cross-validation; then the package's SavedModel, `bertclf predict`
on every format, `bertclf evaluate` and `bertclf serve` on what it built."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import (
    BEFORE_TEMPERATURE,
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

from bertclf.cli import parser

pytestmark = pytest.mark.e2e

TOPICS = ["markets", "sport", "weather", "health", "politics"]
WORDS = {
    "markets": "shares stocks index traders profit",
    "sport": "match goal team season coach",
    "weather": "rain storm forecast wind snow",
    "health": "doctors hospital vaccine patients clinic",
    "politics": "election minister parliament vote party",
}


def tagged_texts(n: int, seed: int) -> pd.DataFrame:
    """Texts built from their topics' words; some with no topic at all."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        tags = sorted(rng.choice(TOPICS, size=rng.choice([0, 1, 1, 2, 3]), replace=False))
        words = " ".join(rng.permutation(" ".join(WORDS[t] for t in tags).split()))
        rows.append({"text": f"Report {i}: {words or 'nothing much happened today'}.",
                     "tags": "|".join(tags)})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tagged_repo(tmp_path_factory):
    repo = copy_project(tmp_path_factory.mktemp("multi_label") / "project")
    (repo / "data/raw").mkdir(parents=True, exist_ok=True)
    tagged_texts(240, seed=0).to_csv(repo / "data/raw/tags.csv", index=False)
    overrides = [
        *TINY,
        "train.epochs=2",
        "train.checkpoint_every_seconds=0",  # the resume test kills after the first epoch
        "task=multi_label",
        "data=table",
        "data.path=data/raw/tags.csv",
        "data.label_column=tags",
        "cv=kfold3",
    ]
    return build_repo(repo, overrides, "tiny multi-label model")


def test_the_dag_builds_multi_label_reports(tagged_repo):
    assert "up to date" in run(["dvc", "status"], tagged_repo).stdout
    prepare = read_json(tagged_repo, "reports/prepare.json")
    assert set(prepare["class_counts"]["train"]) == set(TOPICS)
    assert prepare["texts_without_labels"]["train"] > 0
    assert prepare["rare_labels_dropped"] == {} and "label_cardinality" in prepare
    labels = read_json(tagged_repo, "models/labels.json")
    assert labels["task"] == "multi_label" and labels["classes"] == sorted(TOPICS)
    calibration = read_json(tagged_repo, "models/calibration.json")
    assert set(calibration["thresholds"]) == set(TOPICS)
    metrics, baseline = (
        read_json(tagged_repo, "reports/metrics.json"),
        read_json(tagged_repo, "reports/baseline.json"),
    )
    keys = {
        f"{a}_{m}"
        for a in ("micro", "macro", "weighted", "samples")
        for m in ("precision", "recall", "f1")
    } | {"n", "subset_accuracy", "hamming_loss", "label_ranking_average_precision",
         "coverage_error", "roc_auc", "average_precision", "per_label", "label_cardinality",
         "by_length", "log_loss", "ece"}  # fmt: skip
    for report, extra in ((metrics, BEFORE_TEMPERATURE), (baseline, set())):
        for split in ("test", "val"):
            assert set(report[split]) == keys | extra
            assert set(report[split]["per_label"]) == set(TOPICS)
    per_label = metrics["test"]["per_label"]
    assert {name: m["threshold"] for name, m in per_label.items()} == pytest.approx(
        calibration["thresholds"]
    )
    # the baseline reads these words easily: a check that the labels reached it intact
    assert baseline["test"]["micro_f1"] > 0.9
    errors = pd.read_csv(tagged_repo / "reports/errors.csv", keep_default_na=False)
    assert list(errors.columns[:6]) == [
        "id",
        "text",
        "true_labels",
        "predicted_labels",
        "missing",
        "extra",
    ]
    plots = tagged_repo / "reports/plots"
    assert set(pd.read_csv(plots / "per_class_f1.csv")["class"]) == set(TOPICS)
    assert "Evaluation report (multi-label)" in (tagged_repo / "reports/report.md").read_text()
    check_explained_mistakes(tagged_repo)
    headline = run(["bertclf", "metrics"], tagged_repo).stdout.splitlines()
    micro = next(line for line in headline if line.startswith("micro_f1")).split()
    assert float(micro[1]) == round(metrics["test"]["micro_f1"], 4)
    assert float(micro[2]) == round(baseline["test"]["micro_f1"], 4)
    cv = read_json(tagged_repo, "reports/cv.json")
    assert cv["k"] == 3 and 0 <= cv["mean"]["micro_f1"] <= 1
    folds = pd.read_parquet(tagged_repo / "data/folds.parquet")
    train = pd.read_parquet(tagged_repo / "data/prepared/train.parquet")
    assert sorted(folds["id"]) == sorted(train["id"]) and set(folds["fold"]) == {0, 1, 2}
    table, issues = check_label_issues(tagged_repo)
    assert all(len(p) == len(TOPICS) for p in table["probabilities"])
    summary = read_json(tagged_repo, "reports/label_issues.json")
    assert set(summary["per_class"]) == set(TOPICS)
    for name, counts in summary["per_class"].items():
        assert counts["rows"] == sum(name in labels for labels in train["labels"])
    for given in issues["given"]:  # label sets joined by the task's separator
        assert set(filter(None, given.split("|"))) <= set(TOPICS)


def test_the_saved_model_decides_as_the_python_api(tagged_repo):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the in-graph tokenizer's ops)

    from bertclf import Classifier

    package = read_json(tagged_repo, "reports/package.json")
    assert package["labels_identical"] == 1.0 and package["max_probability_difference"] < 1e-4
    assert read_json(tagged_repo, "models/package/manifest.json")["format_version"] == 11
    f32 = package["openvino"]["precisions"]["f32"]  # the gate on decisions and micro-F1
    assert f32["passed"] and f32["micro_f1"] == pytest.approx(f32["tensorflow_micro_f1"], abs=0.01)
    assert f32["n"] == len(pd.read_parquet(tagged_repo / "data/prepared/test.parquet"))
    texts = pd.read_parquet(tagged_repo / "data/prepared/test.parquet")["text"].tolist()
    classifier = Classifier.load(tagged_repo / "models/package")
    assert (classifier.runtime, classifier.precision) == ("openvino", "f32")
    serve = tf.saved_model.load(str(tagged_repo / "models/package/saved_model"))
    outputs = serve.signatures["serving_default"](text=tf.constant(texts))
    assert outputs["predicted"].dtype == tf.bool
    assert outputs["predicted"].shape == (len(texts), len(TOPICS))
    np.testing.assert_allclose(outputs["probabilities"], classifier.predict_proba(texts), atol=1e-5)
    exported = classifier.label_map.decode_sets(outputs["predicted"].numpy())
    assert exported == classifier.predict(texts)
    assert all(len(labels) >= 1 for labels in exported)  # at_least_one
    everything = classifier.predict(texts, threshold=0.01)
    assert all(len(labels) == len(TOPICS) for labels in everything)
    card = (tagged_repo / "models/package/MODEL_CARD.md").read_text()
    assert "Multi-label" in card and "threshold" in card


def predict(args: list[str]) -> None:
    parsed = parser().parse_args(["predict", "--quiet", *args])
    parsed.run(parsed)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx", ".parquet", ".jsonl"])
def test_predict_writes_label_lists_in_every_format(tagged_repo, tmp_path, suffix):
    from bertclf.tables import read_table

    test = pd.read_parquet(tagged_repo / "data/prepared/test.parquet")
    output = tmp_path / f"predicted{suffix}"
    model = str(tagged_repo / "models/package")
    predict(["--model", model, "--input", str(tagged_repo / "data/prepared/test.parquet"),
             "--output", str(output), "--id-column", "id", "--top-k", "2"])  # fmt: skip
    table = read_table(output)
    assert list(table.columns) == ["id", "text", "labels", "label_probabilities", "top_labels",
                                   "top_probabilities"]  # fmt: skip
    if suffix in (".parquet", ".jsonl"):
        labels = [list(cell) for cell in table["labels"]]
    else:
        labels = [cell.split("|") if cell else [] for cell in table["labels"].fillna("")]
    from bertclf import Classifier

    assert labels == Classifier.load(model).predict(test["text"].tolist())
    for row_labels, cell in zip(labels, table["label_probabilities"], strict=True):
        assert sorted(json.loads(cell)) == sorted(row_labels)


def test_predict_on_the_test_split_reproduces_the_reported_micro_f1(tagged_repo, tmp_path):
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    output = tmp_path / "predicted.parquet"
    split = str(tagged_repo / "data/prepared/test.parquet")
    predict(["--model", str(tagged_repo / "models/package"), "--input", split,
             "--output", str(output)])  # fmt: skip
    test = pd.read_parquet(tagged_repo / "data/prepared/test.parquet")
    binarizer = MultiLabelBinarizer(classes=sorted(TOPICS))
    truth = binarizer.fit_transform(test["labels"].map(list))
    predicted = binarizer.transform(pd.read_parquet(output)["labels"].map(list))
    micro_f1 = f1_score(truth, predicted, average="micro")
    reported = read_json(tagged_repo, "reports/metrics.json")["test"]["micro_f1"]
    one_text = 2 * len(TOPICS) / truth.sum()  # at most every label of one text changed
    assert micro_f1 == pytest.approx(reported, abs=one_text)


def test_evaluate_scores_a_multi_label_file(tagged_repo, tmp_path):
    test = pd.read_parquet(tagged_repo / "data/prepared/test.parquet")
    table = tmp_path / "test.csv"
    test.assign(labels=test["labels"].map("|".join)).to_csv(table, index=False)
    output = tmp_path / "metrics.json"
    parsed = parser().parse_args(["evaluate", "--model", str(tagged_repo / "models/package"),
                                  "--input", str(table), "--label-column", "labels",
                                  "--output", str(output)])  # fmt: skip
    parsed.run(parsed)
    reported = read_json(tagged_repo, "reports/metrics.json")["test"]
    scored = json.loads(output.read_text())
    for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy"):
        assert scored[key] == pytest.approx(reported[key], abs=1e-6)
    bad = tmp_path / "bad.csv"
    test.assign(labels="markets|nonsense").to_csv(bad, index=False)
    parsed = parser().parse_args(["evaluate", "--model", str(tagged_repo / "models/package"),
                                  "--input", str(bad), "--label-column", "labels"])  # fmt: skip
    from bertclf.errors import BertclfError

    with pytest.raises(BertclfError, match=r"bad\.csv: row 1: label 'nonsense' is not one"):
        parsed.run(parsed)


def test_serve_answers_label_lists_and_refuses_bad_requests(tagged_repo, tmp_path):
    from bertclf import Classifier

    port = free_port()
    server = start_server(
        tagged_repo / "models/package", port, tmp_path / "serve.log", env=command_env()
    )
    try:
        texts = ["Report: shares and stocks fell as the storm came.", "nothing at all"]
        status, answer = request(port, "POST", "/v1/predict", json.dumps({"texts": texts}).encode())
        assert status == 200
        expected = Classifier.load(tagged_repo / "models/package").predict(texts)
        assert [p["labels"] for p in answer["predictions"]] == expected
        for prediction in answer["predictions"]:
            assert set(prediction["probabilities"]) == set(TOPICS)
            assert "label" not in prediction
        status, _ = request(port, "POST", "/v1/predict", json.dumps({"texts": [1]}).encode())
        assert status == 422
        status, about = request(port, "GET", "/v1/metadata")
        assert status == 200 and about["task"] == "multi_label"
        assert about["model_card"]["task"] == "multi_label"
        # the Open Inference Protocol, through a real v2 client: probabilities and the
        # thresholds' decisions, as the Python API has them
        classifier = Classifier.load(tagged_repo / "models/package")
        metadata = triton_client(port).get_model_metadata("package")
        assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "predicted"]
        assert metadata["parameters"]["classes"] == classifier.classes_.tolist()
        result = triton_infer(port, "package", {"text": texts})
        probabilities = classifier.predict_proba(texts)
        np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-5)
        assert result.as_numpy("predicted").tolist() == classifier.decide(probabilities).tolist()
        only = triton_infer(port, "package", {"text": texts}, outputs=["predicted"])
        assert only.as_numpy("probabilities") is None and only.as_numpy("predicted").shape == (
            2, len(TOPICS))  # fmt: skip
    finally:
        stop_server(server)


@pytest.mark.retrains
def test_multi_label_training_killed_after_an_epoch_resumes_exactly(tagged_repo):
    """Last in this module: it trains again (and ends with the same weights). The checkpoint
    keeps early stopping's best validation micro-F1 (a maximum, from -inf) across the kill."""
    from helpers import kill_after_first_checkpoint

    weights = (tagged_repo / "models/trained/model.weights.h5").read_bytes()
    logs = tagged_repo / "reports/train"
    uninterrupted = {p: p.read_bytes() for p in sorted(logs.rglob("*")) if p.is_file()}
    state = kill_after_first_checkpoint(
        ["dvc", "repro", "--force", "--no-run-cache", "-s", "train"], tagged_repo
    )
    assert state["next_epoch"] == 1
    resumed = run(["dvc", "repro", "--no-run-cache", "train"], tagged_repo, timeout=600)
    assert "after epoch 1" in resumed.stdout and "Epoch 1/2" not in resumed.stdout
    assert (tagged_repo / "models/trained/model.weights.h5").read_bytes() == weights
    assert {p: p.read_bytes() for p in sorted(logs.rglob("*")) if p.is_file()} == uninterrupted
    assert "up to date" in run(["dvc", "status"], tagged_repo).stdout
