"""End-to-end: the real `dvc` on the real DAG, with the tiny model, in a temporary git repo."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import (
    BEFORE_TEMPERATURE,
    TINY,
    check_explained_mistakes,
    commit_all,
    restore,
    run,
    stages_run,
)

pytestmark = pytest.mark.e2e

STAGES = {
    "demo_data",
    "pretrained",
    "prepare",
    "labels",
    "tokenize",
    "train",
    "calibrate",
    "evaluate",
    "baseline",
    "report",
    "package",
    "folds",
    "cv_summary",
    "label_issues",
}


def test_first_repro_runs_every_stage_and_writes_every_output(dag_repo):
    listed = {
        line.split()[0] for line in run(["dvc", "stage", "list"], dag_repo).stdout.splitlines()
    }
    assert listed == STAGES
    # Every stage that depends on the model ran; others may be up to date from the committed
    # dvc.lock (the baseline, for one, depends only on the data, which is the same).
    ran = stages_run((dag_repo / "first_repro.log").read_text())
    assert {"pretrained", "train", "calibrate", "evaluate", "report", "package"} <= ran <= STAGES
    for path in [
        "data/prepared/train.parquet",
        "data/prepared/val.parquet",
        "data/prepared/test.parquet",
        "models/labels.json",
        "data/tokenized/train.parquet",
        "models/pretrained/config.json",
        "models/pretrained/backbone.weights.h5",
        "models/trained/model.weights.h5",
        "reports/metrics.json",
        "reports/plots/confusion.csv",
        "reports/confusion.png",
        "reports/baseline.json",
        "reports/report.md",
        "reports/training_curves.png",
        "reports/errors.csv",
        "reports/train/metrics.json",
        "models/package/manifest.json",
        "models/package/MODEL_CARD.md",
    ]:
        assert (dag_repo / path).is_file(), path


def test_the_precision_training_ran_in_is_recorded(dag_repo):
    from bertclf.training import training_policy

    precision = yaml.safe_load((dag_repo / "params.yaml").read_text())["train"]["precision"]
    policy = training_policy(precision)  # auto: as this machine's CPU decides
    spec = json.loads((dag_repo / "models/trained/model.json").read_text())
    assert spec["training_precision"] == policy
    log = (dag_repo / "first_repro.log").read_text()
    assert f"of training in {policy} (train.precision={precision})" in log
    card = (dag_repo / "models/package/MODEL_CARD.md").read_text()
    assert ("head in float32." if policy == "float32" else f"head in Keras' {policy}") in card


def test_metrics_have_the_documented_shape(dag_repo):
    metrics = json.loads((dag_repo / "reports/metrics.json").read_text())
    keys = {
        "accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "weighted_precision",
        "weighted_recall",
        "weighted_f1",
        "n",
        "per_class",
    }
    assert set(metrics) == {"test", "val"}
    for split in ("test", "val"):
        assert keys <= set(metrics[split])
        assert 0 <= metrics[split]["accuracy"] <= 1
    assert metrics["test"]["n"] == 1000
    shown = run(["dvc", "metrics", "show", "--json"], dag_repo).stdout
    assert "macro_f1" in shown
    # the fit's wall clock, beside DVCLive's metrics so `dvc exp show` has a time column
    assert "train_seconds" in shown
    train_time = json.loads((dag_repo / "reports/train_time.json").read_text())
    assert train_time["train_seconds"] > 0 and train_time["first_epoch"] == 0


def test_baseline_metrics_have_the_same_keys_as_the_model(dag_repo):
    metrics = json.loads((dag_repo / "reports/metrics.json").read_text())
    baseline = json.loads((dag_repo / "reports/baseline.json").read_text())
    for split in ("test", "val"):
        assert set(baseline[split]) == set(metrics[split]) - BEFORE_TEMPERATURE
        assert set(baseline[split]["per_class"]) == set(metrics[split]["per_class"])
        assert baseline[split]["n"] == metrics[split]["n"]
    # a real TF-IDF model on 3,500 reviews is far above the majority class (0.658)
    assert baseline["test"]["accuracy"] > 0.75
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], dag_repo).stdout)
    assert "reports/baseline.json" in json.dumps(shown)


def test_dvc_renders_every_plot(dag_repo, tmp_path):
    confusion = pd.read_csv(dag_repo / "reports/plots/confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == 1000
    out = tmp_path / "plots"
    run(["dvc", "plots", "show", "-o", str(out)], dag_repo)
    html = (out / "index.html").read_text()
    for title in (
        "Confusion matrix (test)",
        "Loss per epoch",
        "Precision-recall (test; two classes - positive is the second in labels.json",
        "ROC (test; two classes - positive is the second in labels.json",
        "Reliability diagram",
        "F1 per class (test)",
    ):
        assert title in html, title
    listed = json.loads(run(["dvc", "plots", "show", "--json"], dag_repo).stdout)
    assert "confusion_normalised" in json.dumps(listed)
    # the page draws offline: Vega, Vega-Lite and vega-embed inline, no script from a network
    assert re.findall(r"<script[^>]*\bsrc=", html) == []
    for library in ("vega 5.20.2", "vega-lite 5.2.0", "vega-embed 6.18.2"):
        assert f"<script>/* {library} */" in html, library
    assert "epoch (0 is the first)" in html


def test_pngs_are_real_images(dag_repo):
    from PIL import Image

    for name in ("confusion.png", "training_curves.png"):
        with Image.open(dag_repo / "reports" / name) as image:
            image.load()
            assert image.format == "PNG"
            assert image.width >= 400 and image.height >= 300


def test_report_reads_top_to_bottom(dag_repo):
    report = (dag_repo / "reports/report.md").read_text()
    sections = [
        "## Data",
        "## Configuration",
        "## Test metrics",
        "## Per class (test)",
        "## Plots",
        "## The ten most confident mistakes",
        "## The tokens that drove the first",
    ]
    positions = [report.index(s) for s in sections]
    assert positions == sorted(positions)
    assert "](confusion.png)" in report and "](training_curves.png)" in report
    metrics = json.loads((dag_repo / "reports/metrics.json").read_text())
    baseline = json.loads((dag_repo / "reports/baseline.json").read_text())
    lift = metrics["test"]["accuracy"] - baseline["test"]["accuracy"]
    assert (
        f"| accuracy | {metrics['test']['accuracy']:.4f} | "
        f"{baseline['test']['accuracy']:.4f} | {lift:+.4f} |"
    ) in report
    errors = pd.read_csv(dag_repo / "reports/errors.csv")
    assert errors["confidence"].is_monotonic_decreasing
    check_explained_mistakes(dag_repo)
    mistakes = report.split("## The ten most confident mistakes")[1]
    mistakes = mistakes.split("## The tokens that drove")[0].splitlines()
    rows = [line for line in mistakes if line.startswith("| ") and not line.startswith("| id")]
    assert len(rows) - 1 == min(len(errors), 10)  # minus the |---| line


def test_evaluate_cli_reproduces_the_test_metrics(dag_repo, tmp_path):
    out = tmp_path / "metrics.json"
    result = run(
        [
            "bertclf",
            "evaluate",
            "--model",
            "models/package",
            "--input",
            "data/prepared/test.parquet",
            "--output",
            str(out),
        ],
        dag_repo,
    )
    assert "accuracy" in result.stdout
    expected = json.loads((dag_repo / "reports/metrics.json").read_text())["test"]
    scored = json.loads(out.read_text())
    assert set(scored) == set(expected) - BEFORE_TEMPERATURE  # the package answers scaled ones
    for key in ("n", "accuracy", "macro_f1", "weighted_f1", "micro_f1"):
        assert scored[key] == pytest.approx(expected[key], abs=1e-3), key
    for key in ("log_loss", "roc_auc", "ece"):
        assert scored[key] == pytest.approx(expected[key], abs=1e-3), key


def test_evaluate_cli_refuses_an_unknown_label(dag_repo, tmp_path):
    source = tmp_path / "labelled.csv"
    pd.DataFrame({"text": ["fine", "bad"], "label": ["great", "awful"]}).to_csv(source, index=False)
    result = run(
        ["bertclf", "evaluate", "--model", "models/package", "--input", str(source)],
        dag_repo,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {source}: row 2: label 'awful' is not one the model knows (great, other)"
    )


def test_nothing_to_do_after_a_build(dag_repo):
    status = run(["dvc", "status"], dag_repo).stdout
    assert "up to date" in status, status


def test_a_prediction_rule_edit_makes_the_predicting_stages_stale_not_train(dag_repo):
    """Prediction code lives apart from training code, and paths.py is no DVC dependency."""

    def stale() -> set[str]:
        return set(json.loads(run(["dvc", "status", "--json"], dag_repo).stdout))

    try:
        with open(dag_repo / "src/bertclf/prediction.py", "a") as module:
            module.write("# an edit\n")
        # report is not among them: it formats what evaluate wrote, and predicts nothing
        assert stale() == {"calibrate", "evaluate", "package"}
        restore(dag_repo)
        with open(dag_repo / "src/bertclf/paths.py", "a") as module:
            module.write("# an edit\n")
        assert stale() == set()
    finally:
        restore(dag_repo)


@pytest.mark.retrains
def test_train_param_change_reruns_train_and_descendants_only(dag_repo):
    params = yaml.safe_load((dag_repo / "params.yaml").read_text())
    assert params["train"]["epochs"] == 1
    run(["bertclf", "params", *TINY, "train.epochs=2"], dag_repo)
    try:
        # the run cache may hold these stages from another test's two-epoch build: a restore
        # counts as a run, and what is restored is what DVC would have run
        output = run(["dvc", "repro"], dag_repo).stdout
        assert stages_run(output) == {"train", "calibrate", "evaluate", "report", "package"}, output
        history = (dag_repo / "reports/train/plots/metrics/train/loss.tsv").read_text()
        assert len(history.strip().splitlines()) == 3  # header and two epochs
    finally:
        restore(dag_repo)


def test_packaged_classifier_predicts_known_labels(dag_repo):
    from bertclf import Classifier

    classifier = Classifier.load(dag_repo / "models/package")
    assert classifier.classes_.tolist() == ["great", "other"]
    texts = pd.read_parquet(dag_repo / "data/prepared/test.parquet")["text"].head(40)
    labels = classifier.predict(texts)
    probabilities = classifier.predict_proba(texts.tolist())
    assert labels.shape == (40,) and set(labels) <= {"great", "other"}
    assert probabilities.shape == (40, 2)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (classifier.classes_[probabilities.argmax(axis=1)] == labels).all()
    assert classifier.predict("a single text").shape == (1,)


def test_classifier_gives_the_same_probabilities_as_evaluate(dag_repo):
    """Prediction from raw text through the package equals the evaluate stage's cached path."""
    from bertclf import Classifier

    classifier = Classifier.load(dag_repo / "models/package")
    test = pd.read_parquet(dag_repo / "data/prepared/test.parquet")
    errors = pd.read_csv(dag_repo / "reports/errors.csv", dtype={"id": str})
    if errors.empty:
        pytest.skip("the tiny model made no mistakes")
    rows = test.set_index("id").loc[errors["id"].head(20)]
    probabilities = classifier.predict_proba(rows["text"].tolist())
    assert (
        classifier.classes_[probabilities.argmax(axis=1)].tolist()
        == errors["predicted_label"].head(20).tolist()
    )
    assert np.allclose(probabilities.max(axis=1), errors["confidence"].head(20), atol=1e-4)


