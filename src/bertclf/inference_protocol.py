"""The Open Inference Protocol (KServe v2) as `bertclf serve` speaks it: REST with JSON tensors.

An infer request names its inputs as tensors: `text` (and a pair model's `text_pair`), datatype
BYTES, shape [n] or [n, 1], the strings in `data`. The answer's tensors are the task's
(`Task.tensors`): single-label `label` and `probabilities`, multi-label `probabilities` and
`predicted`, regression `score`. Triton's binary tensor extension is not spoken: a binary body
gets 415. Nothing here runs a model; `serve` does, through its batcher.
"""

import json
from dataclasses import dataclass

import numpy as np

REQUEST_KEYS = {"id", "parameters", "inputs", "outputs"}
TENSOR_KEYS = {"name", "shape", "datatype", "data", "parameters"}
OUTPUT_DATATYPES = ["BOOL", "BYTES", "FP32"]


class ProtocolError(Exception):
    """A request the protocol refuses: `status` and one line (`{"error": message}`)."""

    def __init__(self, status: int, message: str, limit: str | None = None, texts: int = 0):
        super().__init__(message)
        self.status = status
        self.message = message
        self.limit = limit  # the server limit that refused it, if one did
        self.texts = texts  # the texts the request held, where they were read


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    texts: list  # texts, or a pair model's (text, text_pair) tuples
    outputs: list[str]  # the outputs to answer, in the model's order


def _bad(message: str) -> ProtocolError:
    return ProtocolError(400, message)


def _strings(tensor: dict, name: str) -> list:
    """A BYTES tensor's strings, checked against its shape: [n] or [n, 1]; `data` flat or
    nested as the shape is (the protocol allows both)."""
    shape = tensor.get("shape")
    if isinstance(shape, list) and all(_whole(d) for d in shape):
        shape = [int(d) for d in shape]  # JSON's 2.0 is the integer 2, as JSON Schema says
    else:
        shape = None
    if shape is None or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise _bad(f"input '{name}': shape {tensor.get('shape')!r}, expected [n] or [n, 1]")
    if tensor.get("datatype") != "BYTES":
        raise _bad(f"input '{name}': datatype {tensor.get('datatype')!r}, expected 'BYTES'")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise _bad(f"input '{name}': 'data' is not a list")
    if len(shape) == 2 and all(isinstance(row, list) and len(row) == 1 for row in data):
        data = [row[0] for row in data]
    if len(data) != shape[0]:
        raise _bad(f"input '{name}': shape {shape} holds {shape[0]} texts, 'data' has {len(data)}")
    for row, text in enumerate(data):
        if not isinstance(text, str):
            raise _bad(f"input '{name}': data[{row}] is not a string")
        if not _unicode(text):
            raise _bad(f"input '{name}': data[{row}] is not valid Unicode (a lone surrogate)")
    return data


