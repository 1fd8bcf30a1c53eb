"""The prepare stage's logic: read the labelled table(s), validate, clean, de-duplicate and
split them into stratified train, validation and test sets.

Nothing here imports TensorFlow: bad input fails fast, with one line naming the file,
column or row.
"""

import html
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from bertclf.config import CleanConfig, DataConfig
from bertclf.errors import BertclfError
from bertclf.tables import read_table, require_columns, text_cells

_URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_HTML_TAG = re.compile(r"<[^>]+>")
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")


def clean_text(text: str, options: CleanConfig) -> str:
    """Apply the configured cleaning steps. With every option off, only outer whitespace goes."""
    if options.remove_html:
        text = html.unescape(_HTML_TAG.sub(" ", text))
    if options.remove_urls:
        text = _URL.sub(" ", text)
    if options.remove_punctuation:
        text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    if options.remove_digits:
        text = _DIGITS.sub(" ", text)
    if options.lowercase:
        text = text.lower()
    if options.remove_stopwords:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        text = " ".join(w for w in text.split() if w.lower() not in ENGLISH_STOP_WORDS)
    if (
        options.remove_html
        or options.remove_urls
        or options.remove_punctuation
        or options.remove_digits
    ):
        text = _SPACES.sub(" ", text)
    return text.strip()


@dataclass
class PrepareReport:
    """What `prepare` did to the rows it read: written to reports/prepare.json."""

    rows_read: dict[str, int] = field(default_factory=dict)
    empty_texts_dropped: int = 0
    duplicates_dropped: int = 0
    conflicting_labels_dropped: int = 0
    conflicting_label_examples: list[str] = field(default_factory=list)
    texts_with_replaced_bytes: int = 0
    train_texts_in_test_dropped: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)


def load_labelled(path: str, cfg: DataConfig, report: PrepareReport) -> pd.DataFrame:
    """Read a labelled table into columns id, text, label (all strings), cleaned, no empty texts."""
    df = read_table(path, cfg.decode_errors)
    require_columns(
        df,
        path,
        {
            "data.text_column": cfg.text_column,
            "data.label_column": cfg.label_column,
            "data.id_column": cfg.id_column,
        },
    )
    if df.empty:
        raise BertclfError(f"{path}: the table has no rows")
    report.rows_read[str(path)] = len(df)
    labels = df[cfg.label_column]
    missing = labels.map(lambda v: v is None or (not isinstance(v, str) and pd.isna(v)) or v == "")
    if missing.any():
        row = int(missing.to_numpy().nonzero()[0][0])
        raise BertclfError(f"{path}: row {row + 1} has no label in column '{cfg.label_column}'")
    ids = (
        df[cfg.id_column].astype(str)
        if cfg.id_column
        else pd.Series([f"{Path(path).stem}:{row}" for row in range(1, len(df) + 1)])
    )
    repeated = ids[ids.duplicated()]
    if not repeated.empty:
        raise BertclfError(
            f"{path}: id {repeated.iloc[0]!r} appears more than once in column '{cfg.id_column}'"
        )
    table = pd.DataFrame(
        {
            "id": ids.to_numpy(),
            "text": text_cells(df, cfg.text_column, path)
            .map(lambda t: clean_text(t, cfg.clean))
            .to_numpy(),
            "label": labels.astype(str).str.strip().to_numpy(),
        }
    )
    report.texts_with_replaced_bytes += int(table["text"].str.contains("\ufffd").sum())
    empty = table["text"].str.strip() == ""
    if empty.any() and cfg.on_empty == "error":
        row = int(empty.to_numpy().nonzero()[0][0])
        raise BertclfError(
            f"{path}: row {row + 1} has an empty text in column '{cfg.text_column}' "
            "(data.on_empty=drop drops such rows)"
        )
    report.empty_texts_dropped += int(empty.sum())
    table = table[~empty]
    if table.empty:
        raise BertclfError(f"{path}: every text in column '{cfg.text_column}' is empty")
    return drop_duplicates(table, report, path, cfg.on_conflict)


