"""Tables in and out: CSV, TSV, XLSX, Parquet and JSONL, chosen by a file's extension.

Each format is one record in FORMATS (read whole, read in chunks, and an appender that writes
chunk after chunk), so adding a format is adding one entry. Nothing here imports TensorFlow:
bad input fails fast, with one line naming the file, column or row.
"""

import csv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bertclf.errors import BertclfError

# Every text quoted: unquoted, a text that is only "\r" reads back as an empty cell.
CSV_WRITE = {"index": False, "quoting": csv.QUOTE_NONNUMERIC}


def _decode_errors(decode: str) -> str:
    """UTF-8 decoded strictly (`decode` "error") or with U+FFFD per undecodable byte ("replace")."""
    return {"error": "strict", "replace": "replace"}[decode]


def _delimited(sep: str) -> dict:
    """pandas options for CSV and TSV: every cell a string, empty cells as ""."""
    return {"sep": sep, "dtype": str, "keep_default_na": False}


def _jsonl() -> dict:
    return {"lines": True, "dtype": False, "encoding": "utf-8"}


class _DelimitedAppender:
    def __init__(self, path: Path, sep: str):
        self.path, self.sep, self.header = path, sep, True

    def write(self, df: pd.DataFrame) -> None:
        df.to_csv(self.path, sep=self.sep, mode="a", header=self.header, **CSV_WRITE)
        self.header = False

    def close(self) -> None:
        pass


class _JsonlAppender:
    def __init__(self, path: Path):
        self.path = path

    def write(self, df: pd.DataFrame) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            df.to_json(handle, orient="records", lines=True, force_ascii=False)

    def close(self) -> None:
        pass


class _ParquetAppender:
    def __init__(self, path: Path):
        self.path, self.writer = path, None

    def write(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        if self.writer is None:
            # a first chunk whose lists are all empty must not fix their type to list<null>
            fields = [
                f.with_type(pa.list_(pa.string())) if f.type == pa.list_(pa.null()) else f
                for f in table.schema
            ]
            self.writer = pq.ParquetWriter(self.path, pa.schema(fields))
        self.writer.write_table(table.cast(self.writer.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _XlsxAppender:
    """XLSX cannot be appended to: written whole on close (a sheet holds at most 1,048,576
    rows anyway)."""

    def __init__(self, path: Path):
        self.path, self.parts = path, []

    def write(self, df: pd.DataFrame) -> None:
        self.parts.append(df)

    def close(self) -> None:
        if self.parts:
            _write_xlsx(pd.concat(self.parts), self.path)


def _parquet_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    return (batch.to_pandas() for batch in pq.ParquetFile(path).iter_batches(batch_size=rows))


@dataclass(frozen=True)
class TableFormat:
    """Everything bertclf does with one file format."""

    read: Callable[[Path, str], pd.DataFrame]  # (path, decode policy) -> the whole table
    read_chunks: Callable[[Path, int], Iterator[pd.DataFrame]]  # (path, rows) -> chunks
    write: Callable[[pd.DataFrame, Path], None]
    appender: Callable[[Path], object]  # an object with write(df) and close()


FORMATS = {
    ".csv": TableFormat(
        read=lambda p, d: pd.read_csv(p, **_delimited(","), encoding_errors=_decode_errors(d)),
        read_chunks=lambda p, n: pd.read_csv(p, chunksize=n, **_delimited(",")),
        write=lambda df, p: df.to_csv(p, sep=",", **CSV_WRITE),
        appender=lambda p: _DelimitedAppender(p, ","),
    ),
    ".tsv": TableFormat(
        read=lambda p, d: pd.read_csv(p, **_delimited("\t"), encoding_errors=_decode_errors(d)),
        read_chunks=lambda p, n: pd.read_csv(p, chunksize=n, **_delimited("\t")),
        write=lambda df, p: df.to_csv(p, sep="\t", **CSV_WRITE),
        appender=lambda p: _DelimitedAppender(p, "\t"),
    ),
    ".xlsx": TableFormat(
        read=lambda p, d: pd.concat(list(_xlsx_chunks(p, 100_000)), ignore_index=True),
        read_chunks=lambda p, n: _xlsx_chunks(p, n),
        write=lambda df, p: _write_xlsx(df, p),
        appender=_XlsxAppender,
    ),
    ".parquet": TableFormat(
        read=lambda p, d: pd.read_parquet(p),
        read_chunks=_parquet_chunks,
        write=lambda df, p: df.to_parquet(p, index=False),
        appender=_ParquetAppender,
    ),
    ".jsonl": TableFormat(
        read=lambda p, d: pd.read_json(p, **_jsonl(), encoding_errors=_decode_errors(d)),
        read_chunks=lambda p, n: pd.read_json(p, chunksize=n, **_jsonl()),
        write=lambda df, p: df.to_json(p, orient="records", lines=True, force_ascii=False),
        appender=_JsonlAppender,
    ),
}


def table_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise BertclfError(f"{path}: unknown file type '{suffix}'; use one of {', '.join(FORMATS)}")
    return suffix


def read_table(path: str | Path, decode: str = "error") -> pd.DataFrame:
    """Read a CSV, TSV, XLSX, Parquet or JSONL table, the format chosen by extension. `decode`
    is the policy for bytes that are not UTF-8 in the text formats: "error" or "replace"."""
    suffix = table_format(path)
    if not Path(path).is_file():
        raise BertclfError(f"{path}: file not found")
    with _read_errors(path, suffix):
        return FORMATS[suffix].read(path, decode).reset_index(drop=True)


def read_table_chunks(path: str | Path, rows: int) -> Iterator[pd.DataFrame]:
    """The table `rows` rows at a time, so memory stays flat however long the file is. The
    index is the row position in the file, as in `read_table`."""
    suffix = table_format(path)
    if not Path(path).is_file():
        raise BertclfError(f"{path}: file not found")
    with _read_errors(path, suffix):  # readers fail when opened as well as when read
        start = 0
        for chunk in FORMATS[suffix].read_chunks(path, rows):
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    FORMATS[table_format(path)].write(df, path)


class TableWriter:
    """Appends DataFrames to one table file (XLSX, which cannot be appended to, is checked and
    written whole on close). `columns` shape the file when nothing is written."""

    def __init__(self, path: str | Path, columns: list[str]):
        self.path, self.columns = Path(path), columns
        self.appender = FORMATS[table_format(path)].appender(self.path)
        self.rows = 0

    def write(self, df: pd.DataFrame) -> None:
        self.appender.write(df)
        self.rows += len(df)

    def close(self) -> None:
        self.appender.close()
        if not self.rows:
            write_table(pd.DataFrame(columns=self.columns), self.path)

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
    32,767 characters in a cell, nor more than 1,048,575 rows (`rows_before` rows
    come first). A user's text is never cut or changed to make it fit."""
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
