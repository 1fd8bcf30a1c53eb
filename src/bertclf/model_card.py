"""MODEL_CARD.md for a packaged model: encoder, data, params, metrics, intended use and limits."""

import yaml

from bertclf.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from bertclf.metrics import metrics_of, score_name, standard_error


def text_columns(data: dict) -> str:
    """The input columns in the card's words: one text, or a pair's two."""
    if data.get("text_pair_column") is None:
        return f"text column `{data['text_column']}`"
    return (
        f"text pairs from columns `{data['text_column']}` and `{data['text_pair_column']}` "
        "(segments 0 and 1; the longer text is cut first)"
    )


def model_card(
    task_name: str,
    params: dict,
    metrics: dict,
    encoder: dict,
    data_hashes: dict[str, str],
    calibration: dict | None = None,
    openvino: dict | None = None,
) -> str:
    """The card of a model of the task labels.json names (`Task.name`)."""
    task_card = TASK_CARDS[task_name]
    card = task_card(params, metrics, encoder, data_hashes, calibration or {})
    if task_name != REGRESSION:  # a score is no probability
        card += probabilities_section(metrics, calibration or {})
    return card + runtimes_section(openvino) + raw_text_section(encoder)


def raw_text_section(encoder: dict) -> str:
    """What the SavedModel takes: raw text (its tokenizer in the graph) or token ids only
    (`encoder`'s `raw_text_serving`, which the package stage adds to source.json's facts)."""
    if encoder.get("raw_text_serving", True):
        return (
            "\nThe SavedModel's `serving_default` takes raw text: it tokenizes in its graph, "
            "with token ids equal to the encoder's tokenizer's.\n"
        )
    return (
        f"\nRaw-text serving is not offered: no in-graph tokenizer of the {encoder['family']} "
        "family gives ids equal to its Hugging Face tokenizer's. The SavedModel takes token ids "
        "(`token_ids`, which is also its default signature); the Python API, `bertclf predict` "
        "and `bertclf serve` tokenize with `tokenizer.json` and take raw text.\n"
    )


def probabilities_section(metrics: dict, calibration: dict) -> str:
    """What the probabilities mean: the temperature they are scaled by, and what it changed."""
    test = metrics["test"]
    temperature = calibration.get("temperature")
    if temperature is None:
        return "\n## Probabilities\nThe model's own, not rescaled (`calibrate.method: none`).\n"
    if isinstance(temperature, list):
        scaled = f"by one temperature per label ({min(temperature):.2f} to {max(temperature):.2f})"
    else:
        scaled = f"by a temperature of {temperature:.3f}"
    before = test.get("ece_before_temperature")
    change = (
        f" On test, the expected calibration error went from {before:.4f} to {test['ece']:.4f} "
        f"and log loss from {test['log_loss_before_temperature']:.4f} to {test['log_loss']:.4f}."
        if before is not None
        else ""
    )
    return f"""
## Probabilities
The probabilities are the model's, scaled {scaled} fitted on the validation split to minimise
log loss; every runtime of the package answers them.{change}
"""


def single_label_card(
    params: dict, metrics: dict, encoder: dict, data_hashes: dict, calibration: dict
) -> str:
    test, val = metrics["test"], metrics["val"]
    rows = "\n".join(
        f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for name, m in test["per_class"].items()
    )
    hashes = "\n".join(f"- `{name}`: sha256 `{digest}`" for name, digest in data_hashes.items())
    return f"""# Model card: bertclf text classifier

## Encoder
{_encoder_named(encoder)}
({encoder["origin"]}), {_how_trained(encoder, "classification")}{_trained_in(encoder)}.

## Data
Data set `{params["data"]["name"]}`: {text_columns(params["data"])}, label
column `{params["data"]["label_column"]}`. Prepared splits:

{hashes}

## Metrics
| split | n | accuracy | macro F1 | weighted F1 |
| --- | --- | --- | --- | --- |
| test | {test["n"]} | {test["accuracy"]:.4f} | {test["macro_f1"]:.4f} | {test["weighted_f1"]:.4f} |
| val | {val["n"]} | {val["accuracy"]:.4f} | {val["macro_f1"]:.4f} | {val["weighted_f1"]:.4f} |

Per class, on test:

| class | precision | recall | F1 | support |
| --- | --- | --- | --- | --- |
{rows}

## Parameters
```yaml
{yaml.safe_dump(params, sort_keys=False).strip()}
```

## Intended use and limits
Classifies texts like those it was trained on into the classes above. It always answers with
one of those classes, however unlike its training data a text is. {_long_texts(params["tokenize"])}
Metrics were measured on {test["n"]} held-out texts; one standard error of accuracy is about
{standard_error(test["accuracy"], test["n"]):.3f}.

## Loading it safely
This package is a program: its SavedModel is a graph that TensorFlow runs. Load it only from a
source you trust. `manifest.json` detects accidents (a damaged or missing file), not attacks:
whoever can change a file can rewrite the manifest. Check the manifest's sha256 against the one
published by whoever built the package (`--expect-sha256`, `BERTCLF_PACKAGE_SHA256`), and
bertclf refuses a graph with an op that a package it writes does not use.
"""


