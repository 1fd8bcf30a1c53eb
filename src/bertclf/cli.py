"""The `bertclf` command: predict with or serve a packaged model; compose params.yaml from conf/."""

import argparse
import itertools
import json
from pathlib import Path

from bertclf.errors import BertclfError, exits_cleanly


def predict(args: argparse.Namespace) -> None:
    """Stream the input in chunks of --chunk-rows; with --shard I/N keep every N-th chunk from
    the I-th, so N jobs together cover the file once."""
    import pandas as pd
    from tqdm import tqdm

    from bertclf.classifier import most_probable
    from bertclf.data import (
        TableWriter,
        read_table_chunks,
        require_columns,
        table_format,
        text_cells,
    )
    from bertclf.files import atomic_path

    shard, shards = parse_shard(args.shard)
    table_format(args.output)  # an unknown output type is refused before any work
    chunks = read_table_chunks(args.input, args.chunk_rows)
    first = next(chunks, None)  # the input's columns are checked before anything is written
    if first is not None:
        require_columns(
            first, args.input, {"--text-column": args.text_column, "--id-column": args.id_column}
        )
    columns = [c for c in (args.id_column, args.text_column) if c] + ["label", "probability"]
    if args.top_k:
        columns += ["top_labels", "top_probabilities"]
    classifier = None
    rows = 0
    with (
        atomic_path(args.output) as tmp,
        TableWriter(tmp, columns) as writer,
        tqdm(unit="row", desc="predict", disable=args.quiet) as bar,
    ):
        for number, chunk in enumerate(
            itertools.chain([first] if first is not None else [], chunks)
        ):
            if number % shards != shard:
                continue
            texts = text_cells(chunk, args.text_column, args.input).tolist()
            if classifier is None:
                from bertclf.classifier import Classifier  # TensorFlow: after the input is checked

                classifier = Classifier.load(args.model)
            probabilities = classifier.predict_proba(texts, batch_size=args.batch_size)
            out = pd.DataFrame(index=chunk.index)
            if args.id_column:
                out[args.id_column] = chunk[args.id_column]
            out[args.text_column] = texts
            out["label"] = classifier.classes_[probabilities.argmax(axis=1)]
            out["probability"] = probabilities.max(axis=1)
            if args.top_k:
                ranked = most_probable(probabilities, classifier.classes_, args.top_k)
                out["top_labels"] = [json.dumps([label for label, _ in row]) for row in ranked]
                out["top_probabilities"] = [json.dumps([p for _, p in row]) for row in ranked]
            writer.write(out)
            rows += len(out)
            bar.update(len(out))
    part = f" (shard {shard}/{shards})" if shards > 1 else ""
    print(f"wrote {rows} predictions to {args.output}{part}")


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {value!r}")
    return int(value)


def serve(args: argparse.Namespace) -> None:
    from bertclf.serve import Limits, serve

    limits = Limits(args.max_texts, args.max_chars, args.max_body_bytes, args.max_batch_texts)
    serve(Path(args.model), args.host, args.port, limits)


def parse_shard(value: str) -> tuple[int, int]:
    """'I/N' with 0 <= I < N."""
    try:
        shard, shards = (int(x) for x in value.split("/"))
    except ValueError:
        shard, shards = -1, 0
    if not 0 <= shard < shards:
        raise BertclfError(f"--shard {value}: expected I/N with 0 <= I < N, such as 0/4")
    return shard, shards


def evaluate(args: argparse.Namespace) -> None:
    from bertclf.data import read_table, require_columns, text_cells
    from bertclf.files import write_json
    from bertclf.labels import LabelMap

    table = read_table(args.input)
    require_columns(
        table, args.input, {"--text-column": args.text_column, "--label-column": args.label_column}
    )
    texts = text_cells(table, args.text_column, args.input).tolist()
    label_map = LabelMap.load(Path(args.model) / "labels.json")
    try:
        y_true = label_map.encode(table[args.label_column].astype(str).str.strip())
    except BertclfError as error:
        raise BertclfError(f"{args.input}: {error}") from None

    from bertclf.classifier import Classifier  # imports TensorFlow: after the input is checked
    from bertclf.metrics import by_length, classification_metrics

    classifier = Classifier.load(args.model)
    encoded = classifier.encode(texts)  # once: for the predictions and the texts' lengths
    probabilities = classifier.predict_encoded(encoded, args.batch_size, progress=True)
    classes = list(classifier.classes_)
    metrics = classification_metrics(y_true, probabilities, classes)
    long = encoded.long(classifier.tokenize.max_length)
    metrics["by_length"] = by_length(y_true, probabilities, classes, long)
    if args.output:
        write_json(args.output, metrics)
    for key in ("n", "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1"):
        print(f"{key:>16}: {metrics[key]:.4f}" if key != "n" else f"{key:>16}: {metrics[key]}")


def params(args: argparse.Namespace) -> None:
    from bertclf.config import compose_params

    if not Path(args.config_dir).is_dir():
        raise BertclfError(f"{args.config_dir}: config directory not found")
    compose_params(args.output, args.overrides, args.config_dir)
    print(f"composed {args.config_dir}/ into {args.output}")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="bertclf", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    p = commands.add_parser("predict", help="predict labels for a table of texts")
    p.add_argument("--model", required=True, help="package directory (models/package)")
    p.add_argument("--input", required=True, help="CSV, TSV, XLSX, Parquet or JSONL")
    p.add_argument("--output", required=True, help="output table; format by extension")
    p.add_argument("--text-column", default="text")
    p.add_argument("--id-column", default=None, help="kept in the output")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--chunk-rows", type=positive_int, default=1_000, help="rows read (and counted) at a time"
    )
    p.add_argument(
        "--shard",
        default="0/1",
        help="I/N: predict every N-th chunk from chunk I (I from 0), one of N parallel jobs",
    )
    p.add_argument(
        "--top-k",
        type=positive_int,
        default=None,
        help="add top_labels and top_probabilities: the K most probable, as JSON lists",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=predict)

    p = commands.add_parser("serve", help="serve a package over HTTP (POST /v1/predict)")
    p.add_argument("--model", required=True, help="package directory (models/package)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-texts", type=positive_int, default=256, help="texts a request")
    p.add_argument("--max-chars", type=positive_int, default=10_000, help="characters a text")
    p.add_argument("--max-body-bytes", type=positive_int, default=1_000_000, help="bytes a body")
    p.add_argument(
        "--max-batch-texts",
        type=positive_int,
        default=256,
        help="texts of concurrent requests merged into one model call (1: no merging)",
    )
    p.set_defaults(run=serve)

    p = commands.add_parser("evaluate", help="score a labelled table with a package")
    p.add_argument("--model", required=True, help="package directory (models/package)")
    p.add_argument("--input", required=True, help="CSV, TSV, XLSX, Parquet or JSONL")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--output", default=None, help="write every metric to this JSON file")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(run=evaluate)

    p = commands.add_parser("params", help="compose conf/ into params.yaml (as dvc exp run does)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=tiny")
    p.add_argument("--config-dir", default="conf")
    p.add_argument("--output", default="params.yaml")
    p.set_defaults(run=params)
    return root


@exits_cleanly
def main() -> None:
    args = parser().parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