def test_predict_cli_keeps_ids_and_writes_by_extension(dag_repo, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame(
        {"doc": ["d1", "d2", "d3"], "body": ["Great taste", "Stale and awful", "ok"]}
    ).to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    result = run(
        [
            "bertclf",
            "predict",
            "--model",
            str(dag_repo / "models/package"),
            "--input",
            str(source),
            "--output",
            str(out),
            "--text-column",
            "body",
            "--id-column",
            "doc",
        ],
        dag_repo,
    )
    assert "wrote 3 predictions" in result.stdout
    table = pd.read_parquet(out)
    assert list(table.columns) == ["doc", "body", "label", "probability"]
    assert table["doc"].tolist() == ["d1", "d2", "d3"]
    assert set(table["label"]) <= {"great", "other"}
    assert ((table["probability"] >= 0.5) & (table["probability"] <= 1)).all()


def test_predict_cli_refuses_a_missing_column_without_output(dag_repo, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"body": ["x"]}).to_csv(source, index=False)
    out = tmp_path / "out.csv"
    result = run(
        [
            "bertclf",
            "predict",
            "--model",
            str(dag_repo / "models/package"),
            "--input",
            str(source),
            "--output",
            str(out),
        ],
        dag_repo,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {source}: no column 'text' (--text-column); columns are: body"
    )
    assert not out.exists()