def _unicode(text: str) -> bool:
    """Whether `text` is valid Unicode: JSON's escapes can spell a lone surrogate (`"\\udfff"`),
    which no text encoding holds, so the model's tokenizer (and the answer) would fail on it,
    and with it every request batched into the same call."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _whole(number) -> bool:
    """A count: a JSON number that is a whole number, 0 or more."""
    return (
        isinstance(number, int | float)
        and not isinstance(number, bool)
        and 0 <= number < 2**31
        and float(number).is_integer()
    )


def parse_infer(
    body: bytes, input_names: list[str], output_names: list[str], max_texts: int, max_chars: int
) -> InferRequest:
    """An infer request's texts, id and outputs; ProtocolError naming what is wrong."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise _bad(f"malformed JSON: {error}") from None
    except RecursionError:  # Python's parser recurses once a level: about 1,000 levels
        raise _bad("malformed JSON: nested too deeply") from None
    if not isinstance(request, dict):
        raise _bad("the body is not a JSON object")
    unknown = sorted(set(request) - REQUEST_KEYS)
    if unknown:
        raise _bad(f"unknown key {unknown[0]!r}: an infer request has {sorted(REQUEST_KEYS)}")
    if "id" in request:
        if not isinstance(request["id"], str):
            raise _bad("'id' is not a string")
        if not _unicode(request["id"]):
            raise _bad("'id' is not valid Unicode (a lone surrogate)")
    if not isinstance(request.get("parameters", {}), dict):
        raise _bad("'parameters' is not an object")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
        raise _bad("'inputs' is not a list of tensors")
    tensors = {}
    for tensor in inputs:
        name = tensor.get("name")
        if name not in input_names:
            raise _bad(f"input {name!r} is not one of the model's inputs: {input_names}")
        if name in tensors:
            raise _bad(f"input '{name}' is given twice")
        extra = sorted(set(tensor) - TENSOR_KEYS)
        if extra:
            raise _bad(f"input '{name}': unknown key {extra[0]!r}")
        if not isinstance(tensor.get("parameters", {}), dict):
            raise _bad(f"input '{name}': 'parameters' is not an object")
        tensors[name] = tensor
    missing = [name for name in input_names if name not in tensors]
    if missing:
        raise _bad(f"input '{missing[0]}' is missing: the model takes {input_names}")
    columns = [_strings(tensors[name], name) for name in input_names]
    count = len(columns[0])
    if any(len(column) != count for column in columns):
        raise _bad(f"{' and '.join(input_names)} hold different numbers of texts")
    if count > max_texts:
        raise ProtocolError(
            413, f"too many texts: at most {max_texts} a request", "max_texts", count
        )
    for name, column in zip(input_names, columns, strict=True):
        for row, text in enumerate(column):
            if len(text) > max_chars:
                raise ProtocolError(
                    422,
                    f"input '{name}': data[{row}] has over {max_chars} characters",
                    "max_chars",
                    count,
                )
            if not text.strip():
                raise ProtocolError(422, f"input '{name}': data[{row}] is empty or only whitespace")
    texts = columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))
    outputs = _outputs(request["outputs"], output_names) if "outputs" in request else output_names
    return InferRequest(request.get("id"), texts, outputs)


def _outputs(asked, output_names: list[str]) -> list[str]:
    if not isinstance(asked, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked
    ):
        raise _bad("'outputs' is not a list of objects, each with a 'name' string")
    names = {o["name"] for o in asked}
    unknown = sorted(names - set(output_names))
    if unknown:
        raise _bad(f"output {unknown[0]!r} is not one of the model's outputs: {output_names}")
    return [name for name in output_names if name in names]


def tensor(name: str, datatype: str, values: np.ndarray) -> dict:
    """An output tensor in the protocol's JSON form: `data` flat, in row-major order."""
    flat = values.reshape(-1)
    data = [str(v) for v in flat] if datatype == "BYTES" else flat.tolist()
    return {"name": name, "datatype": datatype, "shape": list(values.shape), "data": data}


def tensor_metadata(name: str, datatype: str, shape: list[int]) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape}


def infer_schema(input_names: list[str], specs: dict, max_texts: int, max_chars: int) -> dict:
    """The JSON schema of an infer request, with the server's limits."""
    strings = {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": r"\S"}
    tensor_schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": input_names},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": max_texts},
                "minItems": 1,
                "maxItems": 2,
            },
            "datatype": {"type": "string", "enum": ["BYTES"]},
            "data": {"type": "array", "items": strings, "maxItems": max_texts},
            "parameters": {"type": "object"},
        },
        "required": ["name", "shape", "datatype", "data"],
        "additionalProperties": False,
    }
    output = {
        "type": "object",
        "properties": {"name": {"type": "string", "enum": list(specs)}, "parameters": {}},
        "required": ["name"],
    }
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {
                "type": "array",
                "items": tensor_schema,
                "minItems": len(input_names),
                "maxItems": len(input_names),
            },
            "outputs": {"type": "array", "items": output},
        },
        "required": ["inputs"],
        "additionalProperties": False,
    }


def answer_schema() -> dict:
    """The JSON schema of an infer answer."""
    output = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": OUTPUT_DATATYPES},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "data": {"type": "array"},
        },
        "required": ["name", "datatype", "shape", "data"],
    }
    return {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": output},
        },
        "required": ["model_name", "outputs"],
    }


ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
