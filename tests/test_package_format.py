"""Packages keep loading under the format policy (docs/package.md): packages of the formats
this bertclf reads (the current one and the one before it), kept here as fixtures, load and
predict what they predicted when written; older ones are refused in one line that says to
rebuild them."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bertclf import Classifier
from bertclf.errors import BertclfError

FIXTURES = Path(__file__).parent / "fixtures"
PACKAGE = FIXTURES / "package_v10"


def recorded(name: str) -> dict:
    """What a fixture's version predicted, without the empty text the records include: the
    API now refuses a blank text, as the server and the CLI do (nothing to classify)."""
    expected = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    kept = [i for i, text in enumerate(expected["texts"]) if text.strip()]
    for key in ("texts", "probabilities", "labels"):
        if key in expected:
            expected[key] = [expected[key][i] for i in kept]
    return expected


def test_format_10_package_cleans_tokenizes_and_explains_in_its_own_graph_as_before():
    """Format 10 (the one before the current) with data.clean's remove_urls and remove_html:
    every runtime predicts what it did when written, the cleaning applied, and it explains."""
    expected = recorded("package_v10_expected.json")
    for runtime, precision, tolerance in (("tensorflow", "f32", 1e-6), ("openvino", "f32", 1e-5)):
        classifier = Classifier.load(PACKAGE, runtime=runtime, precision=precision)
        assert classifier.clean.remove_urls and classifier.clean.remove_html
        probabilities = classifier.predict_proba(expected["texts"])
        np.testing.assert_allclose(probabilities, expected["probabilities"], atol=tolerance)
        assert classifier.predict(expected["texts"]).tolist() == expected["labels"]
    (explained,) = classifier.explain(["a film about money"], steps=64)
    assert [t["token"] for t in explained["tokens"]] == ["a", "film", "about", "money"]
    (answer,) = explained["explained"]
    total = sum(answer["attributions"])
    assert abs(total - (answer["value"] - answer["baseline_value"])) <= 0.05 * abs(total) + 1e-4


def test_a_package_of_a_format_before_the_readable_ones_is_refused_with_what_to_do(tmp_path):
    from bertclf.package import READABLE_VERSIONS

    package = shutil.copytree(PACKAGE, tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["format_version"] = READABLE_VERSIONS[0] - 1
    (package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BertclfError) as refused:
        Classifier.load(package)
    message = str(refused.value)
    assert f"format_version {READABLE_VERSIONS[0] - 1} is not one this bertclf" in message
    assert "(10, 11)" in message and "rebuild the package with `dvc repro`" in message
    assert "\n" not in message


def test_unknown_format_version_is_refused(tmp_path):
    package = shutil.copytree(PACKAGE, tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["format_version"] = 99
    (package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BertclfError, match=r"manifest\.json: format_version 99 is not one"):
        Classifier.load(package)


def tampered(tmp_path: Path, change) -> Path:
    """The format-10 fixture with `change(folder)` applied and its manifest written again, as
    a hostile package's builder would: the checksums pass, the content is wrong."""

    bundle = tmp_path / "package"
    shutil.copytree(PACKAGE, bundle)
    (bundle / "manifest.json").unlink()
    change(bundle)
    rewrite_manifest(bundle)
    return bundle


