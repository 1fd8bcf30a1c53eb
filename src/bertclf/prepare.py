"""The prepare stage's logic: read the labelled table(s), validate, clean, de-duplicate and
split them into stratified train, validation and test sets.

Nothing here imports TensorFlow: bad input fails fast, with one line naming the file,
column or row.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from bertclf.cleaning import clean_text
from bertclf.config import DataConfig, TaskConfig
from bertclf.errors import BertclfError
from bertclf.labels import (
    MULTI_LABEL,
    REGRESSION,
    SCORE,
    SINGLE_LABEL,
    label_set,
    score_bins,
    score_values,
)
from bertclf.small_data import FEW_TEST_TEXTS
from bertclf.tables import data_lines, read_table, require_columns, text_cells


@dataclass
class PrepareReport:
    """What `prepare` did to the rows it read: written to reports/prepare.json."""

    rows_read: dict[str, int] = field(default_factory=dict)
    lines_read: dict[str, int] = field(default_factory=dict)  # CSV, TSV: after the header
    small_splits: list[str] = field(default_factory=list)  # warnings: figures on too few texts
    empty_texts_dropped: int = 0
    duplicates_dropped: int = 0
    conflicting_labels_dropped: int = 0
    conflicting_label_examples: list[str] = field(default_factory=list)
    texts_with_replaced_bytes: int = 0
    train_texts_in_test_dropped: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # multi-label only (absent from a single-label run's report)
    label_cardinality: dict[str, float] | None = None
    texts_without_labels: dict[str, int] | None = None
    rare_labels_dropped: dict[str, int] | None = None
    labels_absent_from: dict[str, list[str]] | None = None
    # regression only: each split's scores (n, mean, sd, min, max), and the texts whose
    # several scores were averaged (data.on_conflict=mean)
    score_summary: dict[str, dict[str, float]] | None = None
    conflicting_scores_averaged: int | None = None

    def rows_read_lines(self) -> list[str]:
        """`read 2,499 rows from 2,500 lines after the header of t.csv`, a line per table."""
        lines = []
        for path, rows in self.rows_read.items():
            count = self.lines_read.get(path)
            of = "" if count is None else f" from {count:,} lines after the header"
            lines.append(f"read {rows:,} rows{of} of {path}")
        return lines


# Joins a text's labels into the one string `drop_duplicates` compares (multi-label): a
# character no label holds.
LABEL_SET_KEY = "\x1f"


def single_labels(labels: pd.Series, path: str, column: str) -> pd.Series:
    """A single-label column as strings; an empty cell or a list is refused naming the row."""
    for row, value in enumerate(labels):
        if isinstance(value, list) or (hasattr(value, "__len__") and not isinstance(value, str)):
            raise BertclfError(
                f"{path}: row {row + 1} of column '{column}' holds a list of labels "
                f"({value!r}); this is a single-label run: set task=multi_label"
            )
        if value is None or (not isinstance(value, str) and pd.isna(value)) or value == "":
            raise BertclfError(f"{path}: row {row + 1} has no label in column '{column}'")
    return labels.astype(str).str.strip()


def load_labelled(
    path: str, cfg: DataConfig, report: PrepareReport, task: TaskConfig | None = None
) -> pd.DataFrame:
    """Read a labelled table into columns id, text, label (all strings), cleaned, no empty texts.
    Multi-label: `labels` holds each text's labels (a sorted tuple) and `label` their joined
    key, so duplicates and conflicts are found as in a single-label run."""
    columns = (cfg.text_column, cfg.text_pair_column, cfg.label_column, cfg.id_column)
    wanted = [c for c in columns if c]
    df = read_table(path, cfg.decode_errors, columns=wanted)
    require_columns(
        df,
        path,
        {
            "data.text_column": cfg.text_column,
            "data.text_pair_column": cfg.text_pair_column,
            "data.label_column": cfg.label_column,
            "data.id_column": cfg.id_column,
        },
    )
    if df.empty:
        raise BertclfError(f"{path}: the table has no rows")
    report.rows_read[str(path)] = len(df)
    lines = data_lines(path)
    if lines is not None:  # CSV, TSV: fewer rows than lines may be rows merged by a quote
        report.lines_read[str(path)] = lines
    task_data = data_of(task)
    label_keys, extra = task_data.read_labels(df[cfg.label_column], path, cfg.label_column, task)
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
            "label": label_keys.to_numpy(),
        }
    )
    text_columns = {"text": cfg.text_column}
    if cfg.pairs:  # the second text of a pair, cleaned as the first
        text_columns["text_pair"] = cfg.text_pair_column
        pair = text_cells(df, cfg.text_pair_column, path).map(lambda t: clean_text(t, cfg.clean))
        table.insert(2, "text_pair", pair.to_numpy())
    table = table.assign(**extra)
    for name, column in text_columns.items():
        report.texts_with_replaced_bytes += int(table[name].str.contains("\ufffd").sum())
        empty = table[name].str.strip() == ""
        if empty.any() and cfg.on_empty == "error":
            row = int(table.index[empty][0])
            raise BertclfError(
                f"{path}: row {row + 1} has an empty text in column '{column}' "
                "(data.on_empty=drop drops such rows)"
            )
        report.empty_texts_dropped += int(empty.sum())
        table = table[~empty]
        if table.empty:
            raise BertclfError(f"{path}: every text in column '{column}' is empty")
    if cfg.on_conflict == "mean":
        table = task_data.average_conflicts(table, report, path)
    return drop_duplicates(table, report, path, cfg.on_conflict)


def drop_duplicates(
    table: pd.DataFrame, report: PrepareReport, path: str, on_conflict: str
) -> pd.DataFrame:
    """Keep the first of exact duplicate texts. A text given two different labels is dropped
    with all its rows and reported (on_conflict "drop"), or refused ("error")."""
    key = example_key(table)
    conflicting = table.groupby(key)["label"].transform("nunique") > 1
    if conflicting.any():
        rows = table[conflicting & (key == key[conflicting].iloc[0])]
        shown = sorted({key.replace(LABEL_SET_KEY, "|") or "(none)" for key in rows["label"]})
        example = f"ids {', '.join(rows['id'])} with labels {', '.join(shown)}"
        if on_conflict == "error":
            raise BertclfError(
                f"{path}: the same text has different labels ({example}); "
                "data.on_conflict=drop drops such texts"
            )
        report.conflicting_label_examples.append(example)
    report.conflicting_labels_dropped += int(conflicting.sum())
    table = table[~conflicting]
    duplicated = example_key(table).duplicated()
    report.duplicates_dropped += int(duplicated.sum())
    return table[~duplicated].reset_index(drop=True)


def example_key(table: pd.DataFrame) -> pd.Series:
    """What duplicates, conflicts and the train-in-test check compare: the text, or for a
    pair the ordered pair (text, text_pair), so that (b, a) differs from (a, b)."""
    if "text_pair" not in table.columns:
        return table["text"]
    return pd.Series(list(zip(table["text"], table["text_pair"], strict=True)), index=table.index)


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


def check_split_holds_classes(
    size: int, classes: int, n: int, name: str, fraction: float, path: str
) -> None:
    """A stratified split needs a row of every class: name the split, its key and the
    smallest fraction that works (scikit-learn says only "test_size = 3 should be ...")."""
    if size >= classes:
        return
    key = "data.val_fraction" if name == "validation" else "data.test_fraction"
    smallest = math.ceil((classes - 0.5) / n * 100) / 100  # round(f * n) >= classes
    raise BertclfError(
        f"{path}: the {name} split would hold {size} of {n} rows ({key}={fraction}) for "
        f"{classes} classes; a stratified split needs one row per class: set {key} to at "
        f"least {smallest:.2f}"
    )


def validation_size(fraction: float, n: int, classes: int, rest: int, path: str) -> int:
    """round(fraction * n) rows, raised to one per class when that is fewer and the training
    split keeps at least one row per class too (a small table needs no hand-set fraction);
    says so in one line."""
    size = max(1, round(fraction * n))
    if size < classes <= rest - classes:
        print(
            f"prepare: the validation split holds {classes} rows, one per class "
            f"(data.val_fraction={fraction} of {n} rows would give {size})",
            flush=True,
        )
        return classes
    check_split_holds_classes(size, classes, n, "validation", fraction, path)
    return size


def split(
    table: pd.DataFrame, test: pd.DataFrame | None, cfg: DataConfig, seed: int, path: str
) -> dict[str, pd.DataFrame]:
    """Stratified train/val/test splits; fractions are of the whole table.

    With a separate test table, train texts that also appear in it are dropped from train.
    """
    n = len(table)
    classes = table["label"].nunique()
    if test is None:
        check_class_sizes(table, path, needed=3)
        test_size = max(1, round(cfg.test_fraction * n))
        check_split_holds_classes(test_size, classes, n, "test", cfg.test_fraction, path)
        rest, test = train_test_split(
            table, test_size=test_size, stratify=table["label"], random_state=seed
        )
    else:
        check_class_sizes(table, path, needed=2)
        rest = table
    val_size = validation_size(cfg.val_fraction, n, classes, len(rest), path)
    if len(rest) - val_size < classes:
        raise BertclfError(
            f"{path}: the training split would hold {len(rest) - val_size} rows for {classes} "
            "classes; lower data.val_fraction or data.test_fraction, or add rows"
        )
    train, val = train_test_split(
        rest, test_size=val_size, stratify=rest["label"], random_state=seed
    )
    splits = {"train": train, "val": val, "test": test}
    return {name: part.sort_index().reset_index(drop=True) for name, part in splits.items()}


def drop_texts_in(train: pd.DataFrame, test: pd.DataFrame, report: PrepareReport) -> pd.DataFrame:
    in_test = example_key(train).isin(set(example_key(test)))
    report.train_texts_in_test_dropped += int(in_test.sum())
    return train[~in_test].reset_index(drop=True)


def drop_rare_labels(
    tables: list[pd.DataFrame], task: TaskConfig, path: str, report: PrepareReport
) -> list[pd.DataFrame]:
    """Remove labels on fewer than `task.min_label_count` texts (all tables counted) from every
    text, and report them; or refuse them (`task.rare_labels=error`)."""
    counts = pd.Series(
        [label for table in tables for labels in table["labels"] for label in labels],
        dtype=object,
    ).value_counts()
    rare = counts[counts < task.min_label_count].sort_index()
    if not rare.empty and task.rare_labels == "error":
        label, count = rare.index[0], int(rare.iloc[0])
        raise BertclfError(
            f"{path}: label {label!r} is on {count} text(s), fewer than task.min_label_count="
            f"{task.min_label_count}; task.rare_labels=drop drops such labels"
        )
    report.rare_labels_dropped = {str(k): int(v) for k, v in rare.items()}
    if len(counts) - len(rare) < 2:
        raise BertclfError(
            f"{path}: fewer than two labels are on at least task.min_label_count="
            f"{task.min_label_count} texts"
        )
    drop = set(rare.index)
    for table in tables:
        table["labels"] = [tuple(x for x in labels if x not in drop) for labels in table["labels"]]
    return tables


def multi_hot(label_sets, classes: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    matrix = np.zeros((len(label_sets), len(classes)), dtype=np.int8)
    for row, labels in enumerate(label_sets):
        matrix[row, [index[label] for label in labels]] = 1
    return matrix


def multi_label_split(
    table: pd.DataFrame, test: pd.DataFrame | None, cfg: DataConfig, seed: int
) -> dict[str, pd.DataFrame]:
    """Splits stratified on every label at once (iterative stratification), then every label
    given at least one training example: one is moved from validation or test where the
    stratification left a rare label none."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    classes = sorted({label for labels in table["labels"] for label in labels})
    n = len(table)

    def cut(part: pd.DataFrame, size: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed)
        keep, held_out = next(
            splitter.split(np.zeros(len(part)), multi_hot(part["labels"], classes))
        )
        return part.iloc[np.sort(keep)], part.iloc[np.sort(held_out)]

    rest = table
    if test is None:
        rest, test = cut(table, max(1, round(cfg.test_fraction * n)))
    train, val = cut(rest, max(1, round(cfg.val_fraction * n)))
    for label in classes:
        if any(label in labels for labels in train["labels"]):
            continue
        for name, part in (("val", val), ("test", test)):
            if name == "test" and cfg.test_path:
                continue  # a separate test table is the user's: never moved
            holders = part.index[[label in labels for labels in part["labels"]]]
            if len(holders):
                train = pd.concat([train, part.loc[holders[:1]]])
                if name == "val":
                    val = val.drop(holders[:1])
                else:
                    test = test.drop(holders[:1])
                break
    splits = {"train": train, "val": val, "test": test}
    return {name: part.sort_index().reset_index(drop=True) for name, part in splits.items()}


