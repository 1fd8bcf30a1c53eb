"""The package of the shared tiny build: its raw-text SavedModel against the training path, the
bundle's checks, the Python API and the batch CLI."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, command_env, run

from bertclf.errors import BertclfError

pytestmark = pytest.mark.e2e

# saved_model_cli from a Python that has registered tensorflow-text's ops (as in docs/package.md)
SAVED_MODEL_CLI = (
    "import sys, tensorflow_text; "
    "from tensorflow.python.tools.saved_model_cli import main; "
    'sys.argv[0] = "saved_model_cli"; sys.exit(main())'
)
# Texts the in-graph tokenizer must treat as the Hugging Face one does: control and format
# characters, accents, other scripts, emoji, a replacement character, words over 100 characters.
AWKWARD_TEXTS = [
    "Caf\u00e9 CR\u00c8ME br\u00fbl\u00e9e, na\u00efve",
    "zero\u200bwidth soft\u00adhyphen bell\x07 tab\tnew\nline\r\n",
    "\u4e2d\u6587\u6c49\u5b57 \u65e5\u672c\u8a9e \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "emoji \U0001f600\U0001f44d\U0001f3fd and \ufffd replacement",
    "x" * 150 + " " + "\u00e9" * 120,
    "word " * 400,
]


def package(dag_repo):
    return dag_repo / "models/package"


def test_package_stage_checked_its_saved_model_on_every_test_text(dag_repo):
    report = json.loads((dag_repo / "reports/package.json").read_text())
    assert report["n"] == len(pd.read_parquet(dag_repo / "data/prepared/test.parquet"))
    assert report["token_ids_identical"] == 1.0 and report["stress_texts"] >= 15
    assert report["max_probability_difference"] <= 1e-4
    assert report["labels_identical"] >= 0.999


def test_saved_model_on_raw_text_matches_the_classifier(dag_repo):
    """Independently of the stage's own check: the SavedModel loaded here, on test texts and
    awkward ones, gives the Keras model's probabilities fed by the Hugging Face tokenizer."""
    import tensorflow as tf

    from bertclf import Classifier
    from bertclf.export import load_saved_model

    texts = (
        pd.read_parquet(dag_repo / "data/prepared/test.parquet")["text"].head(150).tolist()
        + AWKWARD_TEXTS
    )
    serve = load_saved_model(package(dag_repo) / "saved_model")
    outputs = serve(text=tf.constant(texts))
    classifier = Classifier.load(package(dag_repo))
    expected = classifier.predict_proba(texts)
    assert outputs["probabilities"].dtype == tf.float32
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-4)
    labels = outputs["label"].numpy().astype(str)
    assert labels.tolist() == classifier.classes_[expected.argmax(axis=1)].tolist()


def test_parity_check_fails_when_tokenizer_or_model_differ(dag_repo, tmp_path):
    """The stage's check can fail: the wrong casing, or another model's weights, are caught."""
    import tensorflow as tf

    from bertclf.config import HeadConfig, TokenizeConfig
    from bertclf.export import RawTextClassifier, check_parity, export_saved_model
    from bertclf.model import build_classifier, load_classifier
    from bertclf.preprocessor import Preprocessor
    from bertclf.tokenization import load_tokenizer

    trained, spec = load_classifier(dag_repo / "models/trained")  # the Keras model
    tokenize, classes = TokenizeConfig(**spec["tokenize"]), spec["classes"]
    tokenizer = load_tokenizer(package(dag_repo))
    preprocessor = Preprocessor(tokenizer, tokenize)
    texts = pd.read_parquet(dag_repo / "data/prepared/test.parquet")["text"].head(60).tolist()
    vocab = (package(dag_repo) / "vocab.txt").read_text(encoding="utf-8").splitlines()
    from tokenizers.normalizers import BertNormalizer

    from bertclf.export import character_table

    cased_tokenizer = load_tokenizer(package(dag_repo))
    cased_tokenizer.normalizer = BertNormalizer(lowercase=False, strip_accents=False)
    cased = RawTextClassifier(trained, vocab, character_table(cased_tokenizer), 100, preprocessor,
                              classes, spec["head"]["pooling"])  # fmt: skip
    tf.saved_model.save(
        cased, str(tmp_path / "cased"), signatures={"serving_default": cased.serving_default()}
    )
    with pytest.raises(BertclfError, match="other token ids than training's on"):
        check_parity(cased, tmp_path / "cased", trained, texts, 32)

    untrained = build_classifier(spec["encoder"], HeadConfig(**spec["head"]), len(classes))
    module = export_saved_model(
        untrained, package(dag_repo), preprocessor, classes, tmp_path / "untrained",
        spec["head"]["pooling"],
    )  # fmt: skip
    with pytest.raises(BertclfError, match="probabilities differ from the trained model's"):
        check_parity(module, tmp_path / "untrained", trained, texts, 32)


