"""Runtimes for a package's model: TensorFlow (the SavedModel's `token_ids` function) or
OpenVINO (the same function converted, in float32, bfloat16 or int8), and which to run.

Both answer `predict_on_batch(inputs)` on the Classifier's padded batches, so tokenization,
length-sorted batching, chunk pooling and order restoring stay one code path; only the model
call differs.

OpenVINO's CPU plugin computes in bfloat16 by itself on CPUs that have it, so float32 is asked
for explicitly. int8 is a model of its own (weights and activations quantized by NNCF on a
sample of training texts); what it leaves in floating point runs in bfloat16 where the CPU has
native bfloat16, in float32 elsewhere.
"""

import threading
from pathlib import Path

import numpy as np

from bertclf.choices import PRECISION_CHOICES, RUNTIMES
from bertclf.errors import BertclfError
from bertclf.layout import CHECKS, OPENVINO_DIR

MODEL_FILES = {"f32": "model", "bf16": "model", "int8": "model_int8"}  # .xml and .bin
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# The parity gate: labels equal to TensorFlow's where TensorFlow is not near a tie, and the
# accuracy (multi-label: micro-F1) within half a point or one text of TensorFlow's.
MIN_SAME_LABELS = 0.99
CLEAR_MARGIN = 0.1  # single-label: top two probabilities at least this far apart
CLEAR_DISTANCE = 0.05  # multi-label: a probability at least this far from its threshold
SCORE_TOLERANCE = 0.005


def cpu() -> dict:
    """This CPU's model name and flags (Linux's /proc/cpuinfo; empty elsewhere)."""
    name, flags = "unknown", []
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == "unknown":
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = sorted(value.split())
    return {"model": name, "flags": flags}


def native_bfloat16(flags: list[str]) -> bool:
    return any(flag in flags for flag in NATIVE_BFLOAT16_FLAGS)


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


# What bertclf's OpenVINO models take and give: (name, rank) of each input and output; format
# 7's give probabilities only.
IR_INPUTS = {("input_ids", 2), ("attention_mask", 2)}
IR_OUTPUTS = ({("probabilities", 2), ("logits", 2)}, {("probabilities", 2)})


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
    answers its `output` (`logits`; format 7's models have `probabilities` only)."""

    def __init__(self, model, precision: str, bfloat16: bool | None = None, output: str = "logits"):
        import openvino as ov

        if bfloat16 is None:
            bfloat16 = native_bfloat16(cpu()["flags"])
        hint = precision if precision != "int8" else ("bf16" if bfloat16 else "f32")
        core = ov.Core()
        try:
            if isinstance(model, str | Path):
                model = read_ir(Path(model))
            self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
            self.output = self.compiled.output(output)
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


def convert(function):
    """OpenVINO's model of a `tf.function` taking `input_ids` and `attention_mask` (int32) and
    returning `probabilities` (the package's `token_ids` function; a graph that also holds the
    in-graph tokenizer does not convert)."""
    import openvino as ov

    return ov.convert_model(function)


def quantize(model, batches: list[dict[str, np.ndarray]]):
    """The model in int8 (NNCF's post-training quantization with its transformer preset),
    calibrated on these padded batches."""
    import nncf

    nncf.set_log_level(40)  # its progress and info lines: errors only
    return nncf.quantize(
        model,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),
    )


def save(model, bundle: Path, precision: str) -> Path:
    """Write openvino/<name>.xml and .bin, the weights as they are (not halved to float16)."""
    import openvino as ov

    xml = model_path(bundle, precision)
    xml.parent.mkdir(exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    y_true: np.ndarray,
    thresholds: np.ndarray | None = None,
    at_least_one: bool = True,
) -> dict:
    """A runtime's probabilities against TensorFlow's on the same texts, as the parity gate
    reads them. Single-label: labels equal where TensorFlow's top two probabilities are at
    least CLEAR_MARGIN apart, and accuracy. Multi-label (`thresholds`): per-(text, label)
    decisions equal where TensorFlow's probability is at least CLEAR_DISTANCE from the
    threshold, and micro-F1. Passes when the first is at least MIN_SAME_LABELS and the score is
    within SCORE_TOLERANCE or one text of TensorFlow's, whichever is larger."""
    from sklearn.metrics import accuracy_score, f1_score

    n = len(reference)
    if thresholds is None:
        top_two = np.sort(reference, axis=1)[:, -2:]
        clear = top_two[:, -1] - top_two[:, 0] >= CLEAR_MARGIN if top_two.shape[1] > 1 else True
        clear = np.broadcast_to(clear, (n,))
        same = reference.argmax(1) == candidate.argmax(1)
        score_name = "accuracy"
        scores = [accuracy_score(y_true, p.argmax(1)) for p in (reference, candidate)]
    else:
        from bertclf.thresholds import decide

        decided = [decide(p, thresholds, at_least_one) for p in (reference, candidate)]
        clear = np.abs(reference - thresholds) >= CLEAR_DISTANCE
        same = decided[0] == decided[1]
        score_name = "micro_f1"
        scores = [f1_score(y_true, d, average="micro", zero_division=0) for d in decided]
    same_where_clear = float(same[clear].mean()) if clear.any() else 1.0
    tolerance = max(SCORE_TOLERANCE, 1 / n) if n else SCORE_TOLERANCE
    figures = {
        "n": n,
        "clear_decisions": int(clear.sum()),
        "same_decisions_where_clear": same_where_clear,
        "same_decisions": float(same.mean()) if n else 1.0,
        "max_probability_difference": float(np.abs(reference - candidate).max(initial=0.0)),
        f"tensorflow_{score_name}": float(scores[0]),
        score_name: float(scores[1]),
        "score_tolerance": tolerance,
    }
    figures["passed"] = bool(
        same_where_clear >= MIN_SAME_LABELS and abs(scores[1] - scores[0]) <= tolerance + 1e-12
    )
    return figures