def multi_label_counts(splits: dict[str, pd.DataFrame], report: PrepareReport) -> None:
    classes = sorted({label for labels in splits["train"]["labels"] for label in labels})
    report.class_counts, report.label_cardinality, report.texts_without_labels = {}, {}, {}
    for name, part in splits.items():
        counts = pd.Series([x for labels in part["labels"] for x in labels], dtype=object)
        report.class_counts[name] = {
            str(k): int(v) for k, v in counts.value_counts().sort_index().items()
        }
        sizes = part["labels"].map(len)
        report.label_cardinality[name] = round(float(sizes.mean()), 4) if len(part) else 0.0
        report.texts_without_labels[name] = int((sizes == 0).sum())
    report.labels_absent_from = {
        name: [c for c in classes if c not in report.class_counts[name]] for name in ("val", "test")
    }


def prepare_splits(
    cfg: DataConfig, seed: int, task: TaskConfig | None = None
) -> tuple[dict[str, pd.DataFrame], PrepareReport]:
    """Read, validate, clean and de-duplicate the configured table(s), then split them.
    Multi-label splits have a `labels` column (a list per text) instead of `label`."""
    report = PrepareReport()
    table = load_labelled(cfg.path, cfg, report, task)
    test = None
    if cfg.test_path:
        try:
            test = load_labelled(cfg.test_path, cfg, report, task)
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
    splits = data_of(task).split(table, test, cfg, seed, task, report)
    report.split_sizes = {name: len(part) for name, part in splits.items()}
    data_of(task).count(splits, report)
    return splits, report


