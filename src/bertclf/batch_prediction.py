"""The rows `bertclf predict` writes, chunk by chunk: which input columns it keeps, the texts it
reads, and the prediction columns it adds. The batch CLI and its Ray Data engine
(`ray_predict`) share them."""

import argparse
import json

from bertclf.errors import BertclfError


def input_columns(args: argparse.Namespace) -> list[str]:
    """The input's columns that the output keeps: the id, the text and the second text."""
    return [c for c in (args.id_column, args.text_column, args.text_pair_column) if c]


def output_columns(args: argparse.Namespace, task) -> list[str]:
    columns = input_columns(args) + task.output_columns()
    if args.top_k:
        columns += ["top_labels", "top_probabilities"]
    return columns


def prediction_frame(
    args: argparse.Namespace, classifier, chunk, texts: list[str], output_format, pairs=None
):
    """One chunk's rows of `bertclf predict`'s output (`pairs`: the chunk's second texts)."""
    import pandas as pd

    from bertclf.classifier import most_probable

    check_pair_option(args, classifier)
    encoded = classifier.encode(texts, pairs)
    probabilities = classifier.predict_encoded(encoded, args.batch_size)
    out = pd.DataFrame(index=chunk.index)
    if args.id_column:
        out[args.id_column] = chunk[args.id_column]
    out[args.text_column] = texts
    if pairs is not None:
        out[args.text_pair_column] = pairs
    rows = classifier.task.output_rows(
        lambda p: classifier.decide(p, args.threshold),
        probabilities,
        as_lists=output_format in (".jsonl", ".parquet"),
        separator=args.label_separator,
    )
    for column, values in rows.items():
        out[column] = values
    if args.top_k:
        ranked = most_probable(probabilities, classifier.classes_, args.top_k)
        out["top_labels"] = [json.dumps([label for label, _ in row]) for row in ranked]
        out["top_probabilities"] = [json.dumps([p for _, p in row]) for row in ranked]
    return out


def check_pair_option(args: argparse.Namespace, model) -> None:
    """--text-pair-column is given exactly when the package's model takes text pairs (`model`:
    a Classifier, or the Package it is loaded from)."""
    if model.text_pair and not args.text_pair_column:
        raise BertclfError(
            f"{args.model}: the model takes text pairs; name the second text's column with "
            "--text-pair-column"
        )
    if args.text_pair_column and not model.text_pair:
        raise BertclfError(
            f"{args.model}: the model takes one text per example; drop --text-pair-column "
            f"{args.text_pair_column}"
        )


def input_texts(args: argparse.Namespace, table) -> tuple[list[str], list[str] | None]:
    """The texts of a table read by `predict` or `evaluate`, and with --text-pair-column their
    second texts; a blank one is refused naming its row and column."""
    from bertclf.tables import refuse_blank_texts, text_cells

    found = []
    for column in (args.text_column, args.text_pair_column):
        if column:
            texts = text_cells(table, column, args.input)
            refuse_blank_texts(texts, column, args.input)
            found.append(texts.tolist())
    return found[0], found[1] if len(found) > 1 else None
