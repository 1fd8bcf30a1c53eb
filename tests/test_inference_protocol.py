"""The Open Inference Protocol's request parsing and answer tensors, without a server."""

import json

import numpy as np
import pytest

from bertclf.inference_protocol import ProtocolError, parse_infer, tensor
from bertclf.labels import LabelMap
from bertclf.tasks import task_of


def body(**request) -> bytes:
    return json.dumps(request).encode()


def texts(name: str, data, shape=None) -> dict:
    return {"name": name, "datatype": "BYTES", "shape": shape or [len(data)], "data": data}


def parse(raw: bytes, inputs=("text",), outputs=("label", "probabilities")):
    return parse_infer(raw, list(inputs), list(outputs), max_texts=4, max_chars=20)


def test_texts_flat_or_nested_with_their_id_and_the_outputs_in_the_models_order():
    flat = parse(body(id="r1", inputs=[texts("text", ["a b", "c"])]))
    assert flat.id == "r1" and flat.texts == ["a b", "c"]
    assert flat.outputs == ["label", "probabilities"]  # none asked: all
    nested = parse(body(inputs=[texts("text", [["a b"], ["c"]], [2, 1.0])],
                        outputs=[{"name": "probabilities"}, {"name": "label"}]))  # fmt: skip
    assert nested.texts == ["a b", "c"] and nested.id is None
    assert nested.outputs == ["label", "probabilities"]
    only = parse(body(inputs=[texts("text", ["x"])], outputs=[{"name": "probabilities"}]))
    assert only.outputs == ["probabilities"]


def test_a_pair_models_two_inputs_become_pairs_in_any_order():
    both = [texts("text_pair", ["p1", "p2"]), texts("text", ["t1", "t2"])]
    parsed = parse(body(inputs=both), inputs=("text", "text_pair"))
    assert parsed.texts == [("t1", "p1"), ("t2", "p2")]
    with pytest.raises(ProtocolError, match="different numbers of texts"):
        parse(body(inputs=[texts("text", ["a"]), texts("text_pair", ["b", "c"])]),
              inputs=("text", "text_pair"))  # fmt: skip
    with pytest.raises(ProtocolError, match="'text_pair' is missing"):
        parse(body(inputs=[texts("text", ["a"])]), inputs=("text", "text_pair"))


@pytest.mark.parametrize(
    ("request_", "status", "message"),
    [
        ({"inputs": [texts("text", ["a"]), texts("text", ["b"])]}, 400, "given twice"),
        ({"inputs": [texts("text", ["a"])], "extra": 1}, 400, "unknown key 'extra'"),
        ({"inputs": [{**texts("text", ["a"]), "parameters": []}]}, 400, "not an object"),
        ({"inputs": [texts("text", ["a"])], "outputs": None}, 400, "'name' string"),
        ({"inputs": [texts("text", ["a"])], "outputs": [{"name": {}}]}, 400, "'name' string"),
        ({"inputs": [texts("text", ["a"])], "id": None}, 400, "'id' is not a string"),
        ({"inputs": [texts("text", ["a"], [True])]}, 400, "expected [n] or [n, 1]"),
        ({"inputs": [texts("text", ["a"], [1.5])]}, 400, "expected [n] or [n, 1]"),
        ({"inputs": [texts("text", ["a"] * 5)]}, 413, "at most 4"),
        ({"inputs": [texts("text", ["x" * 21])]}, 422, "over 20 characters"),
        ({"inputs": {"text": ["a"]}}, 400, "not a list of tensors"),
        ([], 400, "not a JSON object"),
    ],
)
def test_bad_requests_are_refused_naming_what_is_wrong(request_, status, message):
    with pytest.raises(ProtocolError) as error:
        parse(json.dumps(request_).encode())
    assert error.value.status == status and message in error.value.message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], '
         b'"data": ["good", "bad \\udfff"]}]}', "input 'text': data[1] is not valid Unicode"),
        (b'{"id": "\\ud800", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], '
         b'"data": ["good"]}]}', "'id' is not valid Unicode"),
        (b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_or_a_deep_nesting_is_refused_before_the_model_sees_it(raw, message):
    """JSON's escapes spell lone surrogates, which no encoding holds: one in a text failed every
    request batched with it (500), one in the id failed the answer; Python's parser gives up
    past about 1,000 levels with a RecursionError. Each is one 400 naming it."""
    with pytest.raises(ProtocolError) as error:
        parse(raw)
    assert error.value.status == 400 and message in error.value.message


def test_each_tasks_tensors_match_its_declared_datatypes_and_shapes():
    probabilities = np.array([[0.9, 0.1, 0.6], [0.2, 0.3, 0.1]], dtype=np.float32)
    single = task_of(LabelMap(classes=("a", "b", "c"), counts=(1, 1, 1)))
    out = single.tensors(None, probabilities)
    assert tensor("label", "BYTES", out["label"]) == {
        "name": "label", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}  # fmt: skip
    flat = tensor("probabilities", "FP32", out["probabilities"])
    assert flat["shape"] == [2, 3] and flat["data"] == pytest.approx(probabilities.ravel())
    multi = task_of(LabelMap.fit_sets([["a", "c"], ["b"], ["a"]]))
    predicted = multi.tensors(lambda p: p >= 0.5, probabilities)["predicted"]
    assert tensor("predicted", "BOOL", predicted)["data"] == [
        True, False, True, False, False, False]  # fmt: skip
    regression = task_of(LabelMap.fit_scores([0.5, 2.0, 4.5]))
    scores = regression.tensors(None, np.array([[1.5], [3.0]], dtype=np.float32))
    assert tensor("score", "FP32", scores["score"]) == {
        "name": "score", "datatype": "FP32", "shape": [2], "data": [1.5, 3.0]}  # fmt: skip
    for task, rows in ((single, probabilities), (multi, probabilities),
                       (regression, probabilities[:, :1])):  # fmt: skip
        specs = task.tensor_specs()
        answered = task.tensors(lambda p: p >= 0.5, rows)
        assert list(answered) == list(specs)
        for name, values in answered.items():
            datatype, shape = specs[name]
            assert len(shape) == values.ndim and shape[1:] == list(values.shape[1:])
            assert tensor(name, datatype, values)["datatype"] == datatype