class SingleLabelData:
    """A single-label table: one class a row, splits stratified on it."""

    def average_conflicts(self, table, report: PrepareReport, path: str) -> pd.DataFrame:
        raise BertclfError(
            f"{path}: data.on_conflict=mean averages a regression target's scores; labels "
            "cannot be averaged: use drop or error"
        )

    def read_labels(self, column: pd.Series, path: str, name: str, task) -> tuple:
        """The label column as keys that duplicates and conflicts are judged on, and the
        columns the splits keep besides `label` (none)."""
        return single_labels(column, path, name), {}

    def split(self, table, test, cfg: DataConfig, seed: int, task, report) -> dict:
        return split(table, test, cfg, seed, cfg.path)

    def count(self, splits: dict[str, pd.DataFrame], report: PrepareReport) -> None:
        report.class_counts = {
            name: {str(k): int(v) for k, v in part["label"].value_counts().sort_index().items()}
            for name, part in splits.items()
        }
        report.small_splits = small_splits(report.split_sizes, report.class_counts)


class MultiLabelData(SingleLabelData):
    """A multi-label table: a set of labels a row, kept in `labels` (a sorted tuple); `label`
    holds their joined key while duplicates and conflicts are judged, and is dropped after."""

    def read_labels(self, column: pd.Series, path: str, name: str, task) -> tuple:
        sets = [label_set(v, row, path, name, task.label_separator) for row, v in enumerate(column)]
        return pd.Series([LABEL_SET_KEY.join(s) for s in sets]), {"labels": sets}

    def split(self, table, test, cfg: DataConfig, seed: int, task, report) -> dict:
        drop_rare_labels([t for t in (table, test) if t is not None], task, cfg.path, report)
        splits = multi_label_split(table, test, cfg, seed)
        return {name: part.drop(columns="label") for name, part in splits.items()}

    def count(self, splits: dict[str, pd.DataFrame], report: PrepareReport) -> None:
        multi_label_counts(splits, report)
        report.small_splits = small_splits(report.split_sizes, {})


