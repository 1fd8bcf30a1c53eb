"""MODEL_CARD.md for a packaged model: encoder, data, params, metrics, intended use and limits."""

import yaml

from bertclf.metrics import HEADLINE_KEYS, standard_error


def model_card(params: dict, metrics: dict, encoder: dict, data_hashes: dict[str, str]) -> str:
    test, val = metrics["test"], metrics["val"]
    rows = "\n".join(
        f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        for name, m in test["per_class"].items()
    )
    hashes = "\n".join(f"- `{name}`: sha256 `{digest}`" for name, digest in data_hashes.items())
    return f"""# Model card: bertclf text classifier

## Encoder
{encoder["name"]} ({encoder["parameters"]:,} parameters), from `{encoder["source"]}`
({encoder["origin"]}), fine-tuned with a classification head.

## Data
Data set `{params["data"]["name"]}`: text column `{params["data"]["text_column"]}`, label
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


def model_card_fields(params: dict, metrics: dict, encoder: dict, data_hashes: dict) -> dict:
    """The model card's facts as JSON (model_card.json), for programs such as `bertclf serve`."""
    return {
        "encoder": encoder,
        "data": {"name": params["data"]["name"], "sha256": data_hashes},
        "metrics": {
            split: {key: metrics[split][key] for key in HEADLINE_KEYS} for split in ("test", "val")
        },
        "params": params,
        "long_texts": _long_texts(params["tokenize"]),
    }
