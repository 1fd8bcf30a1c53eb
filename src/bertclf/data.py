"""Reading, validating, cleaning and splitting labelled tables.

Nothing here imports TensorFlow: bad input fails fast, with one line naming the file,
column or row.
"""

import csv
import html
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from bertclf.config import CleanConfig, DataConfig
from bertclf.errors import BertclfError

SEPARATORS = {".csv": ",", ".tsv": "\t"}


def _text_options(suffix: str, decode: str) -> dict:
    """pandas options for the text formats: every cell a string, UTF-8 decoded strictly
    (`decode` "error") or with U+FFFD for each undecodable byte ("replace")."""
    errors = {"error": "strict", "replace": "replace"}[decode]
    if suffix == ".jsonl":
        return {"lines": True, "dtype": False, "encoding": "utf-8", "encoding_errors": errors}
    sep = SEPARATORS[suffix]
    return {"sep": sep, "dtype": str, "keep_default_na": False, "encoding_errors": errors}


READERS = {
    ".csv": lambda p, d: pd.read_csv(p, **_text_options(".csv", d)),
    ".tsv": lambda p, d: pd.read_csv(p, **_text_options(".tsv", d)),
    ".xlsx": lambda p, d: pd.concat(list(_xlsx_chunks(p, 100_000)), ignore_index=True),
    ".parquet": lambda p, d: pd.read_parquet(p),
    ".jsonl": lambda p, d: pd.read_json(p, **_text_options(".jsonl", d)),
}
# Every text quoted: unquoted, a text that is only "\r" reads back as an empty cell.
CSV_WRITE = {"index": False, "quoting": csv.QUOTE_NONNUMERIC}
WRITERS = {
    ".csv": lambda df, p: df.to_csv(p, sep=",", **CSV_WRITE),
    ".tsv": lambda df, p: df.to_csv(p, sep="\t", **CSV_WRITE),
    ".xlsx": lambda df, p: _write_xlsx(df, p),
    ".parquet": lambda df, p: df.to_parquet(p, index=False),
    ".jsonl": lambda df, p: df.to_json(p, orient="records", lines=True, force_ascii=False),
}
SPLITS = ("train", "val", "test")


