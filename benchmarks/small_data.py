"""Small tables: test accuracy of the default recipe against `train.min_steps`, on the seed's
own 30-row sheet and on 100- and 500-row samples of the default data, over seeds, beside the
TF-IDF baseline on the same splits. Real MiniLM (models/pretrained, from `dvc repro
pretrained`); every figure of one run is measured in that run.

    python benchmarks/small_data.py --min-steps 0 100 200 --seeds 42 43 44

Writes docs/results/small_data.json after every training run, so that a cut run keeps what it
measured.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from harness import NEWS_SAMPLE, machine, section  # noqa: E402

from bertclf.baseline import baseline_probabilities, fit_baseline  # noqa: E402
from bertclf.labels import LabelMap  # noqa: E402
from bertclf.prepare import prepare_splits  # noqa: E402
from bertclf.tokenization import TokenCache, encode, load_tokenizer  # noqa: E402

PRETRAINED = ROOT / "models/pretrained"
RESULTS = ROOT / "docs/results/small_data.json"


def datasets(scratch: Path) -> dict:
    """name -> the data section: the seed's sheet as conf/data/news_sample.yaml reads it, and
    samples of the default training reviews (stratified by nothing: as a user would cut one)."""
    reviews = pd.read_parquet(ROOT / "data/raw/fine_food/train.parquet")
    found = {
        "news_sample (30 rows)": section(
            "data",
            name="news_sample",
            path=str(NEWS_SAMPLE),
            test_path=None,
            text_column="EXCERPT",
            label_column="TAG",
            id_column="ID",
            val_fraction=0.2,
            test_fraction=0.2,
        )
    }
    for rows in (100, 500):
        path = scratch / f"fine_food_{rows}.parquet"
        reviews.sample(rows, random_state=0).to_parquet(path, index=False)
        found[f"fine_food ({rows} rows)"] = section(
            "data",
            name="table",
            path=str(path),
            test_path=None,
            id_column=None,
            val_fraction=0.2,
            test_fraction=0.2,
        )
    return found


def cache(tokenizer, frame: pd.DataFrame, label_map: LabelMap, tokenize) -> TokenCache:
    encoded = encode(tokenizer, frame["text"].tolist(), tokenize)
    labels = label_map.encode(frame["label"])[encoded.text_index]
    return TokenCache(frame["id"].to_numpy()[encoded.text_index], encoded.sequences, labels)


def run_one(data, seed: int, min_steps: int, tokenizer) -> dict:
    from bertclf.prediction import predict_logits
    from bertclf.training import train_classifier

    splits, _ = prepare_splits(data, seed, section("task"))
    label_map = LabelMap.fit(splits["train"]["label"])
    tokenize = section("tokenize")
    train = dataclasses.replace(section("train"), min_steps=min_steps)
    start = time.perf_counter()
    model, _ = train_classifier(
        PRETRAINED,
        label_map,
        cache(tokenizer, splits["train"], label_map, tokenize),
        cache(tokenizer, splits["val"], label_map, tokenize),
        train,
        section("head"),
        tokenize,
        seed,
    )
    seconds = time.perf_counter() - start
    test = cache(tokenizer, splits["test"], label_map, tokenize)
    logits = predict_logits(model, test.sequences, 64, tokenize)
    accuracy = float((logits.argmax(axis=1) == test.labels).mean())
    train_texts, train_targets = splits["train"]["text"], label_map.encode(splits["train"]["label"])
    baseline = fit_baseline(train_texts, train_targets, 10.0, seed, "single_label")
    truth = label_map.encode(splits["test"]["label"])
    base = baseline_probabilities(baseline, splits["test"]["text"], len(label_map.classes))
    return {
        "test_accuracy": accuracy,
        "baseline_accuracy": float((base.argmax(axis=1) == truth).mean()),
        "test_texts": len(splits["test"]),
        "train_texts": len(splits["train"]),
        "epochs_run": len(model.history.history["loss"]),
        "train_seconds": round(seconds, 1),
    }


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--min-steps", type=int, nargs="+", default=[0, 100, 200])
    options.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    options.add_argument("--table", action="store_true", help="print the committed results")
    args = options.parse_args()
    if args.table:
        print(table(json.loads(RESULTS.read_text())["runs"]))
        return
    import tempfile

    tokenizer = load_tokenizer(PRETRAINED)
    results = {"machine": machine(), "recipe": "conf/train/default.yaml", "runs": []}
    with tempfile.TemporaryDirectory() as scratch:
        for name, data in datasets(Path(scratch)).items():
            for min_steps in args.min_steps:
                for seed in args.seeds:
                    figures = run_one(data, seed, min_steps, tokenizer)
                    results["runs"].append(
                        {"data": name, "min_steps": min_steps, "seed": seed, **figures}
                    )
                    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
                    print(json.dumps(results["runs"][-1]), flush=True)
    print(table(results["runs"]))


def table(runs: list[dict]) -> str:
    """Markdown: mean test accuracy (and its range over the seeds) per data and min_steps."""
    frame = pd.DataFrame(runs)
    lines = [
        "| data | train.min_steps | test accuracy, mean (min-max) | baseline | epochs | s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (data, steps), group in frame.groupby(["data", "min_steps"], sort=False):
        accuracy = group["test_accuracy"]
        lines.append(
            f"| {data} | {steps} | {accuracy.mean():.3f} ({accuracy.min():.3f}-"
            f"{accuracy.max():.3f}) | {group['baseline_accuracy'].mean():.3f} | "
            f"{np.median(group['epochs_run']):.0f} | {group['train_seconds'].median():.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
