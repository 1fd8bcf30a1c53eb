"""Where training time goes at 128 and 256 tokens: issue 29's first measurement.

`python benchmarks/step_profile.py` times, each case in its own process and the cases
interleaved (ABAB...) over `--repeats` rounds, with the real MiniLM (models/pretrained, after
`make repro`):

- `step`: one shape of random token ids (no padding), the same tokens per batch at 128 and 256
  (batch 32 and 16), `train_on_batch` and `predict_on_batch`, with the encoder's dropout (0.1,
  which Keras' attention applies to the attention probabilities too) and without;
- `epochs`: `bench.py`'s training variant (320 reviews, length buckets of 32 up to 256, batch
  32) trained through `fit` for four epochs, each epoch's seconds: the same work every epoch
  after the first, which traces the step.

It writes docs/results/step_profile.json (every repeat, medians and spreads) and prints the
medians. Nothing is asserted: compare figures of one run.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import machine, section  # noqa: E402

OUT = ROOT / "docs/results/step_profile.json"
TOKENS_PER_BATCH = 4096
STEPS = 8
# name: (mode, length, dropout)
STEP_CASES = {
    f"{mode}_{length}_{'dropout' if dropout else 'no_dropout'}": (mode, length, dropout)
    for mode in ("train", "predict")
    for dropout in (True, False)
    for length in (128, 256)
    if mode == "train" or dropout
}
EPOCHS = 4


def step_case(mode: str, length: int, dropout: bool) -> dict:
    import bench
    import keras

    from bertclf.model import build_classifier
    from bertclf.training import compile_for_training

    encoder = bench.PRETRAINED
    config = json.loads((encoder / "config.json").read_text())
    if not dropout:
        config = {**config, "hidden_dropout_prob": 0.0}
    keras.utils.set_random_seed(0)
    model = build_classifier(config, section("head"), 2, encoder)
    compile_for_training(model, section("train"), 100)
    batch = TOKENS_PER_BATCH // length
    rng = np.random.default_rng(0)
    inputs = {
        "input_ids": rng.integers(1000, 30000, (batch, length)).astype("int32"),
        "attention_mask": np.ones((batch, length), "int32"),
    }
    labels = rng.integers(0, 2, batch)
    if mode == "train":
        step = lambda: model.train_on_batch(inputs, labels)  # noqa: E731
    else:
        step = lambda: model.predict_on_batch(inputs)  # noqa: E731
    for _ in range(3):  # the trace, oneDNN's kernels for this shape
        step()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    seconds = (time.perf_counter() - start) / STEPS
    return {
        "batch": batch,
        "length": length,
        "step_seconds": seconds,
        "tokens_per_second": TOKENS_PER_BATCH / seconds,
    }


def epochs_case() -> dict:
    import bench
    import keras

    from bertclf.batching import BucketedSequence
    from bertclf.tokenization import encode, load_tokenizer
    from bertclf.training import compile_for_training

    texts, labels = bench.train_reviews()
    tokenize = section("tokenize", max_length=bench.MAX_LENGTH, bucket_multiple=32)
    sequences = encode(load_tokenizer(bench.PRETRAINED), texts, tokenize).sequences
    data = BucketedSequence(sequences, np.array(labels), bench.BATCH, tokenize, seed=0)
    keras.utils.set_random_seed(0)
    model = bench.classifier_model(bench.PRETRAINED)
    compile_for_training(model, section("train", epochs=EPOCHS, batch_size=bench.BATCH), len(data))

    timer = bench.epoch_timer()
    model.fit(data.dataset(), epochs=EPOCHS, verbose=0, callbacks=[timer])
    return {"epoch_seconds": timer.seconds, "steps_per_epoch": len(data)}


def run(case: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", help="run one case (internal)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.case:
        import bertclf  # noqa: F401  (KERAS_BACKEND before Keras loads)

        result = epochs_case() if args.case == "epochs" else step_case(*STEP_CASES[args.case])
        print(json.dumps(result))
        return

    runs: dict[str, list[dict]] = {name: [] for name in (*STEP_CASES, "epochs")}
    for repeat in range(args.repeats):
        for name in runs:
            print(f"round {repeat + 1}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(run(name))
            results = {"machine": machine(), "repeats": repeat + 1, "runs": runs}
            OUT.write_text(json.dumps(results, indent=2) + "\n")  # a cut run keeps its rounds
    medians = {name: summary([r["tokens_per_second"] for r in runs[name]]) for name in STEP_CASES}
    later = [s for r in runs["epochs"] for s in r["epoch_seconds"][1:]]
    results["tokens_per_second"] = medians
    results["later_epoch_seconds"] = summary(later)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    for name, m in medians.items():
        print(f"{name:<26}{m['median']:>8.0f} tokens/s  ({m['min']:.0f}-{m['max']:.0f})")
    for mode in ("train", "predict"):
        ratio = medians[f"{mode}_256_dropout"]["median"] / medians[f"{mode}_128_dropout"]["median"]
        print(f"{mode}: 256 tokens at {ratio:.2f}x the tokens/s of 128")
    print(
        "fit over buckets, epochs after the first: "
        + ", ".join(f"{s:.1f}" for s in later)
        + " s (the same work each)"
    )
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