def test_tampered_package_is_refused(dag_repo, tmp_path):
    import shutil

    from bertclf.classifier import Classifier
    from bertclf.errors import BertclfError

    bundle = tmp_path / "package"
    shutil.copytree(dag_repo / "models/package", bundle)
    with open(bundle / "labels.json", "a") as handle:
        handle.write(" ")
    with pytest.raises(BertclfError, match=r"labels\.json: checksum does not match"):
        Classifier.load(bundle)
    (bundle / "labels.json").unlink()
    with pytest.raises(BertclfError, match=r"labels\.json: file listed in the manifest is missing"):
        Classifier.load(bundle)


def test_bad_data_config_fails_prepare_with_one_line(dag_repo):
    run(["bertclf", "params", *TINY, "data.text_column=body"], dag_repo)
    try:
        result = run(["dvc", "repro", "prepare"], dag_repo, check=False)
        assert result.returncode != 0
        assert (
            "error: data/raw/fine_food/train.parquet: no column 'body' (data.text_column); "
            "columns are: rownames, product, review, score"
        ) in result.stderr
    finally:
        restore(dag_repo)


def test_news_sample_config_runs_on_the_seed_format(tmp_path, news_sample):
    """The seed's Excel format: prepare and labels stages with conf/data/news_sample.yaml."""
    from helpers import copy_project

    repo = copy_project(tmp_path / "news")
    (repo / "data/raw").mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copy(news_sample, repo / "data/raw/News_Sample_data.xlsx")
    run(["bertclf", "params", "data=news_sample", "data.path=data/raw/News_Sample_data.xlsx"], repo)
    commit_all(repo, "news sample")
    run(["dvc", "repro", "labels"], repo)
    labels = json.loads((repo / "models/labels.json").read_text())
    assert len(labels["classes"]) == 6
    report = json.loads((repo / "reports/prepare.json").read_text())
    assert report["split_sizes"] == {"train": 18, "val": 6, "test": 6}
