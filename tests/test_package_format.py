"""Packages keep loading: a package written by an earlier bertclf (format_version 1), kept here
as a fixture, loads with this one and predicts what it predicted when it was written."""

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
    np.testing.assert_allclose(probabilities, EXPECTED["probabilities"], atol=1e-5)


def test_unknown_format_version_is_refused(tmp_path):
    package = shutil.copytree(PACKAGE, tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["format_version"] = 99
    (package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BertclfError, match=r"manifest\.json: format_version 99 is not one"):
        Classifier.load(package)