def test_the_saved_model_holds_each_weight_once_and_no_optimizer_state(dag_repo):
    import tensorflow as tf

    from bertclf.model import load_classifier

    model, _ = load_classifier(dag_repo / "models/trained")
    saved = tf.train.list_variables(str(package(dag_repo) / "saved_model/variables/variables"))
    values = sum(int(np.prod(shape)) for name, shape in saved if "VARIABLE_VALUE" in name)
    # the weights, plus the dropout layers' seed-generator states (two numbers each)
    assert model.count_params() <= values <= model.count_params() + 2 * len(model.variables)
    assert not [name for name, _ in saved if "optimizer" in name.lower()]


def test_saved_model_cli_gives_the_classifiers_labels(dag_repo):
    from bertclf import Classifier

    texts = [
        t
        for t in pd.read_parquet(dag_repo / "data/prepared/test.parquet")["text"].head(30)
        if ";" not in t  # saved_model_cli splits --input_exprs at semicolons
    ][:8]
    assert f"python -c '{SAVED_MODEL_CLI}'" in (ROOT / "docs/package.md").read_text()
    args = [
        "python",
        "-c",
        SAVED_MODEL_CLI,
        "run",
        "--dir",
        "models/package/saved_model",
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_default",
        "--input_exprs",
        f"text={json.dumps(texts)}",
    ]
    output = run(args, dag_repo, timeout=300).stdout
    label_part = output.split("Result for output key label:")[1].split("Result for output key")[0]
    labels = label_part.replace("b'", "'").replace("[", "").replace("]", "").split()
    expected = Classifier.load(package(dag_repo)).predict(texts).tolist()
    assert [label.strip("'") for label in labels] == expected


@pytest.mark.parametrize(
    "change, message",
    [
        ("weights", "variables.data-00000-of-00001: checksum does not match the manifest"),
        ("extra", "saved_model/assets/notes.txt: file not in the manifest"),
        ("missing", "saved_model/saved_model.pb: file listed in the manifest is missing"),
    ],
)
def test_tampered_bundle_is_refused_naming_the_file(dag_repo, tmp_path, change, message):
    from bertclf import Classifier

    bundle = shutil.copytree(package(dag_repo), tmp_path / "package")
    if change == "weights":
        weights = bundle / "saved_model/variables/variables.data-00000-of-00001"
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
    elif change == "extra":
        (bundle / "saved_model/assets").mkdir(exist_ok=True)
        (bundle / "saved_model/assets/notes.txt").write_text("added")
    else:
        (bundle / "saved_model/saved_model.pb").unlink()
    with pytest.raises(BertclfError, match=message):
        Classifier.load(bundle)


def test_bundle_holds_no_pickle_and_lists_every_file(dag_repo):
    bundle = package(dag_repo)
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json"}
    assert manifest["format_version"] == 11
    assert "tensorflow-text" in manifest["libraries"]
    assert not [name for name in files if name.endswith((".pkl", ".pickle", ".joblib", ".h5"))]
    for name in files:
        assert not (bundle / name).read_bytes().startswith(b"\x80\x04"), name  # pickle header
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["data"]["name"] == "fine_food"
    metrics = json.loads((dag_repo / "reports/metrics.json").read_text())
    assert card["metrics"]["test"]["accuracy"] == metrics["test"]["accuracy"]