def runtimes_section(openvino: dict | None) -> str:
    """The runtimes and precisions the package offers, with each one's accuracy (multi-label:
    micro-F1) on the test split as the package stage measured it."""
    if not openvino or not openvino.get("precisions"):
        return (
            "\n## Runtimes\nTensorFlow (the SavedModel), float32. This package holds no "
            "OpenVINO model.\n"
        )
    checks = openvino["precisions"]
    score = score_name(next(iter(checks.values())))
    name = score.replace("_", "-")
    tensorflow = next(iter(checks.values()))[f"tensorflow_{score}"]
    rows = [f"| TensorFlow | f32 | {tensorflow:.4f} | | offered |"]
    for precision, figures in checks.items():
        status = "offered" if figures["passed"] else f"left out: {figures['left_out']}"
        same = figures.get("same_decisions")  # regression: no decisions, its scores compared
        rows.append(
            f"| OpenVINO | {precision} | {figures[score]:.4f} | "
            f"{'n/a' if same is None else f'{same:.2%}'} | {status} |"
        )
    table = "\n".join(rows)
    return f"""
## Runtimes
Test {name} of each runtime and precision, and the share of decisions equal to TensorFlow's,
measured when the package was built on {openvino["cpu"]["model"]} (native bfloat16:
{"yes" if openvino["native_bfloat16"] else "no"}):

| runtime | precision | test {name} | decisions equal to TensorFlow's | |
| --- | --- | --- | --- | --- |
{table}

By default (`runtime="auto"`) OpenVINO runs, in bf16 on CPUs with native bfloat16 and in f32
elsewhere; int8 runs only when asked for (`precision="int8"`).
"""


def _encoder_named(encoder: dict) -> str:
    """The encoder: its name, family (source.json records it from format 11 on), size and
    source."""
    family = f"a {encoder['family']} encoder, " if "family" in encoder else ""
    return (
        f"{encoder['name']} ({family}{encoder['parameters']:,} parameters), "
        f"from `{encoder['source']}`"
    )


def _how_trained(encoder: dict, head: str) -> str:
    """What learner.method did (packages before it was recorded: fine-tuning)."""
    learner = encoder.get("learner", "finetune")
    fitted = "scikit-learn" + (" ridge" if head == "regression" else " logistic") + " regression"
    if learner == "frozen":
        return (
            f"kept as pretrained, with a {head} head fitted by {fitted} on its mean-pooled vectors"
        )
    if learner == "contrastive":
        return (
            "tuned contrastively on pairs of training texts (SetFit's recipe), with a "
            f"{head} head fitted by {fitted} on its mean-pooled vectors"
        )
    return f"fine-tuned with a {head} head"


def _trained_in(encoder: dict) -> str:
    """The dtype policy training ran in (train.precision, as `auto` resolved it)."""
    policy = encoder.get("training_precision", "float32")
    if policy == "float32":
        return " in float32"
    return f" in Keras' {policy} policy (float32 weights, {policy.split('_')[1]} arithmetic)"


def _long_texts(tokenize: dict) -> str:
    limit, strategy = tokenize["max_length"], tokenize.get("long_text", "head")
    if strategy == "chunks":
        return (
            f"Texts longer than {limit} tokens are read in overlapping windows whose "
            f"predictions are pooled ({tokenize['chunk_pooling']})."
        )
    if strategy == "head_tail":
        return (
            f"Texts longer than {limit} tokens are cut in the middle: only their beginning "
            "and end are read."
        )
    return f"Texts longer than {limit} tokens are truncated: only their beginning is read."


def model_card_fields(
    task_name: str,
    params: dict,
    metrics: dict,
    encoder: dict,
    data_hashes: dict,
    calibration: dict | None = None,
    openvino: dict | None = None,
) -> dict:
    """The model card's facts as JSON (model_card.json), for programs such as `bertclf serve`."""
    keys = metrics_of(task_name).headline_keys
    return {
        "task": task_name,
        "encoder": encoder,
        "data": {"name": params["data"]["name"], "sha256": data_hashes},
        "metrics": {split: {key: metrics[split][key] for key in keys} for split in ("test", "val")},
        "params": params,
        "long_texts": _long_texts(params["tokenize"]),
        "runtimes": {
            "offered": openvino["offered"] if openvino else [],
            "checks": {
                precision: {key: value for key, value in figures.items() if key != "left_out"}
                for precision, figures in (openvino or {}).get("precisions", {}).items()
            },
        },
    }