def describe_failure(precision: str, figures: dict) -> str:
    score = "accuracy" if "accuracy" in figures else "micro_f1"
    same = figures["same_decisions_where_clear"]
    return (
        f"{precision}: decisions equal to TensorFlow's on {same:.2%} of the "
        f"{figures['clear_decisions']} clear ones (at least {MIN_SAME_LABELS:.0%} needed), "
        f"{score} {figures[score]:.4f} against TensorFlow's {figures['tensorflow_' + score]:.4f} "
        f"(within {figures['score_tolerance']:.4f} needed)"
    )


def calibration_batches(
    sequences: list[np.ndarray], n_texts: int, seed: int, tokenize
) -> list[dict[str, np.ndarray]]:
    """Padded batches of 16 of `n_texts` training sequences drawn with the seed, for NNCF."""
    from bertclf.batching import BucketedSequence

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(sequences), size=min(n_texts, len(sequences)), replace=False)
    batches = BucketedSequence([sequences[i] for i in sorted(chosen)], None, 16, tokenize)
    return [batches[i] for i in range(len(batches))]


def write_openvino(
    function,
    model,
    bundle: Path,
    config,
    test,
    train_sequences: list[np.ndarray],
    preprocessor,
    batch_size: int,
    seed: int,
) -> dict:
    """Convert `function` (the package's `token_ids`), check each of `config.precisions`
    against the Keras `model` on the `test` token cache (the same batches, so only the model
    call differs; the answers as `preprocessor` gives them) and write the models that pass
    under bundle/openvino/, with checks.json. f32 failing is a conversion bug and raises; bf16
    or int8 failing is left out with the reason (raises too when `config.strict`). Returns
    what checks.json holds."""
    from bertclf.files import write_json
    from bertclf.prediction import predict_logits

    tokenize = preprocessor.tokenize
    texts = test.texts()
    thresholds, at_least_one = preprocessor.thresholds, preprocessor.at_least_one

    def predict(runtime_model, answers) -> np.ndarray:
        logits = predict_logits(runtime_model, test.sequences, batch_size, tokenize)
        return answers.answer(logits, test.text_index(), len(texts.ids))

    machine = cpu()
    bfloat16 = native_bfloat16(machine["flags"])
    checks = {}
    if config.precisions:
        converted = convert(function)
        reference, y_true = predict(model, preprocessor), texts.labels
    for precision in config.precisions:
        if precision == "int8":
            sample = calibration_batches(
                train_sequences, config.int8_calibration_texts, seed, tokenize
            )
            candidate = quantize(converted, sample)
        else:
            candidate = converted
        compiled = OpenVINOModel(candidate, precision, bfloat16)
        scaled = preprocessor.with_temperature(None)  # the converted function holds it
        figures = compare(reference, predict(compiled, scaled), y_true, thresholds, at_least_one)
        figures["inference_precision"] = compiled.inference_precision
        if precision == "int8":
            used = min(config.int8_calibration_texts, len(train_sequences))
            figures["int8_calibration"] = {"asked": config.int8_calibration_texts, "used": used}
        checks[precision] = figures
        if not figures["passed"]:
            reason = describe_failure(precision, figures)
            if precision == "f32" or config.strict:
                why = "a conversion bug" if precision == "f32" else "package.strict is true"
                raise BertclfError(f"OpenVINO {reason}; the package fails ({why})")
            figures["left_out"] = reason
            continue
        if not model_path(bundle, precision).exists():
            save(candidate, bundle, precision)
    summary = {
        "offered": [p for p in config.precisions if checks[p]["passed"]],
        "cpu": machine,
        "native_bfloat16": bfloat16,
        "precisions": checks,
    }
    if summary["offered"]:
        write_json(bundle / OPENVINO_DIR / CHECKS, summary)
    return summary


def describe_check(precision: str, figures: dict) -> list[str]:
    """How a precision compared with TensorFlow, and whether the package offers it: lines that
    fit 120 columns behind "package: OpenVINO "."""
    score = "accuracy" if "accuracy" in figures else "micro_f1"
    status = "offered" if figures["passed"] else "left out"
    lines = [
        f"{precision} ({figures['inference_precision']} inference): {status}; {score} "
        f"{figures[score]:.4f} (TensorFlow {figures['tensorflow_' + score]:.4f})",
        f"  decisions equal {figures['same_decisions']:.2%} "
        f"({figures['same_decisions_where_clear']:.2%} of the {figures['clear_decisions']} clear "
        f"ones), largest probability difference {figures['max_probability_difference']:.2g}",
    ]
    calibration = figures.get("int8_calibration", {})
    if calibration and calibration["used"] < calibration["asked"]:
        lines.append(
            f"  quantized on only {calibration['used']} of the {calibration['asked']} texts "
            "asked for (package.int8_calibration_texts)"
        )
    return lines


def model_path(package: Path, precision: str) -> Path:
    return package / OPENVINO_DIR / f"{MODEL_FILES[precision]}.xml"