def drop_duplicates(
    table: pd.DataFrame, report: PrepareReport, path: str, on_conflict: str
) -> pd.DataFrame:
    """Keep the first of exact duplicate texts. A text given two different labels is dropped
    with all its rows and reported (on_conflict "drop"), or refused ("error")."""
    conflicting = table.groupby("text")["label"].transform("nunique") > 1
    if conflicting.any():
        first = table[conflicting].iloc[0]
        rows = table[conflicting & (table["text"] == first["text"])]
        example = f"ids {', '.join(rows['id'])} with labels {', '.join(sorted(set(rows['label'])))}"
        if on_conflict == "error":
            raise BertclfError(
                f"{path}: the same text has different labels ({example}); "
                "data.on_conflict=drop drops such texts"
            )
        report.conflicting_label_examples.append(example)
    report.conflicting_labels_dropped += int(conflicting.sum())
    table = table[~conflicting]
    duplicated = table["text"].duplicated()
    report.duplicates_dropped += int(duplicated.sum())
    return table[~duplicated].reset_index(drop=True)


def check_class_sizes(table: pd.DataFrame, path: str, needed: int) -> None:
    counts = table["label"].value_counts()
    if len(counts) < 2:
        raise BertclfError(
            f"{path}: the label column has one class ({counts.index[0]!r}); need two or more"
        )
    small = counts[counts < needed]
    if not small.empty:
        label, count = small.index[0], int(small.iloc[0])
        raise BertclfError(
            f"{path}: class {label!r} has {count} example(s); "
            f"the splits need at least {needed} per class"
        )


def split(
    table: pd.DataFrame, test: pd.DataFrame | None, cfg: DataConfig, seed: int, path: str
) -> dict[str, pd.DataFrame]:
    """Stratified train/val/test splits; fractions are of the whole table.

    With a separate test table, train texts that also appear in it are dropped from train.
    """
    n = len(table)
    if test is None:
        check_class_sizes(table, path, needed=3)
        rest, test = train_test_split(
            table,
            test_size=max(1, round(cfg.test_fraction * n)),
            stratify=table["label"],
            random_state=seed,
        )
    else:
        check_class_sizes(table, path, needed=2)
        rest = table
    val_size = max(1, round(cfg.val_fraction * n))
    try:
        train, val = train_test_split(
            rest, test_size=val_size, stratify=rest["label"], random_state=seed
        )
    except ValueError as error:
        raise BertclfError(f"{path}: cannot split off validation rows: {error}") from None
    splits = {"train": train, "val": val, "test": test}
    return {name: part.sort_index().reset_index(drop=True) for name, part in splits.items()}


def drop_texts_in(train: pd.DataFrame, test: pd.DataFrame, report: PrepareReport) -> pd.DataFrame:
    in_test = train["text"].isin(set(test["text"]))
    report.train_texts_in_test_dropped += int(in_test.sum())
    return train[~in_test].reset_index(drop=True)


def prepare_splits(cfg: DataConfig, seed: int) -> tuple[dict[str, pd.DataFrame], PrepareReport]:
    """Read, validate, clean and de-duplicate the configured table(s), then split them."""
    report = PrepareReport()
    table = load_labelled(cfg.path, cfg, report)
    test = None
    if cfg.test_path:
        try:
            test = load_labelled(cfg.test_path, cfg, report)
        except BertclfError as error:  # the user may never have named this file
            raise BertclfError(
                f"{error} (this is data.test_path, the separate test table of data "
                f"'{cfg.name}'; for one table split into all three sets use data=table, or "
                "set data.test_path=null)"
            ) from None
        shared = set(table["id"]) & set(test["id"])
        if shared:
            raise BertclfError(
                f"{cfg.test_path}: id {sorted(shared)[0]!r} is also an id in {cfg.path}"
            )
        table = drop_texts_in(table, test, report)
    splits = split(table, test, cfg, seed, cfg.path)
    report.split_sizes = {name: len(part) for name, part in splits.items()}
    report.class_counts = {
        name: {str(k): int(v) for k, v in part["label"].value_counts().sort_index().items()}
        for name, part in splits.items()
    }
    return splits, report
