"""The fixed cost of a fine-tuning epoch on a small table (issue 50, item 4): the seed's sheet
(18 training texts, 2 steps an epoch) fine-tuned for `--epochs` epochs with the real MiniLM
(models/pretrained, after `dvc repro pretrained`), each run in its own process, the variants
interleaved over `--repeats` rounds:

- `before`: the loop as it was: every epoch start set TensorFlow's global seed as well
  (`keras.utils.set_random_seed`, which clears TensorFlow's kernel caches, so the epoch's first
  step re-instantiated the traced training step), and the training state was saved after
  every epoch (train.checkpoint_every_seconds=0);
- `after`: the loop as it is (Python's and NumPy's seeds and the dropout states per epoch; the
  state saved once 60 s have passed).

Each run records every epoch's seconds, the seconds of the epochs after the first (which traces
the step in both variants), and a digest of the trained weights: equal digests show that the
change left the arithmetic, and so the default run's metrics, as they were.

    python benchmarks/epoch_cost.py --epochs 8 --repeats 3

Writes docs/results/epoch_cost.json (every run, medians, spreads and the ratio) after each run.
Nothing is asserted: compare figures of one run.
"""

import argparse
import dataclasses
import hashlib
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from harness import machine, news_sample_section, section  # noqa: E402

RESULTS = ROOT / "docs/results/epoch_cost.json"
PRETRAINED = ROOT / "models/pretrained"
VARIANTS = ("before", "after")


def one_run(variant: str, epochs: int) -> dict:
    """Fine-tune the sheet in this process; the figures as a dict."""
    import keras
    import numpy as np
    from small_data import cache  # a split's token cache, as the tokenize stage writes it

    from bertclf import training
    from bertclf.checkpoint import Checkpoint
    from bertclf.labels import LabelMap
    from bertclf.prepare import prepare_splits
    from bertclf.tokenization import load_tokenizer

    interval = 60
    if variant == "before":
        interval = 0
        kept = training.reseed

        def reseed(model, seed, epoch):  # the global seeds as keras.utils sets them, then ours
            keras.utils.set_random_seed(seed * 1_000 + epoch)
            kept(model, seed, epoch)

        training.reseed = reseed
    splits, _ = prepare_splits(news_sample_section(), 42, section("task"))
    label_map = LabelMap.fit(splits["train"]["label"])
    tokenize = section("tokenize")
    tokenizer = load_tokenizer(PRETRAINED)

    train = dataclasses.replace(
        section("train"),
        epochs=epochs,
        min_steps=0,
        early_stopping_patience=epochs,  # every epoch runs
        checkpoint_every_seconds=interval,
    )

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.starts = []

        def on_epoch_begin(self, epoch, logs=None):
            self.starts.append(time.perf_counter())

    times = EpochTimes()
    with tempfile.TemporaryDirectory() as scratch:
        model, _ = training.train_classifier(
            PRETRAINED,
            label_map,
            cache(tokenizer, splits["train"], label_map, tokenize),
            cache(tokenizer, splits["val"], label_map, tokenize),
            train,
            section("head"),
            tokenize,
            42,
            callbacks=[times],
            checkpoint=Checkpoint(Path(scratch) / "train-key"),
        )
        end = time.perf_counter()
    bounds = [*times.starts, end]  # an epoch: from its start to the next one's (checkpoint in)
    seconds = [round(b - a, 2) for a, b in itertools.pairwise(bounds)]
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return {
        "variant": variant,
        "epoch_seconds": seconds,
        "later_epochs_median": round(statistics.median(seconds[1:]), 2),
        "train_seconds": round(end - bounds[0], 1),
        "weights_sha256": digest.hexdigest(),
    }


def summary(runs: list[dict]) -> dict:
    found = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        later = [r["later_epochs_median"] for r in mine]
        total = [r["train_seconds"] for r in mine]
        found[variant] = {
            "runs": len(mine),
            "later_epoch_seconds_median": statistics.median(later),
            "later_epoch_seconds_range": [min(later), max(later)],
            "train_seconds_median": statistics.median(total),
            "train_seconds_range": [min(total), max(total)],
        }
    if len(found) == 2:
        before, after = found["before"], found["after"]
        found["later_epoch_ratio_before_over_after"] = round(
            before["later_epoch_seconds_median"] / after["later_epoch_seconds_median"], 2
        )
        found["train_ratio_before_over_after"] = round(
            before["train_seconds_median"] / after["train_seconds_median"], 2
        )
        found["same_weights"] = len({r["weights_sha256"] for r in runs}) == 1
    return found


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--epochs", type=int, default=8)
    options.add_argument("--repeats", type=int, default=3)
    options.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one_run(args.one, args.epochs)), flush=True)
        return
    results = {"machine": machine(), "epochs": args.epochs, "runs": []}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            done = subprocess.run(
                [sys.executable, __file__, "--one", variant, "--epochs", str(args.epochs)],
                capture_output=True,
                text=True,
                check=True,
            )
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
            results["runs"].append(json.loads(line.removeprefix("RESULT ")))
            results["summary"] = summary(results["runs"])
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            print(json.dumps(results["runs"][-1]), flush=True)
    print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
    main()
