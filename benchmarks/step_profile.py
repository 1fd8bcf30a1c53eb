"""Where training time goes at 128 and 256 tokens: issue 29's first measurement.

`python benchmarks/step_profile.py` times, each case in its own process and the cases
interleaved (ABAB...) over `--repeats` rounds, with the real MiniLM (models/pretrained, after
`make repro`):

- `step`: one shape of random token ids (no padding), the same tokens per batch at 128 and 256
  (batch 32 and 16), `train_on_batch` and `predict_on_batch`, with the encoder's dropout (0.1,
  which Keras' attention applies to the attention probabilities too) and without;
- `epochs`, `epochs_repeated`: `bench.py`'s training variant (320 reviews, length buckets of 32
  up to 256, batch 32) trained through `fit` for four epochs, each epoch's seconds: the same
  work every epoch after the first, which traces the step. `epochs` feeds `fit` a new pass of
  the dataset each epoch (the feed before issue 29), `epochs_repeated` one repeated dataset
  with `steps_per_epoch` (the train stage's feed since).

It writes docs/results/step_profile.json (every repeat, medians and spreads) and prints the
medians; `--feeds-only` runs the two `fit` feeds alone and writes
docs/results/epoch_feeds.json. Nothing is asserted: compare figures of one run.
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import machine  # noqa: E402

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
EPOCH_CASES = {
    "epochs": "a new pass of the dataset each epoch",
    "epochs_repeated": "one repeated dataset, steps_per_epoch (the train stage's feed)",
}
FEEDS_OUT = ROOT / "docs/results/epoch_feeds.json"
OPS_OUT = ROOT / "docs/results/op_profile.json"
OP_STEPS = 4
# name: (mode, length, batch)
OP_CASES = {
    f"{mode}_{length}x{batch}": (mode, length, batch)
    for mode in ("train", "predict")
    for length in (128, 256)
    for batch in (16, 32)
}
# a TensorFlow op's event in the profiler's trace: "op/name:OpType" (oneDNN's own ops have a
# leading underscore: "_MklMatMul")
OP_EVENT = re.compile(r"^([^\s:]+):(_?[A-Z][A-Za-z0-9_]*)$")


def step_case(mode: str, length: int, dropout: bool) -> dict:
    import bench

    return bench.fixed_length_steps(bench.PRETRAINED, mode, length, STEPS, dropout)


def epochs_case(repeated: bool) -> dict:
    """Each epoch's seconds of `fit` over bench.py's bucketed reviews, fed a new pass of the
    dataset each epoch (Keras makes a new iterator every epoch), or one repeated dataset with
    `steps_per_epoch` (one iterator throughout), as the train stage feeds it now."""
    import bench

    return bench.train_epochs(bench.PRETRAINED, fixed=False, epochs=EPOCHS - 1, repeated=repeated)


def component(op_name: str) -> str:
    """The part of the model an op belongs to: a transformer layer's sublayer (the attention's
    own sublayers apart: query, key, value, its dropout of the probabilities, output), the
    embeddings, the head, or the optimizer."""
    if op_name.startswith("adam_w/"):
        return "optimizer"
    parts = [re.sub(r"(_\d+)+$", "", part) for part in op_name.split("/")]
    layer = next((i for i, part in enumerate(parts) if part.startswith("transformer_layer")), None)
    if layer is None:
        return "embeddings" if any("embeddings" in part for part in parts) else "head and loss"
    inner = parts[layer + 1 : layer + 3]
    return "/".join(inner if inner[0] == "self_attention_layer" else inner[:1])


def op_case(mode: str, length: int, batch: int) -> dict:
    """Milliseconds a step of each TensorFlow op type, and of each part of the model, over
    OP_STEPS steps under TensorFlow's profiler (host tracer level 3: one event per op run).
    Op times are summed over TensorFlow's threads, so they add up to more than the step."""
    import tempfile

    import bench
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    step = bench.fixed_length_step(bench.PRETRAINED, mode, length, batch)
    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=3, python_tracer_level=0)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir, options=options)
        start = time.perf_counter()
        for _ in range(OP_STEPS):
            step()
        seconds = time.perf_counter() - start
        tf.profiler.experimental.stop()
        (trace,) = Path(logdir).glob("**/*.xplane.pb")
        space = xplane_pb2.XSpace.FromString(trace.read_bytes())
    by_type, by_component, by_pass = Counter(), Counter(), Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                op = OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
                if not op:
                    continue
                milliseconds = event.duration_ps / 1e9 / OP_STEPS
                backward = op.group(1).startswith("gradient_tape/")
                by_type[op.group(2)] += milliseconds
                by_component[component(op.group(1).removeprefix("gradient_tape/"))] += milliseconds
                by_pass["backward" if backward else "forward or update"] += milliseconds
    return {
        "mode": mode,
        "length": length,
        "batch": batch,
        "profiled_step_ms": seconds * 1000 / OP_STEPS,
        "op_ms": dict(by_type.most_common()),
        "component_ms": dict(by_component.most_common()),
        "pass_ms": dict(by_pass),
    }


