"""The `bertclf` command: predict with a packaged model, and compose params.yaml from conf/."""

import argparse
from pathlib import Path

from bertclf.errors import BertclfError, exits_cleanly


def predict(args: argparse.Namespace) -> None:
    import pandas as pd

    from bertclf.data import read_table, require_columns, table_format, text_cells, write_table
    from bertclf.files import atomic_path

    table_format(args.output)  # refuse an unknown output type before any work
    table = read_table(args.input)
    require_columns(
        table, args.input, {"--text-column": args.text_column, "--id-column": args.id_column}
    )
    texts = text_cells(table, args.text_column, args.input).tolist()

    from bertclf.classifier import Classifier  # imports TensorFlow: after the input is checked

    classifier = Classifier.load(args.model)
    probabilities = classifier.predict_proba(texts, batch_size=args.batch_size, progress=True)
    out = pd.DataFrame()
    if args.id_column:
        out[args.id_column] = table[args.id_column].to_numpy()
    out[args.text_column] = texts
    out["label"] = classifier.classes_[probabilities.argmax(axis=1)]
    out["probability"] = probabilities.max(axis=1)
    with atomic_path(args.output) as tmp:
        write_table(out, tmp)
    print(f"wrote {len(out)} predictions to {args.output}")


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
    from bertclf.metrics import classification_metrics

    classifier = Classifier.load(args.model)
    probabilities = classifier.predict_proba(texts, batch_size=args.batch_size, progress=True)
    metrics = classification_metrics(y_true, probabilities, list(classifier.classes_))
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
    p.set_defaults(run=predict)

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
