"""Packages keep loading: packages written by earlier bertclf versions (format_version 1 to 5),
kept here as fixtures, load with this one and predict what they predicted when written.

Format 1 holds Keras 2 weights of transformers' TFBertModel, which load into KerasHub's
BertBackbone variable by variable: the two BERT implementations differ slightly (KerasHub's
GELU is the tanh approximation), hence 5e-3. Formats 2 to 4 run their own SavedModel graph, on
TensorFlow: they hold no OpenVINO model, so `auto` runs TensorFlow. Format 5 holds OpenVINO
models (and no temperature)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bertclf import Classifier
from bertclf.errors import BertclfError

FIXTURES = Path(__file__).parent / "fixtures"
PACKAGE = FIXTURES / "package_v1"
EXPECTED = json.loads((FIXTURES / "package_v1_expected.json").read_text(encoding="utf-8"))


def test_format_1_package_from_an_earlier_version_loads_and_predicts_the_same():
    classifier = Classifier.load(PACKAGE)
    assert classifier.classes_.tolist() == EXPECTED["classes"]
    probabilities = classifier.predict_proba(EXPECTED["texts"])
    np.testing.assert_allclose(probabilities, EXPECTED["probabilities"], atol=5e-3)
    recorded = np.argmax(EXPECTED["probabilities"], 1)
    assert classifier.predict(EXPECTED["texts"]).tolist() == classifier.classes_[recorded].tolist()


def test_format_2_package_from_an_earlier_version_loads_and_predicts_the_same():
    expected = json.loads((FIXTURES / "package_v2_expected.json").read_text(encoding="utf-8"))
    classifier = Classifier.load(FIXTURES / "package_v2")
    assert not classifier.multi_label and classifier.thresholds is None
    assert classifier.classes_.tolist() == expected["classes"]
    probabilities = classifier.predict_proba(expected["texts"])
    np.testing.assert_allclose(probabilities, expected["probabilities"], atol=1e-5)
    labels = classifier.predict(expected["texts"])
    assert labels.tolist() == [
        expected["classes"][i] for i in np.argmax(expected["probabilities"], 1)
    ]


def test_format_3_package_from_before_keras_3_loads_and_predicts_the_same():
    expected = json.loads((FIXTURES / "package_v3_expected.json").read_text(encoding="utf-8"))
    classifier = Classifier.load(FIXTURES / "package_v3")
    assert not classifier.multi_label
    assert classifier.classes_.tolist() == expected["classes"]
    probabilities = classifier.predict_proba(expected["texts"])
    np.testing.assert_allclose(probabilities, expected["probabilities"], atol=1e-5)
    assert classifier.predict(expected["texts"]).tolist() == expected["labels"]


def test_format_4_package_without_openvino_runs_on_tensorflow_as_before():
    expected = json.loads((FIXTURES / "package_v4_expected.json").read_text(encoding="utf-8"))
    classifier = Classifier.load(FIXTURES / "package_v4")
    assert (classifier.runtime, classifier.precision) == ("tensorflow", "f32")
    assert classifier.classes_.tolist() == expected["classes"]
    probabilities = classifier.predict_proba(expected["texts"])
    np.testing.assert_allclose(probabilities, expected["probabilities"], atol=1e-6)
    assert classifier.predict(expected["texts"]).tolist() == expected["labels"]
    with pytest.raises(BertclfError, match="no OpenVINO model in this package"):
        Classifier.load(FIXTURES / "package_v4", runtime="openvino")
    with pytest.raises(BertclfError, match="TensorFlow runs packages in f32 only"):
        Classifier.load(FIXTURES / "package_v4", precision="bf16")


def test_format_5_package_runs_on_openvino_and_tensorflow_as_before():
    expected = json.loads((FIXTURES / "package_v5_expected.json").read_text(encoding="utf-8"))
    for runtime, precision, tolerance in (("tensorflow", "f32", 1e-6), ("openvino", "f32", 1e-5)):
        classifier = Classifier.load(FIXTURES / "package_v5", runtime=runtime, precision=precision)
        assert (classifier.runtime, classifier.precision) == (runtime, precision)
        probabilities = classifier.predict_proba(expected["texts"])
        np.testing.assert_allclose(probabilities, expected["probabilities"], atol=tolerance)
        assert classifier.predict(expected["texts"]).tolist() == expected["labels"]


def test_unknown_format_version_is_refused(tmp_path):
    package = shutil.copytree(PACKAGE, tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["format_version"] = 99
    (package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BertclfError, match=r"manifest\.json: format_version 99 is not one"):
        Classifier.load(package)
