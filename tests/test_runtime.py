"""The OpenVINO runtime: the parity gate by hand, the choice `auto` makes, real conversion of a
tiny Keras classifier (a gate passing and failing), and the shared tiny build's package through
the API, the CLI and the server, with one build that adds bf16 and int8."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from helpers import (
    TINY,
    command_env,
    free_port,
    request,
    restore,
    run,
    section,
    start_server,
    stop_server,
)

from bertclf.errors import BertclfError
from bertclf.openvino_build import compare
from bertclf.runtime import choose, native_bfloat16
from bertclf.tokenization import TokenCache

PACKAGE = Path("models/package")


# --- the gate, on probabilities worked by hand --------------------------------------------------


def test_gate_passes_equal_labels_and_ignores_flips_among_near_ties():
    reference = np.array([[0.9, 0.1], [0.52, 0.48], [0.2, 0.8], [0.7, 0.3]])
    candidate = np.array([[0.88, 0.12], [0.47, 0.53], [0.25, 0.75], [0.69, 0.31]])
    y_true = np.array([0, 1, 1, 0])
    figures = compare(reference, candidate, y_true)
    # text 1 is a near-tie (0.04 apart) and flips: not counted, but accuracy moves by one text
    assert figures["clear_decisions"] == 3
    assert figures["same_decisions_where_clear"] == 1.0
    assert figures["same_decisions"] == 0.75
    assert figures["tensorflow_accuracy"] == 0.75 and figures["accuracy"] == 1.0
    assert figures["score_tolerance"] == 0.25  # one text of four, above half a point
    assert figures["max_probability_difference"] == pytest.approx(0.05)
    assert figures["passed"]


def test_gate_fails_a_clear_flip_and_a_moved_accuracy():
    reference = np.tile([[0.9, 0.1]], (200, 1))
    flipped = reference.copy()
    flipped[:3] = [0.1, 0.9]  # 3 of 200 clear decisions differ: 98.5% < 99%
    figures = compare(reference, flipped, np.zeros(200, int))
    assert figures["same_decisions_where_clear"] == pytest.approx(0.985)
    assert not figures["passed"]
    flipped = reference.copy()
    flipped[:2] = [0.1, 0.9]  # 99% equal, but accuracy down 1 point (tolerance 0.5)
    figures = compare(reference, flipped, np.zeros(200, int))
    assert figures["same_decisions_where_clear"] == pytest.approx(0.99)
    assert figures["accuracy"] == pytest.approx(0.99) and not figures["passed"]


def test_multi_label_gate_compares_decisions_per_text_and_label_and_micro_f1():
    thresholds = np.array([0.5, 0.3])
    reference = np.array([[0.9, 0.1], [0.52, 0.6], [0.2, 0.8], [0.1, 0.05]])
    candidate = np.array([[0.9, 0.1], [0.49, 0.6], [0.2, 0.8], [0.1, 0.05]])
    y_true = np.array([[1, 0], [1, 1], [0, 1], [1, 0]])
    figures = compare(reference, candidate, y_true, thresholds, at_least_one=False)
    # (1, 0) is 0.02 from its threshold: a near-tie, flipped and not counted
    assert figures["clear_decisions"] == 7 and figures["same_decisions_where_clear"] == 1.0
    assert figures["same_decisions"] == 7 / 8
    # TensorFlow: 4 of 5 positives found, no false positive, F1 8/9; OpenVINO: 3 of 5, 6/8
    assert figures["tensorflow_micro_f1"] == pytest.approx(8 / 9)
    assert figures["micro_f1"] == pytest.approx(0.75)
    assert figures["score_tolerance"] == 0.25 and figures["passed"]


# --- the choice -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime", "precision", "offered", "bfloat16", "expected"),
    [
        ("auto", "auto", ["f32", "bf16", "int8"], True, ("openvino", "bf16")),
        ("auto", "auto", ["f32", "bf16", "int8"], False, ("openvino", "f32")),
        ("auto", "auto", ["f32", "int8"], True, ("openvino", "f32")),  # bf16 failed its check
        ("auto", "int8", ["f32", "bf16", "int8"], True, ("openvino", "int8")),
        ("auto", "auto", [], True, ("tensorflow", "f32")),  # an earlier package
        ("auto", "f32", [], True, ("tensorflow", "f32")),
        ("auto", "auto", ["int8"], True, ("tensorflow", "f32")),  # int8 only when asked
        ("tensorflow", "auto", ["f32", "bf16"], True, ("tensorflow", "f32")),
        ("openvino", "auto", ["f32", "bf16"], False, ("openvino", "f32")),
        ("openvino", "bf16", ["f32", "bf16"], False, ("openvino", "bf16")),
    ],
)
def test_auto_runs_openvino_in_bf16_where_the_cpu_has_it(
    runtime, precision, offered, bfloat16, expected
):
    assert choose(runtime, precision, offered, bfloat16, Path("pkg")) == expected


@pytest.mark.parametrize(
    ("runtime", "precision", "offered", "message"),
    [
        ("openvino", "auto", [], "pkg: no OpenVINO model in this package"),
        ("tensorflow", "int8", ["f32", "int8"], "TensorFlow runs packages in f32 only"),
        ("auto", "int8", ["f32", "bf16"], "pkg: precision int8 is not in this package"),
        ("gpu", "auto", ["f32"], "runtime 'gpu': expected one of"),
        ("auto", "fp16", ["f32"], "precision 'fp16': expected one of"),
    ],
)
def test_a_runtime_or_precision_the_package_lacks_is_one_clear_error(
    runtime, precision, offered, message
):
    with pytest.raises(BertclfError, match=message):
        choose(runtime, precision, offered, True, Path("pkg"))


def test_native_bfloat16_is_read_from_the_cpu_flags():
    assert native_bfloat16(["avx512f", "avx512_bf16"]) and native_bfloat16(["amx_bf16"])
    assert not native_bfloat16(["avx2", "avx512f", "avx512_vnni"])


def test_package_params_are_validated():
    from bertclf.config import parse_section

    defaults = section("package")
    assert defaults.precisions == ["f32", "bf16", "int8"] and not defaults.strict
    with pytest.raises(BertclfError, match=r"package\.precisions lists 'fp16'"):
        parse_section("package", {**vars(defaults), "precisions": ["f32", "fp16"]})
    with pytest.raises(BertclfError, match=r"package\.int8_calibration_texts must be positive"):
        parse_section("package", {**vars(defaults), "int8_calibration_texts": 0})


# --- real conversion of a tiny classifier -----------------------------------------------------

ENCODER = {
    "vocab_size": 100,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "hidden_size": 16,
    "intermediate_size": 32,
    "hidden_dropout_prob": 0.0,
}


def tiny_classifier(seed: int):
    import keras

    from bertclf.config import HeadConfig
    from bertclf.model import build_classifier

    keras.utils.set_random_seed(seed)
    model = build_classifier(ENCODER, HeadConfig("mean", [], 0.0), 3)
    output = model.get_layer("logits")  # larger logits: decisions clear of near-ties
    output.kernel.assign(output.kernel * 20)
    return model


def token_ids_function(model):
    import tensorflow as tf

    ids = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[ids, ids])
    def token_ids(input_ids, attention_mask):
        logits = model({"input_ids": input_ids, "attention_mask": attention_mask}, training=False)
        return {"probabilities": tf.nn.softmax(logits, axis=1), "logits": logits}

    return token_ids


def token_cache(n: int, seed: int) -> TokenCache:
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, 100, rng.integers(3, 60)).astype(np.int32) for _ in range(n)]
    lengths = np.array([len(s) for s in sequences])
    return TokenCache(np.arange(n), sequences, rng.integers(0, 3, n), lengths)


def write(function, model, bundle: Path, precisions: list[str], strict: bool = False) -> dict:
    from bertclf.openvino_build import write_openvino
    from bertclf.preprocessor import Preprocessor

    config = SimpleNamespace(precisions=precisions, int8_calibration_texts=40, strict=strict)
    preprocessor = Preprocessor(None, section("tokenize", max_length=64, bucket_multiple=16))
    return write_openvino(
        function, model, bundle, config, token_cache(120, 1), token_cache(60, 2).sequences,
        preprocessor, 32, 0,
    )  # fmt: skip


def test_openvino_f32_of_a_classifier_passes_its_gate_and_is_written(tmp_path):
    from bertclf.runtime import OpenVINOModel, model_path

    model = tiny_classifier(0)
    checks = write(token_ids_function(model), model, tmp_path, ["f32"])
    figures = checks["precisions"]["f32"]
    assert checks["offered"] == ["f32"] and figures["passed"]
    assert figures["n"] == 120 and figures["inference_precision"] == "f32"
    assert figures["max_probability_difference"] < 1e-5
    assert json.loads((tmp_path / "openvino/checks.json").read_text())["offered"] == ["f32"]
    assert checks["cpu"]["flags"] == sorted(checks["cpu"]["flags"])
    inputs = {"input_ids": np.array([[2, 5, 9, 0]], np.int32)}
    inputs["attention_mask"] = (inputs["input_ids"] > 0).astype(np.int32)
    openvino = OpenVINOModel(model_path(tmp_path, "f32"), "f32").predict_on_batch(inputs)
    keras_logits = np.asarray(model(inputs, training=False))
    np.testing.assert_allclose(openvino, keras_logits, atol=1e-4)


def test_f32_that_misses_the_gate_fails_naming_the_figures(tmp_path):
    other = tiny_classifier(1)  # another model's graph: what a conversion bug would look like
    with pytest.raises(BertclfError, match=r"OpenVINO f32: decisions equal to TensorFlow's on"):
        write(token_ids_function(other), tiny_classifier(0), tmp_path, ["f32"])
    assert not (tmp_path / "openvino").exists()


def test_bf16_or_int8_that_miss_the_gate_are_left_out_unless_strict(tmp_path):
    other = tiny_classifier(1)
    checks = write(token_ids_function(other), tiny_classifier(0), tmp_path, ["bf16", "int8"])
    assert checks["offered"] == []
    for precision in ("bf16", "int8"):
        assert not checks["precisions"][precision]["passed"]
        assert checks["precisions"][precision]["left_out"].startswith(f"{precision}: decisions")
    assert not (tmp_path / "openvino").exists()  # nothing offered, nothing written
    with pytest.raises(BertclfError, match=r"bf16: .*package\.strict is true"):
        write(token_ids_function(other), tiny_classifier(0), tmp_path / "s", ["bf16"], True)


# --- the shared tiny build's package ----------------------------------------------------------


@pytest.mark.e2e
def test_tiny_build_offers_openvino_f32_and_auto_runs_it(dag_repo):
    from bertclf import Classifier

    report = json.loads((dag_repo / "reports/package.json").read_text())
    assert report["openvino"]["offered"] == ["f32"]
    assert report["openvino"]["precisions"]["f32"]["passed"]
    texts = ["Wonderful coffee, I buy it every month.", "Arrived stale and broken.", "\u2026"]
    automatic = Classifier.load(dag_repo / PACKAGE)
    tensorflow = Classifier.load(dag_repo / PACKAGE, runtime="tensorflow")
    assert (automatic.runtime, automatic.precision) == ("openvino", "f32")
    assert (tensorflow.runtime, tensorflow.precision) == ("tensorflow", "f32")
    np.testing.assert_allclose(
        automatic.predict_proba(texts), tensorflow.predict_proba(texts), atol=1e-5
    )
    with pytest.raises(BertclfError, match="precision bf16 is not in this package"):
        Classifier.load(dag_repo / PACKAGE, precision="bf16")


@pytest.mark.e2e
def test_cli_and_server_say_which_runtime_runs(dag_repo, tmp_path):
    source = tmp_path / "texts.csv"
    source.write_text("text\nWonderful coffee\nArrived stale\n")
    tables = {}
    for runtime in ("tensorflow", "openvino"):
        out = tmp_path / f"{runtime}.csv"
        args = ["bertclf", "predict", "--model", str(dag_repo / PACKAGE), "--input", str(source)]
        result = run([*args, "--output", str(out), "--runtime", runtime, "--quiet"], dag_repo)
        first = result.stdout.splitlines()[0]
        assert first.endswith(f"runtime {runtime}, precision f32"), result.stdout
        tables[runtime] = out.read_text().splitlines()
    assert [r.split(",")[:2] for r in tables["openvino"]] == [
        r.split(",")[:2] for r in tables["tensorflow"]
    ]
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("text,label\nWonderful coffee,great\nArrived stale,other\n")
    args = ["bertclf", "evaluate", "--model", str(dag_repo / PACKAGE), "--input", str(labelled)]
    result = run([*args, "--runtime", "openvino"], dag_repo)
    assert result.stdout.splitlines()[0].endswith("runtime openvino, precision f32")
    refused = run([*args, "--precision", "int8"], dag_repo, check=False)
    assert refused.returncode == 2 and "precision int8 is not in this package" in refused.stderr

    port = free_port()
    log = tmp_path / "serve.log"
    server = start_server(dag_repo / PACKAGE, port, log, "--runtime", "tensorflow",
                          "--no-access-log", env=command_env())  # fmt: skip
    try:
        status, about = request(port, "GET", "/v1/metadata")
        assert status == 200
        assert about["runtime"] == {"name": "tensorflow", "precision": "f32"}
    finally:
        stop_server(server)
    assert "runtime tensorflow, precision f32" in log.read_text()
    assert "GET /v1/metadata" not in log.read_text()  # --no-access-log


@pytest.mark.e2e
def test_a_package_with_bf16_and_int8_checks_and_runs_each(dag_repo):
    """The one tiny build with every precision: only `package` re-runs."""
    from bertclf import Classifier

    run(["bertclf", "params", *TINY, "package.precisions=[f32,bf16,int8]"], dag_repo)
    try:
        output = run(["dvc", "repro"], dag_repo).stdout
        assert "Running stage 'package'" in output and "Running stage 'train'" not in output
        report = json.loads((dag_repo / "reports/package.json").read_text())["openvino"]
        assert list(report["precisions"]) == ["f32", "bf16", "int8"]
        checks = json.loads((dag_repo / PACKAGE / "openvino/checks.json").read_text())
        assert checks["offered"] == report["offered"] and "f32" in checks["offered"]
        assert checks["cpu"]["flags"] and checks["native_bfloat16"] == native_bfloat16(
            checks["cpu"]["flags"]
        )
        card = (dag_repo / PACKAGE / "MODEL_CARD.md").read_text()
        texts = ["Wonderful coffee, I buy it every month.", "Arrived stale and broken."]
        reference = Classifier.load(dag_repo / PACKAGE, runtime="tensorflow").predict_proba(texts)
        for precision, figures in report["precisions"].items():
            assert f"| OpenVINO | {precision} | {figures['accuracy']:.4f} |" in card
            if not figures["passed"]:  # the tiny random model may miss a gate: then it says why
                assert figures["left_out"].startswith(precision)
                continue
            classifier = Classifier.load(dag_repo / PACKAGE, precision=precision)
            assert (classifier.runtime, classifier.precision) == ("openvino", precision)
            np.testing.assert_allclose(classifier.predict_proba(texts), reference, atol=0.05)
        int8 = dag_repo / PACKAGE / "openvino/model_int8.xml"
        assert int8.is_file() == ("int8" in checks["offered"])
        params = yaml.safe_load((dag_repo / "params.yaml").read_text())
        assert params["package"]["int8_calibration_texts"] == 300
    finally:
        restore(dag_repo)


TELEMETRY_PROBE = """
import sys
if sys.argv[1] == "bertclf":
    import bertclf  # noqa: F401
