"""Reading and running a package's model: TensorFlow (the SavedModel's `token_ids` function) or
OpenVINO (the same function converted, in float32, bfloat16 or int8), and which to run.

Both answer `predict_on_batch(inputs)` on the Classifier's padded batches, so tokenization,
length-sorted batching, chunk pooling and order restoring stay one code path; only the model
call differs.

OpenVINO's CPU plugin computes in bfloat16 by itself on CPUs that have it, so float32 is asked
for explicitly. int8 is a model of its own (weights and activations quantized by NNCF on a
sample of training texts); what it leaves in floating point runs in bfloat16 where the CPU has
native bfloat16, in float32 elsewhere. Building the OpenVINO models is `openvino_build`'s.
"""

import threading
from pathlib import Path

import numpy as np

from bertclf.choices import PRECISION_CHOICES, RUNTIMES
from bertclf.errors import BertclfError
from bertclf.hardware import cpu, native_bfloat16
from bertclf.layout import CHECKS, OPENVINO_DIR

MODEL_FILES = {"f32": "model", "bf16": "model", "int8": "model_int8"}  # .xml and .bin


def choose(
    runtime: str, precision: str, offered: list[str], bfloat16: bool, package: Path
) -> tuple[str, str]:
    """The (runtime, precision) to run. `offered` lists the OpenVINO precisions the package
    holds and whose checks passed (none for packages without OpenVINO). `auto` runs OpenVINO
    when the package offers it, in bfloat16 where the CPU has native bfloat16 (`bfloat16`) and
    the package's check passed, in float32 otherwise; int8 only when asked for."""
    if runtime not in RUNTIMES:
        raise BertclfError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if precision not in PRECISION_CHOICES:
        expected = ", ".join(PRECISION_CHOICES)
        raise BertclfError(f"precision {precision!r}: expected one of {expected}")
    automatic = automatic_precision(offered, bfloat16)
    if runtime == "auto":
        runtime = "openvino" if automatic or (offered and precision != "auto") else "tensorflow"
    if runtime == "tensorflow":
        if precision not in ("auto", "f32"):
            where = "--runtime openvino" if offered else "a package with OpenVINO models"
            raise BertclfError(
                f"precision {precision}: TensorFlow runs packages in f32 only ({where} for "
                f"{precision})"
            )
        return "tensorflow", "f32"
    if not offered:
        raise BertclfError(
            f"{package}: no OpenVINO model in this package (written by an earlier bertclf, or "
            f"with package.precisions empty): run it with --runtime tensorflow"
        )
    if precision == "auto":
        precision = automatic or "f32"
    if precision not in offered:
        raise BertclfError(
            f"{package}: precision {precision} is not in this package (it offers "
            f"{', '.join(offered)}; see openvino/{CHECKS} for why)"
        )
    return "openvino", precision


def automatic_precision(offered: list[str], bfloat16: bool) -> str | None:
    """bf16 where the CPU has native bfloat16 and the package offers it, else f32 if offered."""
    if bfloat16 and "bf16" in offered:
        return "bf16"
    return "f32" if "f32" in offered else None


# What bertclf's OpenVINO models take and give: (name, rank) of each input and output; a
# regression model's probabilities are its logits, the score, one port that goes by the name
# logits.
IR_INPUTS = {("input_ids", 2), ("attention_mask", 2)}
IR_OUTPUTS = ({("probabilities", 2), ("logits", 2)}, {("logits", 2)})


def read_ir(path: Path):
    """A package's model with OpenVINO's IR front end only (Core.read_model also runs ONNX,
    TensorFlow or PaddlePaddle files named .xml), refused unless its inputs and outputs are
    the ones bertclf writes."""
    from openvino.frontend import FrontEndManager

    frontend = FrontEndManager().load_by_framework("ir")
    if not frontend.supported(str(path)):
        raise BertclfError(f"{path}: not an OpenVINO IR file")
    model = frontend.convert(frontend.load(str(path)))

    known = {name for name, _ in IR_INPUTS | IR_OUTPUTS[0]}

    def interface(ports) -> set[tuple[str, int]]:
        """(name, rank) of each port; a port holding several tensor names (an output that
        another op reads too) goes by the one bertclf gave it."""
        return {
            (
                min(p.get_names() & known or {p.get_any_name()}),
                p.get_partial_shape().rank.get_length(),
            )
            for p in ports
        }

    inputs, outputs = interface(model.inputs), interface(model.outputs)
    if inputs != IR_INPUTS or outputs not in IR_OUTPUTS:
        found = ", ".join(f"{n} (rank {r})" for n, r in sorted(inputs | outputs))
        raise BertclfError(
            f"{path}: not a model bertclf writes: its inputs and outputs are {found}; expected "
            "input_ids and attention_mask in, probabilities and logits out, each of rank 2"
        )
    return model


class OpenVINOModel:
    """A package's OpenVINO model, compiled for the CPU in one precision; `predict_on_batch`
    answers its logits."""

    def __init__(self, model, precision: str, bfloat16: bool | None = None):
        import openvino as ov

        if bfloat16 is None:
            bfloat16 = native_bfloat16(cpu()["flags"])
        hint = precision if precision != "int8" else ("bf16" if bfloat16 else "f32")
        core = ov.Core()
        try:
            if isinstance(model, str | Path):
                model = read_ir(Path(model))
            self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
            self.output = self.compiled.output("logits")
            width = self.output.get_partial_shape()[-1]
            self.output_width = width.get_length() if width.is_static else None
        except RuntimeError as error:  # OpenVINO's, for a file it cannot read or compile
            lines = [line for line in str(error).splitlines() if line.strip()]
            reason = lines[-1].split(" Please check")[0].strip() if lines else "unknown error"
            raise BertclfError(f"{model}: OpenVINO cannot run it ({reason})") from None
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()  # one request object: one call at a time
        self.precision = precision
        self.inference_precision = self.compiled.get_property(
            "INFERENCE_PRECISION_HINT"
        ).get_type_name()

    def predict_on_batch(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with self.lock:
            return self.request.infer(inputs)[self.output].copy()


def model_path(package: Path, precision: str) -> Path:
    return package / OPENVINO_DIR / f"{MODEL_FILES[precision]}.xml"