def thresholds_text(calibration: dict) -> str:
    """How the multi-label thresholds were chosen, in a sentence or two."""
    if calibration.get("method") == "global":
        rule = f"Every label is predicted at a probability of {calibration['global_threshold']}"
        rule += " or more (task.threshold)."
    else:
        rule = (
            f"Each of {len(calibration['tuned_labels'])} labels has its own threshold, the one "
            "that maximised its F1 on the validation split; the labels with fewer than "
            f"{calibration['min_val_positives']} validation positives share one global "
            f"threshold, {calibration['global_threshold']:.3f}, the one that maximised "
            "micro-F1 there."
        )
    if calibration.get("at_least_one"):
        rule += " A text that reaches no threshold gets its most probable label."
    return rule


def multi_label_card(
    params: dict, metrics: dict, encoder: dict, data_hashes: dict, calibration: dict
) -> str:
    test, val = metrics["test"], metrics["val"]
    rows = "\n".join(
        f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} "
        f"| {m['threshold']:.3f} |"
        for name, m in test["per_label"].items()
    )
    hashes = "\n".join(f"- `{name}`: sha256 `{digest}`" for name, digest in data_hashes.items())
    table = "\n".join(
        f"| {split} | {m['n']} | {m['micro_f1']:.4f} | {m['macro_f1']:.4f} | "
        f"{m['samples_f1']:.4f} | {m['subset_accuracy']:.4f} |"
        for split, m in (("test", test), ("val", val))
    )
    return f"""# Model card: bertclf multi-label text classifier

## Task
Multi-label: each text gets any number of the labels below (one sigmoid per label).
{thresholds_text(calibration)} The thresholds are in `calibration.json`.

## Encoder
{_encoder_named(encoder)}
({encoder["origin"]}), {_how_trained(encoder, "classification")}{_trained_in(encoder)}.

## Data
Data set `{params["data"]["name"]}`: {text_columns(params["data"])}, label
column `{params["data"]["label_column"]}`. Prepared splits:

{hashes}

## Metrics
| split | n | micro F1 | macro F1 | samples F1 | subset accuracy |
| --- | --- | --- | --- | --- | --- |
{table}

Per label, on test:

| label | precision | recall | F1 | support | threshold |
| --- | --- | --- | --- | --- | --- |
{rows}

## Parameters
```yaml
{yaml.safe_dump(params, sort_keys=False).strip()}
```

## Intended use and limits
Tags texts like those it was trained on with the labels above; it knows no other label.
{_long_texts(params["tokenize"])} Labels with few training examples are learnt poorly: see
their F1 above. Metrics were measured on {test["n"]} held-out texts.

## Loading it safely
This package is a program: its SavedModel is a graph that TensorFlow runs. Load it only from a
source you trust. Check the manifest's sha256 against the one published by whoever built the
package (`--expect-sha256`, `BERTCLF_PACKAGE_SHA256`).
"""


def regression_card(
    params: dict, metrics: dict, encoder: dict, data_hashes: dict, calibration: dict
) -> str:
    test, val = metrics["test"], metrics["val"]
    hashes = "\n".join(f"- `{name}`: sha256 `{digest}`" for name, digest in data_hashes.items())
    table = "\n".join(
        f"| {split} | {m['n']} | {_value(m['pearson'])} | {_value(m['spearman'])} | "
        f"{m['rmse']:.4f} | {m['mae']:.4f} | {_value(m['r2'])} |"
        for split, m in (("test", test), ("val", val))
    )
    return f"""# Model card: bertclf text regression model

## Task
Regression: each text gets a score (one output, trained with mean squared error).

## Encoder
{_encoder_named(encoder)}
({encoder["origin"]}), {_how_trained(encoder, "regression")}{_trained_in(encoder)}.

## Data
Data set `{params["data"]["name"]}`: {text_columns(params["data"])}, score
column `{params["data"]["label_column"]}`. Prepared splits:

{hashes}

## Metrics
| split | n | Pearson | Spearman | RMSE | MAE | R² |
| --- | --- | --- | --- | --- | --- | --- |
{table}

## Parameters
```yaml
{yaml.safe_dump(params, sort_keys=False).strip()}
```

## Intended use and limits
Scores texts like those it was trained on, on the scale of its training scores; a score
outside that range is an extrapolation. {_long_texts(params["tokenize"])} Metrics were measured
on {test["n"]} held-out texts.

## Loading it safely
This package is a program: its SavedModel is a graph that TensorFlow runs. Load it only from a
source you trust. Check the manifest's sha256 against the one published by whoever built the
package (`--expect-sha256`, `BERTCLF_PACKAGE_SHA256`).
"""


def _value(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


TASK_CARDS = {
    SINGLE_LABEL: single_label_card,
    MULTI_LABEL: multi_label_card,
    REGRESSION: regression_card,
}