class RegressionData:
    """A regression table: a score a row (`score`, float64), kept as its exact text in `label`
    while duplicates and conflicts are judged; splits stratified on score bins."""

    def read_labels(self, column: pd.Series, path: str, name: str, task) -> tuple:
        scores = score_values(column, path, name)
        return pd.Series([repr(float(x)) for x in scores]), {SCORE: scores}

    def average_conflicts(self, table, report: PrepareReport, path: str) -> pd.DataFrame:
        """Every copy of a text gets the mean of its scores (data.on_conflict=mean)."""
        key = example_key(table)
        groups = table.groupby(key)[SCORE]
        several = groups.transform("nunique") > 1
        report.conflicting_scores_averaged = int(key[several].nunique())
        table = table.assign(**{SCORE: groups.transform("mean")})
        return table.assign(label=table[SCORE].map(lambda x: repr(float(x))))

    def split(self, table, test, cfg: DataConfig, seed: int, task, report) -> dict:
        """Stratified on SCORE_BINS equal-count bins of the score (fewer for a small table)."""
        if table[SCORE].nunique() < 2:
            raise BertclfError(
                f"{cfg.path}: column '{cfg.label_column}' holds one distinct score; a regression "
                "needs two or more"
            )
        binned = table.assign(label=score_bins(table[SCORE], len(table)))
        if test is not None:
            test = test.assign(label="all")
        splits = split(binned, test, cfg, seed, cfg.path)
        return {name: part.drop(columns="label") for name, part in splits.items()}

    def count(self, splits: dict[str, pd.DataFrame], report: PrepareReport) -> None:
        report.score_summary = {
            name: {
                "n": len(part),
                "mean": round(float(part[SCORE].mean()), 6),
                "sd": round(float(part[SCORE].std(ddof=0)), 6),
                "min": float(part[SCORE].min()),
                "max": float(part[SCORE].max()),
            }
            for name, part in splits.items()
        }
        report.small_splits = small_splits(report.split_sizes, {})