def rewrite_manifest(bundle: Path) -> None:
    """The manifest of the bundle's files as they now are, of the fixture's format (10)."""
    from bertclf.package import write_manifest

    write_manifest(bundle)
    edit_json(bundle / "manifest.json", lambda m: m.__setitem__("format_version", 10))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def five_classes(bundle: Path) -> None:
    for name in ("model.json", "labels.json"):
        edit_json(bundle / name, lambda d: d.__setitem__("classes", d["classes"][:5]))
    edit_json(bundle / "labels.json", lambda d: d["counts"].pop("Sports", None))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda b: edit_json(
                b / "model.json", lambda d: d["tokenize"].update(max_length="64 tokens")
            ),
            r"model\.json: tokenize\.max_length: Value '64 tokens' of type 'str' could not",
        ),
        (
            lambda b: edit_json(b / "model.json", lambda d: d["tokenize"].update(stride=3)),
            r"model\.json: tokenize\.stride: Key 'stride' not in 'TokenizeConfig' \(the keys",
        ),
        (
            lambda b: edit_json(b / "model.json", lambda d: d.pop("tokenize")),
            r"model\.json: tokenize is missing or not an object",
        ),
        (
            five_classes,
            r"the model answers 6 columns, but labels\.json has 5 classes: not a consistent",
        ),
        (
            lambda b: edit_json(b / "model.json", lambda d: d["encoder"].update(vocab_size=100)),
            r"tokenizer\.json has 30522 tokens, but the model's embedding has 100 rows",
        ),
        (
            lambda b: edit_json(b / "model.json", lambda d: d["encoder"].update(model_type="xlm")),
            r"model\.json: encoder model_type 'xlm' is not a family this bertclf reads \(bert, ",
        ),
        (
            lambda b: edit_json(b / "model.json", lambda d: d.update(encoder=[1])),
            r"model\.json: encoder is not a JSON object",
        ),
        (
            lambda b: edit_json(b / "model.json", lambda d: d.update(raw_text_serving="yes")),
            r"model\.json: raw_text_serving is not true or false",
        ),
    ],
    ids=[
        "string max_length",
        "unknown key",
        "no tokenize",
        "6 outputs for 5",
        "vocabulary",
        "unknown family",
        "encoder not an object",
        "raw_text_serving not a boolean",
    ],  # fmt: skip
)
@pytest.mark.parametrize("runtime", ["tensorflow", "openvino"])
def test_a_package_whose_files_disagree_with_its_model_is_refused_in_one_line(
    tmp_path, change, message, runtime
):
    """They gave TypeError or IndexError, or answered one label for every text."""
    bundle = tampered(tmp_path, change)
    with pytest.raises(BertclfError, match=message) as caught:
        Classifier.load(bundle, runtime=runtime)
    assert "\n" not in str(caught.value)


def test_calibration_files_are_checked_key_by_key():
    """A NaN threshold answered no label for every text, a missing one raised KeyError at
    prediction, and "at_least_one": "no" counted as true."""
    from bertclf.thresholds import Thresholds

    good = {
        "task": "multi_label",
        "method": "tuned",
        "global_threshold": 0.4,
        "thresholds": {"a": 0.3, "b": 0.6},
        "tuned_labels": ["a", "b"],
        "at_least_one": True,
        "min_val_positives": 5,
        "temperature": [1.1, 0.9],
    }
    assert Thresholds.from_json(good, "c.json").vector(["a", "b"]).tolist() == [
        pytest.approx(0.3),
        pytest.approx(0.6),
    ]
    for key, value, expected in (
        ("at_least_one", "no", "expected true or false"),
        ("thresholds", {"a": float("nan"), "b": 0.6}, "expected an object of label: a number"),
        ("global_threshold", 1.5, "expected a number from 0 to 1"),
        ("temperature", [1.0, 0.0], "expected null, or a finite number above 0"),
        ("method", "best", "expected 'tuned' or 'global'"),
    ):
        with pytest.raises(BertclfError, match=f"^c.json: {key} is .*; {expected}"):
            Thresholds.from_json({**good, key: value}, "c.json")
    with pytest.raises(BertclfError, match=r"c\.json: thresholds has no threshold for 'c'"):
        Thresholds.from_json(good, "c.json").check_labels(["a", "b", "c"], "c.json")


def test_a_probability_that_is_not_a_number_never_becomes_a_label():
    from bertclf.config import parse_section
    from bertclf.labels import LabelMap

    class NaNModel:
        def predict_on_batch(self, inputs):
            rows = np.full((len(inputs["input_ids"]), 2), 0.5, dtype=np.float32)
            rows[inputs["input_ids"][:, 1] == 2023] = np.nan  # the text "this"
            return rows

    classifier = Classifier.load(PACKAGE, runtime="tensorflow")
    tokenize = parse_section(
        "tokenize", json.loads((PACKAGE / "model.json").read_text())["tokenize"]
    )
    nan = Classifier(NaNModel(), classifier.tokenizer, LabelMap.fit(["x", "y"]), tokenize)
    assert nan.predict(["fine"]).tolist() in (["x"], ["y"])
    with pytest.raises(BertclfError, match=r"not a number for texts\[1\]: the package is damaged"):
        nan.predict(["fine", "this"])


