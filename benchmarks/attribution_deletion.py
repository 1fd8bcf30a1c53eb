"""Do token attributions point at the tokens that matter? Deletion: remove each text's k
most-attributed tokens and measure how far the predicted class's probability falls, against
removing k random tokens and the k tokens whose removal alone lowers it most (leave-one-out).

    python benchmarks/attribution_deletion.py --model models/package \\
        --texts data/prepared/test.parquet --n 200 --out docs/results/attribution_deletion.json

Methods: integrated gradients at the default setting (32 steps, [PAD] baseline) and a cheaper
one (8 steps), and leave-one-out (one forward pass per token: a text of n tokens costs n
sequences). A token is removed by taking its ids out of the window (the rest close up), and the
package's `token_ids` function answers on TensorFlow. Random: the mean over `--draws` draws.
Time per text: wall clock of each method on each text (after a warm-up), median and quartiles.
Writes one JSON file; nothing is asserted.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))

from harness import machine  # noqa: E402

from bertclf import Classifier  # noqa: E402
from bertclf.attributions import token_windows  # noqa: E402

KS = (1, 3, 5)


def probability_after_removal(classifier, windows, removed_sets, column: int) -> np.ndarray:
    """P(column) of the text with each set of token indices removed, one row per set."""
    from bertclf.batching import pad_batch
    from bertclf.prediction import probabilities

    ids, token_of = windows.ids[0][windows.mask[0] == 1], windows.token_of[0][windows.mask[0] == 1]
    sequences = [ids[~np.isin(token_of, list(removed))] for removed in removed_sets]
    logits = []
    for start in range(0, len(sequences), 64):
        batch = sequences[start : start + 64]
        padded = pad_batch(batch, 1, max(len(s) for s in batch))
        logits.append(classifier.model.predict_on_batch(padded))
    answers = probabilities(np.concatenate(logits), classifier.task.name)
    return answers[:, column]


def beats(drops: list[float], random_drops: list[float]) -> float:
    """The share of texts whose probability fell further than by random removal."""
    return float(np.mean(np.asarray(drops) > np.asarray(random_drops)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models/package")
    parser.add_argument("--texts", default="data/prepared/test.parquet")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    classifier = Classifier.load(args.model, runtime="tensorflow")
    if classifier.tokenize.long_text == "chunks" or classifier.task.name != "single_label":
        sys.exit("this benchmark removes tokens from one window of a single-label model")
    texts = pd.read_parquet(args.texts)["text"].head(args.n).tolist()
    rng = np.random.default_rng(args.seed)
    settings = {"ig_32_steps": {"steps": 32}, "ig_8_steps": {"steps": 8}}
    classifier.explain(texts[0], steps=8)  # the warm-up: loading and tracing
    drops = {name: {k: [] for k in KS} for name in [*settings, "leave_one_out", "random"]}
    seconds = {name: [] for name in [*settings, "leave_one_out"]}
    skipped = 0
    for number, text in enumerate(texts):
        windows = token_windows(classifier.tokenizer, text, classifier.tokenize)
        n_tokens = len(windows.tokens)
        if n_tokens <= max(KS):
            skipped += 1
            continue
        rankings, column = {}, None
        for name, setting in settings.items():
            started = time.perf_counter()
            (result,) = classifier.explain(text, **setting)
            seconds[name].append(time.perf_counter() - started)
            (explained,) = result["explained"]
            column = list(classifier.classes_).index(explained["label"])
            rankings[name] = np.argsort(-np.asarray(explained["attributions"]), kind="stable")
        started = time.perf_counter()
        alone = probability_after_removal(
            classifier, windows, [{i} for i in range(n_tokens)], column
        )
        seconds["leave_one_out"].append(time.perf_counter() - started)
        rankings["leave_one_out"] = np.argsort(alone, kind="stable")  # lowest P first
        before = probability_after_removal(classifier, windows, [set()], column)[0]
        for name, ranking in rankings.items():
            after = probability_after_removal(
                classifier, windows, [set(ranking[:k].tolist()) for k in KS], column
            )
            for k, value in zip(KS, after, strict=True):
                drops[name][k].append(float(before - value))
        for k in KS:
            draws = [
                set(rng.choice(n_tokens, k, replace=False).tolist()) for _ in range(args.draws)
            ]
            after = probability_after_removal(classifier, windows, draws, column)
            drops["random"][k].append(float(before - after.mean()))
        if number % 20 == 0:
            print(f"{number + 1}/{len(texts)} texts", flush=True)

    def summary(values: list[float]) -> dict:
        values = np.asarray(values)
        return {"mean": float(values.mean()), "standard_error": float(values.std(ddof=1) /
                np.sqrt(len(values))), "median": float(np.median(values))}  # fmt: skip

    result = {
        "machine": machine(),
        "model": args.model,
        "texts": args.texts,
        "n_texts": len(texts) - skipped,
        "skipped_with_at_most_5_tokens": skipped,
        "random_draws_per_text": args.draws,
        "drop_in_predicted_probability": {
            name: {str(k): summary(values) for k, values in by_k.items()}
            for name, by_k in drops.items()
        },
        "beats_random_share": {
            name: {
                str(k): float(np.mean(np.asarray(drops[name][k]) > np.asarray(drops["random"][k])))
                for k in KS
            }
            for name in [*settings, "leave_one_out"]
        },  # fmt: skip
        "seconds_per_text": {
            name: {
                "median": float(np.median(v)),
                "q1": float(np.percentile(v, 25)),
                "q3": float(np.percentile(v, 75)),
            }
            for name, v in seconds.items()
        },  # fmt: skip
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name, by_k in result["drop_in_predicted_probability"].items():
        cells = "  ".join(
            f"k={k}: {v['mean']:.3f} ± {v['standard_error']:.3f}" for k, v in by_k.items()
        )
        time_ = result["seconds_per_text"].get(name, {}).get("median")
        print(f"{name:14s} {cells}" + (f"  {time_:.3f} s/text" if time_ else ""))


if __name__ == "__main__":
    main()
