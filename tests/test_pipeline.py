"""End-to-end: the real `dvc` on the real DAG, with the tiny model, in a temporary git repo."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import commit_all, run

pytestmark = pytest.mark.e2e

STAGES = {
    "demo_data",
    "pretrained",
    "prepare",
    "labels",
    "tokenize",
    "train",
    "evaluate",
    "package",
}


def stages_run(output: str) -> set[str]:
    """Stages DVC ran, counting a restore from its run cache as a run."""
    return set(re.findall(r"Running stage '([^']+)'", output)) | set(
        re.findall(r"Stage '([^']+)' is cached - skipping run", output)
    )


def restore(repo) -> None:
    """Back to the shared build's commit (HEAD, not the index: DVC's autostage stages dvc.lock)."""
    run(["git", "checkout", "HEAD", "--", "params.yaml", "dvc.lock", "reports"], repo)
    run(["dvc", "checkout", "-q"], repo)
    assert "up to date" in run(["dvc", "status"], repo).stdout


def test_first_repro_runs_every_stage_and_writes_every_output(dag_repo):
    assert stages_run((dag_repo / "first_repro.log").read_text()) == STAGES
    for path in [
        "data/prepared/train.parquet",
        "data/prepared/val.parquet",
        "data/prepared/test.parquet",
        "models/labels.json",
        "data/tokenized/train.parquet",
        "models/pretrained/tf_model.h5",
        "models/trained/weights.h5",
        "reports/metrics.json",
        "reports/confusion.csv",
        "reports/confusion.png",
        "reports/errors.csv",
        "reports/train/metrics.json",
        "models/package/manifest.json",
        "models/package/MODEL_CARD.md",
    ]:
        assert (dag_repo / path).is_file(), path


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


def test_confusion_matrix_is_a_dvc_plot(dag_repo):
    confusion = pd.read_csv(dag_repo / "reports/confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == 1000
    out = run(["dvc", "plots", "show", "--json", "reports/confusion.csv"], dag_repo).stdout
    assert "reports/confusion.csv" in out


def test_nothing_to_do_after_a_build(dag_repo):
    status = run(["dvc", "status"], dag_repo).stdout
    assert "up to date" in status, status


def test_train_param_change_reruns_train_and_descendants_only(dag_repo):
    params = yaml.safe_load((dag_repo / "params.yaml").read_text())
    assert params["train"]["epochs"] == 1
    run(["bertclf", "params", "model=tiny", "train.epochs=2", "tokenize.max_length=128"], dag_repo)
    try:
        output = run(["dvc", "repro", "--no-run-cache"], dag_repo).stdout
        assert stages_run(output) == {"train", "evaluate", "package"}, output
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
    run(["bertclf", "params", "model=tiny", "data.text_column=body"], dag_repo)
    try:
        result = run(["dvc", "repro", "prepare"], dag_repo, check=False)
        assert result.returncode != 0
        assert (
            "error: data/raw/fine_food/train.parquet: no column 'body' (data.text_column); "
            "columns are: rownames, product, review, score"
        ) in result.stderr
    finally:
        restore(dag_repo)


def test_news_sample_config_runs_on_the_seed_format(dag_repo, tmp_path):
    """The seed's Excel format: prepare and labels stages with conf/data/news_sample.yaml."""
    from conftest import NEWS_SAMPLE, copy_project

    repo = copy_project(tmp_path / "news")
    (repo / "data/raw").mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copy(NEWS_SAMPLE, repo / "data/raw/News_Sample_data.xlsx")
    run(["bertclf", "params", "data=news_sample", "data.path=data/raw/News_Sample_data.xlsx"], repo)
    commit_all(repo, "news sample")
    run(["dvc", "repro", "labels"], repo)
    labels = json.loads((repo / "models/labels.json").read_text())
    assert len(labels["classes"]) == 6
    report = json.loads((repo / "reports/prepare.json").read_text())
    assert report["split_sizes"] == {"train": 18, "val": 6, "test": 6}