def op_table(cases: dict[str, dict], key: str, rows: int) -> str:
    """Microseconds per token of the `rows` costliest entries of `key`, one column a case."""
    names = sorted(cases)
    total = Counter()
    for case in cases.values():
        total.update(case[key])
    lines = [
        "| | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for name, _ in total.most_common(rows):
        cells = [
            f"{cases[c][key].get(name, 0) * 1000 / (cases[c]['length'] * cases[c]['batch']):.1f}"
            for c in names
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(case: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def profile_ops() -> None:
    """Each case of OP_CASES once, in its own process; prints the tables docs/speed.md shows."""
    cases = {}
    for name in OP_CASES:
        print(f"{name} ...", file=sys.stderr, flush=True)
        cases[name] = run(name)
        results = {"machine": machine(), "steps": OP_STEPS, "cases": cases}
        OPS_OUT.write_text(json.dumps(results, indent=2) + "\n")
    for mode in ("train", "predict"):
        of_mode = {name: case for name, case in cases.items() if case["mode"] == mode}
        print(f"\n{mode}: microseconds per token, by op type\n")
        print(op_table(of_mode, "op_ms", 12))
        print(f"\n{mode}: microseconds per token, by part of the model\n")
        print(op_table(of_mode, "component_ms", 12))
    print(f"wrote {OPS_OUT.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", help="run one case (internal)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--feeds-only",
        action="store_true",
        help=f"only the two `fit` feeds, written to {FEEDS_OUT.relative_to(ROOT)}",
    )
    parser.add_argument(
        "--ops",
        action="store_true",
        help=f"per-op profiles of the 128/256 x 16/32 grid, to {OPS_OUT.relative_to(ROOT)}",
    )
    args = parser.parse_args()
    if args.ops:
        return profile_ops()
    if args.case:
        import bertclf  # noqa: F401  (KERAS_BACKEND before Keras loads)

        if args.case in OP_CASES:
            result = op_case(*OP_CASES[args.case])
        elif args.case in EPOCH_CASES:
            result = epochs_case(repeated=args.case == "epochs_repeated")
        else:
            result = step_case(*STEP_CASES[args.case])
        print(json.dumps(result))
        return

    cases, out = (EPOCH_CASES, FEEDS_OUT) if args.feeds_only else ((*STEP_CASES, *EPOCH_CASES), OUT)
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for repeat in range(args.repeats):
        for name in runs:
            print(f"round {repeat + 1}: {name} ...", file=sys.stderr, flush=True)
            runs[name].append(run(name))
            results = {"machine": machine(), "repeats": repeat + 1, "runs": runs}
            out.write_text(json.dumps(results, indent=2) + "\n")  # a cut run keeps its rounds
    steps = [name for name in cases if name in STEP_CASES]
    medians = {name: summary([r["tokens_per_second"] for r in runs[name]]) for name in steps}
    results["tokens_per_second"] = medians
    for name, m in medians.items():
        print(f"{name:<26}{m['median']:>8.0f} tokens/s  ({m['min']:.0f}-{m['max']:.0f})")
    for mode in ("train", "predict") if steps else ():
        ratio = medians[f"{mode}_256_dropout"]["median"] / medians[f"{mode}_128_dropout"]["median"]
        print(f"{mode}: 256 tokens at {ratio:.2f}x the tokens/s of 128")
    for name in EPOCH_CASES:
        later = [s for r in runs[name] for s in r["epoch_seconds"][1:]]
        results[f"{name}_later_epoch_seconds"] = summary(later)
        print(
            f"fit, {EPOCH_CASES[name]}, epochs after the first: "
            + ", ".join(f"{s:.1f}" for s in later)
            + " s (the same work each)"
        )
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
