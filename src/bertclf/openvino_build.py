"""Building a package's OpenVINO models: the `token_ids` function converted (f32, run in f32
or bf16) and quantized (int8, NNCF), each checked against TensorFlow on the test split by the
parity gate, written with checks.json. The package stage's side; reading and running them is
`runtime`'s."""

from pathlib import Path

import numpy as np

from bertclf.errors import BertclfError
from bertclf.hardware import cpu, native_bfloat16
from bertclf.labels import REGRESSION
from bertclf.layout import CHECKS, OPENVINO_DIR
from bertclf.metrics import score_name
from bertclf.runtime import OpenVINOModel, model_path

# The parity gate: labels equal to TensorFlow's where TensorFlow is not near a tie, and the
# accuracy (multi-label: micro-F1) within half a point or one text of TensorFlow's.
MIN_SAME_LABELS = 0.99
CLEAR_MARGIN = 0.1  # single-label: top two probabilities at least this far apart
CLEAR_DISTANCE = 0.05  # multi-label: a probability at least this far from its threshold
SCORE_TOLERANCE = 0.005


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


def compare_scores(reference: np.ndarray, candidate: np.ndarray, y_true: np.ndarray) -> dict:
    """A regression runtime's scores against TensorFlow's: passes when its Pearson
    correlation with the true scores is within SCORE_TOLERANCE of TensorFlow's; the largest
    score difference is reported."""
    from bertclf.metrics import regression_metrics

    pearson = [regression_metrics(y_true, p)["pearson"] for p in (reference, candidate)]
    both = None not in pearson
    figures = {
        "n": len(reference),
        "max_score_difference": float(np.abs(reference - candidate).max(initial=0.0)),
        "tensorflow_pearson": pearson[0],
        "pearson": pearson[1],
        "score_tolerance": SCORE_TOLERANCE,
    }
    figures["passed"] = bool(both and abs(pearson[1] - pearson[0]) <= SCORE_TOLERANCE + 1e-12)
    return figures


def describe_failure(precision: str, figures: dict) -> str:
    score = score_name(figures)
    if score == "pearson":
        return (
            f"{precision}: Pearson {figures['pearson']} against TensorFlow's "
            f"{figures['tensorflow_pearson']} (within {SCORE_TOLERANCE} needed)"
        )
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
    from bertclf.prediction import predict_texts

    tokenize = preprocessor.tokenize
    thresholds, at_least_one = preprocessor.thresholds, preprocessor.at_least_one

    def predict(runtime_model, answers) -> np.ndarray:
        return predict_texts(runtime_model, test, batch_size, answers)[1]

    machine = cpu()
    bfloat16 = native_bfloat16(machine["flags"])
    checks = {}
    if config.precisions:
        converted = convert(function)
        reference, y_true = predict(model, preprocessor), test.texts().labels
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
        answered = predict(compiled, scaled)
        if preprocessor.task == REGRESSION:
            figures = compare_scores(reference, answered, y_true)
        else:
            figures = compare(reference, answered, y_true, thresholds, at_least_one)
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
    score = score_name(figures)
    status = "offered" if figures["passed"] else "left out"
    lines = [
        f"{precision} ({figures['inference_precision']} inference): {status}; {score} "
        f"{figures[score]:.4f} (TensorFlow {figures['tensorflow_' + score]:.4f})",
    ]
    if score == "pearson":
        lines.append(f"  largest score difference {figures['max_score_difference']:.2g}")
    else:
        lines.append(
            f"  decisions equal {figures['same_decisions']:.2%} "
            f"({figures['same_decisions_where_clear']:.2%} of the {figures['clear_decisions']} "
            f"clear ones), largest probability difference "
            f"{figures['max_probability_difference']:.2g}"
        )
    calibration = figures.get("int8_calibration", {})
    if calibration and calibration["used"] < calibration["asked"]:
        lines.append(
            f"  quantized on only {calibration['used']} of the {calibration['asked']} texts "
            "asked for (package.int8_calibration_texts)"
        )
    return lines