def onnx_identity() -> bytes:
    """A minimal ONNX model (y = Identity(x)), written as protobuf by hand: OpenVINO's
    read_model runs it even when it is named model.xml."""

    def varint(n: int) -> bytes:
        out = b""
        while True:
            byte, n = n & 0x7F, n >> 7
            out += bytes([byte | (0x80 if n else 0)])
            if not n:
                return out

    def field(number: int, value) -> bytes:
        if isinstance(value, int):
            return varint(number << 3) + varint(value)
        value = value.encode() if isinstance(value, str) else value
        return varint(number << 3 | 2) + varint(len(value)) + value

    tensor = field(1, field(1, 1) + field(2, field(1, field(1, 2))))  # float, shape [2]
    graph = (
        field(1, field(1, "x") + field(2, "y") + field(4, "Identity"))
        + field(2, "g")
        + field(11, field(1, "x") + field(2, tensor))
        + field(12, field(1, "y") + field(2, tensor))
    )
    return field(1, 8) + field(8, field(1, "") + field(2, 13)) + field(7, graph)


def test_only_an_openvino_ir_of_bertclf_s_interface_is_run(tmp_path):
    """An ONNX file saved as openvino/model.xml was loaded and run (OpenVINO falls back to its
    other front ends); an IR with other inputs is not one bertclf wrote either."""
    import openvino as ov

    (tmp_path / "x.xml").write_bytes(onnx_identity())
    assert [i.get_any_name() for i in ov.Core().read_model(str(tmp_path / "x.xml")).inputs] == ["x"]

    def onnx_in_place(bundle: Path) -> None:
        (bundle / "openvino/model.xml").write_bytes(onnx_identity())
        (bundle / "openvino/model.bin").write_bytes(b"")

    with pytest.raises(BertclfError, match=r"openvino/model\.xml: not an OpenVINO IR file$"):
        Classifier.load(tampered(tmp_path / "a", onnx_in_place), runtime="openvino")

    def other_ir(bundle: Path) -> None:
        x = ov.opset13.parameter([2, 3], ov.Type.f32, name="x")
        ov.save_model(ov.Model([ov.opset13.relu(x)], [x]), bundle / "openvino/model.xml")

    with pytest.raises(BertclfError, match=r"model\.xml: not a model bertclf writes: its inputs"):
        Classifier.load(tampered(tmp_path / "b", other_ir), runtime="openvino")


def test_files_swapped_after_their_check_are_not_the_ones_loaded(tmp_path, monkeypatch):
    """The checksums were checked, then OpenVINO, the tokenizer and the JSON readers opened
    the files again: a writer swapping openvino/model.xml ran its model in 10 of 40 loads.
    The loader now reads a private copy of the bytes it checked."""
    from bertclf import package

    bundle = shutil.copytree(PACKAGE, tmp_path / "package")
    expected = Classifier.load(bundle, runtime="openvino").predict_proba(["a film about money"])
    check = package.verify_bundle

    def check_then_swap(*args, **kwargs):
        manifest = check(*args, **kwargs)
        (bundle / "openvino/model.xml").write_bytes(onnx_identity())  # the racing writer
        (bundle / "labels.json").write_text('{"classes": ["x"]}')
        return manifest

    monkeypatch.setattr(package, "verify_bundle", check_then_swap)
    loaded = Classifier.load(bundle, runtime="openvino")
    np.testing.assert_allclose(loaded.predict_proba(["a film about money"]), expected, atol=1e-6)
    assert loaded.classes_.tolist()[0] == "Cinema"


def test_open_package_reads_every_file_once_from_a_checked_copy_that_it_removes():
    from bertclf.package_reader import open_package

    with open_package(PACKAGE) as package:
        copy = package.path
        assert copy != PACKAGE and (copy / "saved_model/saved_model.pb").is_file()
        assert package.source == PACKAGE and package.format_version == 10
        assert list(package.label_map.classes) == package.spec["classes"]
        assert package.tokenize.max_length == 64 and package.clean.remove_urls
        assert package.offered == ("f32", "bf16", "int8")
        assert package.card["encoder"]["name"] == "tiny"
        assert package.tokenizer.get_vocab_size() > 1000
    assert not copy.exists()


def test_a_package_whose_files_disagree_is_refused_naming_the_package_not_the_copy(tmp_path):
    from bertclf.files import write_json
    from bertclf.package_reader import open_package

    package = shutil.copytree(PACKAGE, tmp_path / "package")
    spec = json.loads((package / "model.json").read_text())
    write_json(package / "model.json", {**spec, "classes": spec["classes"][::-1]})
    rewrite_manifest(package)  # consistent checksums: the files themselves disagree
    with pytest.raises(BertclfError) as error, open_package(package):
        pass
    assert str(error.value) == f"{package}: labels.json and model.json disagree on the classes"