def test_classifier_takes_a_list_a_series_or_one_string(dag_repo):
    from bertclf import Classifier

    classifier = Classifier.load(package(dag_repo), batch_size=7)
    texts = pd.read_parquet(dag_repo / "data/prepared/test.parquet")["text"].head(20)
    texts.index = range(100, 120)  # a Series' index is not its positions
    from_series = classifier.predict_proba(texts)
    from_list = classifier.predict_proba(texts.tolist(), batch_size=3)
    np.testing.assert_allclose(from_series, from_list, atol=1e-5)
    one = classifier.predict_proba(texts.iloc[3])
    assert one.shape == (1, 2)
    np.testing.assert_allclose(one[0], from_list[3], atol=1e-5)
    assert classifier.predict(texts.iloc[3]).tolist() == [classifier.predict(texts)[3]]

    top = classifier.predict(texts, top_k=2)
    assert top.shape == (20, 2)
    assert (top[:, 0] == classifier.predict(texts)).all() and (top[:, 0] != top[:, 1]).all()
    pairs = classifier.top_k(texts.tolist()[:2], k=2)
    assert [label for label, _ in pairs[0]] == top[0].tolist()
    assert pairs[0][0][1] >= pairs[0][1][1]
    with pytest.raises(BertclfError, match=r"top_k=3: expected 1 to 2"):
        classifier.predict(texts, top_k=3)
    with pytest.raises(BertclfError, match=r"texts\[1\] is not a string: None"):
        classifier.predict(["fine", None])
    with pytest.raises(BertclfError, match=r"texts\[2\] is empty or only whitespace"):
        classifier.predict(["fine", "good", " \n"])  # as the server's 422 and the CLI
    frame = pd.DataFrame({"text": texts.tolist()[:2], "id": [1, 2]})
    with pytest.raises(BertclfError, match=r"texts is DataFrame of shape 2x2, not one column"):
        classifier.predict(frame)  # it iterated the column names: one answer, for "text"
    with pytest.raises(BertclfError, match=r"pass a column, such as df\['text'\]"):
        classifier.predict_proba(frame[["text"]].to_numpy())
    assert classifier.predict(frame["text"]).tolist() == classifier.predict(texts)[:2].tolist()


FORMAT_CASES = [  # input, output, id column: every format in and out, with and without ids
    ("csv", "jsonl", "doc"),
    ("tsv", "xlsx", None),
    ("xlsx", "parquet", "doc"),
    ("parquet", "csv", None),
    ("jsonl", "tsv", "doc"),
]


@pytest.mark.parametrize("source_format, output_format, id_column", FORMAT_CASES)
def test_predict_cli_every_format_keeps_order_and_ids(
    dag_repo, tmp_path, source_format, output_format, id_column
):
    from bertclf import Classifier
    from bertclf.tables import read_table, write_table

    test = pd.read_parquet(dag_repo / "data/prepared/test.parquet").sample(25, random_state=3)
    table = pd.DataFrame({"doc": [f"r{i:03d}" for i in range(25)][::-1], "body": test["text"]})
    write_table(table, tmp_path / f"in.{source_format}")
    out = tmp_path / f"out.{output_format}"
    args = ["bertclf", "predict", "--model", str(package(dag_repo))]
    args += ["--input", f"in.{source_format}", "--output", out.name, "--text-column", "body"]
    args += ["--top-k", "2", "--chunk-rows", "10", "--quiet"]
    args += ["--id-column", id_column] if id_column else []
    run(args, tmp_path)

    result = read_table(out)
    expected = ([id_column] if id_column else []) + ["body", "label", "probability"]
    assert list(result.columns) == expected + ["top_labels", "top_probabilities"]
    if id_column:
        assert result["doc"].astype(str).tolist() == table["doc"].tolist()
    assert result["body"].tolist() == table["body"].tolist()
    probabilities = Classifier.load(package(dag_repo)).predict_proba(table["body"].tolist())
    read_back = result["probability"].astype(float)  # text in CSV, TSV and XLSX
    np.testing.assert_allclose(read_back, probabilities.max(axis=1), atol=1e-5)
    top_labels = result["top_labels"].map(json.loads)
    top_probabilities = result["top_probabilities"].map(json.loads)
    assert (top_labels.str[0] == result["label"]).all()
    np.testing.assert_allclose(top_probabilities.str[0], read_back, atol=1e-6)
    assert (top_probabilities.map(sum) <= 1 + 1e-5).all()


def test_predict_cli_on_the_test_split_gives_the_test_accuracy(dag_repo, tmp_path):
    out = tmp_path / "predicted.jsonl"
    args = ["bertclf", "predict", "--model", "models/package", "--quiet", "--id-column", "id"]
    run([*args, "--input", "data/prepared/test.parquet", "--output", str(out)], dag_repo)
    predicted = pd.read_json(out, lines=True, dtype={"id": str})
    test = pd.read_parquet(dag_repo / "data/prepared/test.parquet")
    assert predicted["id"].tolist() == test["id"].tolist()
    accuracy = (predicted["label"] == test["label"]).mean()
    expected = json.loads((dag_repo / "reports/metrics.json").read_text())["test"]["accuracy"]
    assert abs(accuracy - expected) * len(test) <= 1  # within one text