TASK_DATA = {
    SINGLE_LABEL: SingleLabelData(),
    MULTI_LABEL: MultiLabelData(),
    REGRESSION: RegressionData(),
}


def data_of(task: TaskConfig | None):
    """How the table of params.yaml's task.type is read and split (no task: single-label)."""
    return TASK_DATA[task.type if task is not None else SINGLE_LABEL]


FEW_CLASS_TEXTS = 5  # a class's texts in a split, below which its figures are noise
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


def small_splits(sizes: dict[str, int], class_counts: dict[str, dict[str, int]]) -> list[str]:
    """One line per split too small to mean much: a test split of fewer than FEW_TEST_TEXTS
    texts, or a split with fewer than FEW_CLASS_TEXTS texts of some class."""
    found = []
    if sizes.get("test", FEW_TEST_TEXTS) < FEW_TEST_TEXTS:
        found.append(
            f"the test split holds {sizes['test']} texts (fewer than {FEW_TEST_TEXTS}): one text "
            f"is {100 / sizes['test']:.1f} points of accuracy"
        )
    for split, counts in class_counts.items():
        few = {label: n for label, n in counts.items() if n < FEW_CLASS_TEXTS}
        if few:
            label, n = min(few.items(), key=lambda item: item[1])
            found.append(
                f"the {SPLIT_NAMES[split]} split has fewer than {FEW_CLASS_TEXTS} texts of "
                f"{len(few)} of its {len(counts)} classes ({label!r}: {n})"
            )
    return found


def write_split(split: pd.DataFrame, path) -> None:
    """One split as Parquet; a multi-label split's `labels` column is list<string> even when
    every list in it is empty."""
    import pyarrow as pa

    schema = None
    if "labels" in split.columns:
        schema = pa.schema(
            [
                (name, pa.list_(pa.string()) if name == "labels" else pa.string())
                for name in split.columns
            ]
        )
        split = split.assign(labels=split["labels"].map(list))
    split.to_parquet(path, index=False, schema=schema)