import nncf
import numpy as np
import openvino
import tensorflow as tf

@tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
def double(x):
    return tf.matmul(x, tf.ones([4, 2]))

model = openvino.convert_model(double)
nncf.quantize(model, nncf.Dataset([np.ones((2, 4), np.float32)]), subset_size=1)
"""


def test_converting_and_quantizing_send_no_telemetry(tmp_path):
    """OpenVINO's converter and NNCF start their usage telemetry (a client id under ~/intel,
    then events to Google Analytics) unless the user opted out; under bertclf they do not."""
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(TELEMETRY_PROBE)
    homes = {}
    for mode in ("plain", "bertclf"):
        homes[mode] = tmp_path / mode
        homes[mode].mkdir()
        env = {**command_env(), "HOME": str(homes[mode])}
        for name in ("CI", "NNCF_CI", "NNCF_DEV", "TF_BUILD", "JENKINS_URL"):
            env.pop(name, None)  # OpenVINO's and NNCF's own switches for CI machines
        subprocess.run([sys.executable, str(probe), mode], env=env, check=True,
                       capture_output=True)  # fmt: skip
    assert (homes["plain"] / "intel").exists()  # what the libraries do by themselves
    assert not (homes["bertclf"] / "intel").exists()


def test_an_openvino_file_that_does_not_read_is_one_line_naming_it(tmp_path):
    from bertclf.runtime import OpenVINOModel

    broken = tmp_path / "model.xml"
    broken.write_text("<net>")
    with pytest.raises(BertclfError, match=r"model\.xml: not an OpenVINO IR file$"):
        OpenVINOModel(broken, "f32")