@pytest.mark.parametrize(
    "bad, message",
    [
        (12.5, "is not text: 12.5"),
        # the one rule of the CLI, the API and the server: nothing to classify is refused
        (" \t", "is empty or only whitespace: nothing to classify; remove or fill such rows"),
    ],
    ids=["not text", "whitespace"],
)
def test_predict_cli_keeps_an_existing_output_when_a_later_chunk_is_bad(
    dag_repo, tmp_path, bad, message
):
    rows = ["good coffee"] * 30 + [bad] + ["fine"] * 5  # row 31 is bad
    pd.DataFrame({"text": rows}).to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    (tmp_path / "out.csv").write_text("earlier results\n")
    args = ["bertclf", "predict", "--model", str(package(dag_repo)), "--input", "in.jsonl"]
    result = run([*args, "--output", "out.csv", "--chunk-rows", "10"], tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"in.jsonl: row 31 of column 'text' {message}")
    assert "Traceback" not in result.stderr
    assert (tmp_path / "out.csv").read_text() == "earlier results\n"
    assert not list(tmp_path.glob(".out.csv*"))  # no scratch file left behind


# Runs a command and prints its peak RSS. ru_maxrss survives fork and exec, so a command
# started by pytest itself would report at least pytest's own size; this small process in
# between keeps the measure to the command's.
PEAK_RSS = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "_, status, usage = os.wait4(p.pid, 0); print(usage.ru_maxrss); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


def peak_rss_mb(args: list[str], cwd) -> float:
    """Run a command to the end and return its peak resident memory, in MB."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args], cwd=cwd, env=command_env(), capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()
    return int(result.stdout) / 1024


def test_predict_cli_memory_stays_flat_on_a_large_input(dag_repo, tmp_path, capsys):
    """A 200,000-row CSV needs no more than 200 MB above a 2,000-row one (peak RSS)."""
    rng = np.random.default_rng(0)
    words = np.array(["good", "bad", "coffee", "tea", "taste", "stale", "fresh", "sweet"])
    texts = [" ".join(rng.choice(words, 12)) for _ in range(200_000)]
    pd.DataFrame({"id": range(200_000), "text": texts}).to_csv(tmp_path / "large.csv", index=False)
    pd.DataFrame({"id": range(2_000), "text": texts[:2_000]}).to_csv(
        tmp_path / "small.csv", index=False
    )
    peaks = {}
    for name in ("small", "large"):
        args = ["bertclf", "predict", "--model", str(package(dag_repo)), "--quiet"]
        args += ["--input", f"{name}.csv", "--output", f"{name}.out.csv", "--id-column", "id"]
        peaks[name] = peak_rss_mb(args, tmp_path)
    with capsys.disabled():
        print(f"\npeak RSS: 2,000 rows {peaks['small']:.0f} MB, 200,000 {peaks['large']:.0f} MB")
    assert len(pd.read_csv(tmp_path / "large.out.csv", usecols=["id"])) == 200_000
    assert peaks["large"] - peaks["small"] <= 200, peaks


def test_package_uses_only_the_ops_on_the_allowlist(dag_repo):
    """Fails when the export starts using an op that is not in saved_model_ops.py: the list
    follows the code."""
    from bertclf.package import saved_model_ops
    from bertclf.saved_model_ops import CHECKPOINT_OPS, PACKAGE_OPS

    found = saved_model_ops(package(dag_repo) / "saved_model")
    assert (found["reachable"] | found["other"]) - PACKAGE_OPS == set()
    assert found["saver"] - PACKAGE_OPS == CHECKPOINT_OPS  # the saver's functions, found
    assert "FastWordpieceTokenizeWithOffsets" in found["reachable"]  # it sees into functions
    assert found["restoring_objects"] == set()


def swapped_graph(bundle, marker, attack):
    """The package's graph swapped for a hostile one, with the manifest regenerated (the
    manifest alone cannot catch this). Each attack writes `marker` (a file, or a checkpoint
    with that prefix) in its own way:
    - "signature": the signature reads labels.json and writes it to `marker` when called;
    - "restore": an object restores itself with its own function, which writes a checkpoint,
      and `tf.saved_model.load` runs that function while it restores the variables;
    - "unreached": a function no signature reaches writes a checkpoint (the ops that save
      and restore variables, outside the functions TensorFlow's saver writes)."""
    import tensorflow as tf
    from tensorflow.python.trackable import base

    from bertclf.package import write_manifest

    def write_checkpoint():
        tf.raw_ops.SaveV2(prefix=str(marker), tensor_names=["x"], shape_and_slices=[""],
                          tensors=[tf.constant(b"attacker's bytes")])  # fmt: skip

    class RestoresItself(base.Trackable):
        def _serialize_to_tensors(self):
            return {"x": tf.constant(1.0)}

        def _restore_from_tensors(self, restored_tensors):
            write_checkpoint()
            return tf.no_op()

    class Swapped(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None], tf.int32, name="input_ids"),
                tf.TensorSpec([None, None], tf.int32, name="attention_mask"),
            ]
        )
        def token_ids(self, input_ids, attention_mask):
            if attack == "signature":
                tf.io.write_file(str(marker), tf.io.read_file(str(bundle / "labels.json")))
            return {"probabilities": tf.zeros([tf.shape(input_ids)[0], 2])}

    module = Swapped()
    if attack == "restore":
        module.state = RestoresItself()
    if attack == "unreached":
        module.unreached = tf.function(write_checkpoint, input_signature=[])
    shutil.rmtree(bundle / "saved_model")
    signatures = {"serving_default": module.token_ids, "token_ids": module.token_ids}
    tf.saved_model.save(module, str(bundle / "saved_model"), signatures=signatures)
    (bundle / "manifest.json").unlink()
    write_manifest(bundle)