def _write_xlsx(df: pd.DataFrame, path: str | Path) -> None:
    """Like DataFrame.to_excel, except that every header and text cell is stored as text:
    Excel (and pandas) would store a text starting with "=" as a formula, and the text would
    be lost (or run, when opened)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    check_cells_fit(df, path)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()

    def cell(value):
        if isinstance(value, str):
            value = WriteOnlyCell(sheet, value=value)
            value.data_type = "s"
        elif not isinstance(value, str) and pd.isna(value):
            value = None
        return value

    sheet.append([cell(str(c)) for c in df.columns])
    for row in df.itertuples(index=False):
        sheet.append([cell(value) for value in row])
    workbook.save(path)


XLSX_MAX_CHARS = 32_767  # characters in one cell
XLSX_MAX_ROWS = 1_048_576  # rows in one sheet, the header's included
XLSX_MAX_COLUMNS = 1_000  # read from a sheet: a wider row is refused (a far cell pads every row)


def check_cells_fit(df: pd.DataFrame, path: str | Path, rows_before: int = 0) -> None:
    """Refuse, naming the row (the table's index + 1, a row of the input), a table that the
    format of `path` cannot hold as it is: XLSX cannot store control characters, nor more than
    32,767 characters in a cell, nor more than 1,048,575 rows (`rows_before` are written
    already). A user's text is never cut or changed to make it fit."""
    if table_format(path) != ".xlsx":
        return
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    other = "write CSV, TSV, Parquet or JSONL instead"
    if rows_before + len(df) > XLSX_MAX_ROWS - 1:
        raise BertclfError(f"{path}: XLSX holds at most {XLSX_MAX_ROWS - 1:,} rows; {other}")
    for column in df.columns:
        names = pd.Series([str(column)], index=[None])
        values = df[column][df[column].map(lambda v: isinstance(v, str))]
        for cells in (names, values.astype(object)):
            if cells.empty:
                continue
            bad = cells.str.contains(ILLEGAL_CHARACTERS_RE.pattern, regex=True)
            long = cells.str.len() > XLSX_MAX_CHARS
            if not (bad.any() or long.any()):
                continue
            row = cells.index[(bad | long).to_numpy().nonzero()[0][0]]
            where = (
                f"column name {column!r}" if row is None else f"row {row + 1}, column {column!r}"
            )
            value = cells[row] if row is not None else str(column)
            found = ILLEGAL_CHARACTERS_RE.search(value)
            if found:
                reason = (
                    f"holds control character U+{ord(found.group()):04X}, which XLSX cannot store"
                )
            else:
                reason = (
                    f"has {len(value):,} characters; an XLSX cell holds at most {XLSX_MAX_CHARS:,}"
                )
            raise BertclfError(f"{path}: {where} {reason}; {other}")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula, prefixed with "'" (OWASP's advice
    for CSV meant for spreadsheets). This changes the texts, so it is only done when asked."""
    return df.apply(
        lambda column: column.map(
            lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v
        )
    )


def _xlsx_chunks(path: str | Path, rows: int) -> Iterator[pd.DataFrame]:
    """The first sheet, `rows` rows at a time, every cell a string ("" when empty), as pandas'
    `read_excel(dtype=str, keep_default_na=False)` gives it, but streamed: pandas pads every
    row to the widest, so one far cell (XFD1048576) would take gigabytes. A row wider than
    1,000 columns is refused instead."""
    from openpyxl import load_workbook

    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = workbook.worksheets[0]
        sheet.reset_dimensions()  # a row's width is its own last cell, not the sheet's widest
        values = sheet.iter_rows(values_only=True)
        header = next(values, ())
        _check_width(header, path, sheet.title, 1)
        columns = _xlsx_header(header)
        chunk, blank = [], 0
        for number, row in enumerate(values, start=2):
            _check_width(row, path, sheet.title, number)
            cells = [_xlsx_text(v) for v in row[: len(columns)]]
            if not any(cells):  # blank rows count only when a row with content follows
                blank += 1
                continue
            chunk += [[""] * len(columns)] * blank
            blank = 0
            chunk.append(cells + [""] * (len(columns) - len(cells)))
            if len(chunk) >= rows:
                yield pd.DataFrame(chunk[:rows], columns=columns)
                chunk = chunk[rows:]
        if chunk or not columns:
            yield pd.DataFrame(chunk, columns=columns)
    finally:
        workbook.close()


def _check_width(row: tuple, path: str | Path, sheet: str, number: int) -> None:
    if len(row) > XLSX_MAX_COLUMNS:
        raise BertclfError(
            f"{path}: sheet {sheet!r} row {number} reaches column {len(row):,}; "
            f"bertclf reads at most {XLSX_MAX_COLUMNS:,} columns (delete the far cells)"
        )


def _xlsx_header(header: tuple) -> list[str]:
    """Column names as pandas gives them: "Unnamed: i" for an empty one, ".1" after a repeat."""
    while header and header[-1] is None:
        header = header[:-1]
    columns, seen = [], {}
    for i, value in enumerate(header):
        name = f"Unnamed: {i}" if value is None else _xlsx_text(value)
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        columns.append(name)
    return columns


def _xlsx_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def table_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in READERS:
        raise BertclfError(f"{path}: unknown file type '{suffix}'; use one of {', '.join(READERS)}")
    return suffix


def read_table(path: str | Path, decode: str = "error") -> pd.DataFrame:
    """Read a CSV, TSV, XLSX, Parquet or JSONL table, the format chosen by extension. `decode`
    is the policy for bytes that are not UTF-8 in the text formats: "error" or "replace"."""
    suffix = table_format(path)
    if not Path(path).is_file():
        raise BertclfError(f"{path}: file not found")
    with _read_errors(path, suffix):
        return READERS[suffix](path, decode).reset_index(drop=True)


def _first_bad_byte(path: str | Path) -> str:
    """Where the file stops being UTF-8 (the readers' own offsets are within a buffer)."""
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        return f"byte {error.start} (line {line})"
    return "an unknown position"


@contextmanager
def _read_errors(path: str | Path, suffix: str):
    """Any reader's failure as one line naming the file."""
    try:
        yield
    except BertclfError:
        raise
    except UnicodeDecodeError:
        raise BertclfError(
            f"{path}: not valid UTF-8 at {_first_bad_byte(path)}; save it as UTF-8 "
            "(in prepare, data.decode_errors=replace reads such bytes as U+FFFD)"
        ) from None
    except Exception as error:  # each reader has its own exception types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BertclfError(f"{path}: cannot be read as {suffix[1:]}: {reason}") from None


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    WRITERS[table_format(path)](df, path)


def read_table_chunks(path: str | Path, rows: int) -> Iterator[pd.DataFrame]:
    """The table `rows` rows at a time, so memory stays flat however long the file is. CSV,
    TSV, JSONL, Parquet and XLSX are streamed. The index is the row position in the file, as in
    `read_table`."""
    suffix = table_format(path)
    if not Path(path).is_file():
        raise BertclfError(f"{path}: file not found")
    with _read_errors(path, suffix):  # readers fail when opened as well as when read
        if suffix in (".csv", ".tsv"):
            chunks = pd.read_csv(path, chunksize=rows, **_text_options(suffix, "error"))
        elif suffix == ".jsonl":
            chunks = pd.read_json(path, chunksize=rows, **_text_options(suffix, "error"))
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(path).iter_batches(batch_size=rows)
            chunks = (batch.to_pandas() for batch in batches)
        else:
            chunks = _xlsx_chunks(path, rows)
        start = 0
        for chunk in chunks:
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk


class TableWriter:
    """Appends DataFrames to one table file. XLSX cannot be appended to, so it is written
    whole on close (Excel holds at most 1,048,576 rows anyway). `columns` shape the file when
    nothing is written."""

    def __init__(self, path: str | Path, columns: list[str]):
        self.path, self.format, self.columns = Path(path), table_format(path), columns
        self.parts: list[pd.DataFrame] = []
        self.parquet = None
        self.written = False

    def write(self, df: pd.DataFrame) -> None:
        check_cells_fit(df, self.path, sum(map(len, self.parts)))
        if self.format in SEPARATORS:
            sep = SEPARATORS[self.format]
            df.to_csv(self.path, sep=sep, mode="a", header=not self.written, **CSV_WRITE)
        elif self.format == ".jsonl":
            with open(self.path, "a", encoding="utf-8") as f:
                df.to_json(f, orient="records", lines=True, force_ascii=False)
        elif self.format == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.path, table.schema)
            self.parquet.write_table(table.cast(self.parquet.schema))
        else:
            self.parts.append(df)
        self.written = True

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        if self.format == ".xlsx" and self.parts:
            write_table(pd.concat(self.parts), self.path)
        elif not self.written:
            write_table(pd.DataFrame(columns=self.columns), self.path)

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def require_columns(df: pd.DataFrame, path: str | Path, columns: dict[str, str | None]) -> None:
    for key, column in columns.items():
        if column is not None and column not in df.columns:
            present = ", ".join(map(str, df.columns))
            raise BertclfError(f"{path}: no column '{column}' ({key}); columns are: {present}")


def text_cells(df: pd.DataFrame, column: str, path: str | Path) -> pd.Series:
    """The column as strings; a cell that is neither text nor empty is refused, naming its row."""
    values = df[column]
    bad = values.map(lambda v: not (isinstance(v, str) or v is None or pd.isna(v)))
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise BertclfError(
            f"{path}: row {df.index[row] + 1} of column '{column}' is not text: "
            f"{values.iloc[row]!r}"
        )
    return values.map(lambda v: v if isinstance(v, str) else "")


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
        test = load_labelled(cfg.test_path, cfg, report)
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