def test_a_graph_that_reads_and_writes_files_is_refused_naming_the_op(dag_repo, tmp_path):
    from bertclf import Classifier

    bundle = shutil.copytree(package(dag_repo), tmp_path / "package")
    marker = tmp_path / "written_by_the_graph"
    swapped_graph(bundle, marker, "signature")
    expected = f"{bundle}/saved_model: ops 'ReadFile', 'WriteFile' are not ones a bertclf package"
    with pytest.raises(BertclfError, match=expected):
        Classifier.load(bundle, runtime="tensorflow")
    pd.DataFrame({"text": ["a"]}).to_csv(tmp_path / "in.csv", index=False)
    args = ["bertclf", "predict", "--model", str(bundle), "--input", "in.csv"]
    result = run([*args, "--output", "out.csv", "--quiet", "--runtime", "tensorflow"], tmp_path,
                 check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {expected}"), result.stderr
    assert not marker.exists()  # the graph never ran
    assert not (tmp_path / "out.csv").exists()
    # OpenVINO (the default here) never loads the SavedModel: it runs its own model, whose
    # operations compute and do not touch files, and the swapped graph stays unrun
    assert Classifier.load(bundle).runtime == "openvino"
    assert not marker.exists()


@pytest.mark.parametrize(
    "attack, message",
    [
        ("restore", "object 'state' restores its state with its own function, which TensorFlow"),
        ("unreached", "op 'SaveV2' is not one a bertclf package uses"),
    ],
)
def test_a_graph_that_writes_checkpoints_outside_the_saver_is_refused(
    dag_repo, tmp_path, attack, message
):
    """Loading a SavedModel restores its variables, and runs an object's own restore function
    to do it: the checkpoint ops are allowed only where TensorFlow's saver put them."""
    from bertclf import Classifier

    bundle = shutil.copytree(package(dag_repo), tmp_path / "package")
    marker = tmp_path / "owned"
    swapped_graph(bundle, marker, attack)
    with pytest.raises(BertclfError, match=f"^{re.escape(str(bundle))}/saved_model: {message}"):
        Classifier.load(bundle, runtime="tensorflow")
    assert list(tmp_path.glob("owned*")) == []


def test_manifest_digest_is_reported_and_checked_at_load(dag_repo, tmp_path):
    from bertclf import Classifier
    from bertclf.files import sha256_file

    digest = json.loads((dag_repo / "reports/package.json").read_text())["manifest_sha256"]
    assert digest == sha256_file(package(dag_repo) / "manifest.json")
    assert Classifier.load(package(dag_repo), expect_sha256=digest).classes_.tolist()
    pd.DataFrame({"text": ["a"]}).to_csv(tmp_path / "in.csv", index=False)
    args = ["bertclf", "predict", "--model", str(package(dag_repo)), "--input", "in.csv"]
    result = run([*args, "--output", "out.csv", "--expect-sha256", "0" * 64], tmp_path, False)
    assert result.returncode == 2
    assert "not the package you were given" in result.stderr
    assert not (tmp_path / "out.csv").exists()


def cleaning_package(dag_repo, tmp_path):
    """The shared build's package as the package stage writes it for data.clean removing URLs
    and HTML (as conf/data/news_sample.yaml does): its SavedModel exported again with that
    cleaning, and model.json recording it. The OpenVINO models take token ids: unchanged."""
    from bertclf.config import CleanConfig
    from bertclf.export import export_saved_model
    from bertclf.model import load_classifier
    from bertclf.package import write_manifest

    clean = CleanConfig(remove_urls=True, remove_html=True, remove_punctuation=False,
                        remove_digits=False, remove_stopwords=False, lowercase=False)  # fmt: skip
    bundle = shutil.copytree(package(dag_repo), tmp_path / "package")
    trained, spec = load_classifier(dag_repo / "models/trained")
    calibration = json.loads((bundle / "calibration.json").read_text())
    shutil.rmtree(bundle / "saved_model")
    from bertclf.config import TokenizeConfig
    from bertclf.preprocessor import Preprocessor
    from bertclf.tokenization import load_tokenizer

    preprocessor = Preprocessor(load_tokenizer(bundle), TokenizeConfig(**spec["tokenize"]), clean,
                                temperature=calibration.get("temperature"))  # fmt: skip
    export_saved_model(trained, bundle, preprocessor, spec["classes"], bundle / "saved_model",
                       spec["head"]["pooling"])  # fmt: skip
    model_spec = json.loads((bundle / "model.json").read_text())
    (bundle / "model.json").write_text(json.dumps({**model_spec, "clean": vars(clean)}))
    (bundle / "manifest.json").unlink()
    write_manifest(bundle)
    return bundle


def test_a_package_cleans_texts_as_training_did_through_every_interface(dag_repo, tmp_path):
    """data.clean was applied in prepare only: the API, the CLI, the server and the SavedModel
    predicted on text unlike what the model was trained on. The package records the cleaning,
    and a text with URLs and HTML now gets the probabilities of its cleaned text everywhere."""
    import tensorflow as tf
    from helpers import free_port, request, start_server, stop_server

    from bertclf import Classifier
    from bertclf.cleaning import clean_text
    from bertclf.export import load_saved_model

    model_json = json.loads((package(dag_repo) / "model.json").read_text())
    assert model_json["clean"] == {  # the stage records data.clean (the default data's: off)
        "remove_urls": False, "remove_html": False, "remove_punctuation": False,
        "remove_digits": False, "remove_stopwords": False, "lowercase": False,
    }  # fmt: skip
    bundle = cleaning_package(dag_repo, tmp_path)
    dirty = "Great <b>coffee</b> &amp; tea &#x2615; see https://example.com/a?b=1 or www.x.io"
    cleaned = "Great coffee & tea \u2615 see or"
    texts = [dirty, cleaned]
    raw = Classifier.load(package(dag_repo)).predict_proba(texts)  # no cleaning recorded
    assert not np.allclose(raw[0], raw[1], atol=1e-6)  # the texts' ids differ
    for runtime in ("openvino", "tensorflow"):
        classifier = Classifier.load(bundle, runtime=runtime)
        assert clean_text(dirty, classifier.clean) == cleaned
        probabilities = classifier.predict_proba(texts)
        np.testing.assert_array_equal(probabilities[0], probabilities[1])
    exported = load_saved_model(bundle / "saved_model")(text=tf.constant(texts))
    graph = exported["probabilities"].numpy()
    np.testing.assert_allclose(graph[0], graph[1], atol=1e-7)
    np.testing.assert_allclose(graph, probabilities, atol=1e-4)

    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    args = ["bertclf", "predict", "--model", str(bundle), "--input", "in.csv"]
    run([*args, "--output", "out.csv", "--quiet"], tmp_path)
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["text"].tolist() == texts  # the user's texts, as given
    assert out["probability"][0] == out["probability"][1]

    port = free_port()
    server = start_server(bundle, port, tmp_path / "serve.log", env=command_env())
    try:
        status, answer = request(port, "POST", "/v1/predict", json.dumps({"texts": texts}).encode())
    finally:
        stop_server(server)
    assert status == 200
    first, second = answer["predictions"]
    assert first["probabilities"] == second["probabilities"]
