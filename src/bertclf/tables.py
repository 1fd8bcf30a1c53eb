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


def _delimited(sep: str, columns=None) -> dict:
    """pandas options for CSV and TSV: every cell a string, empty cells as "", and only the
    `columns` asked for (all when None; a missing one is named by `require_columns`)."""
    options = {"sep": sep, "dtype": str, "keep_default_na": False}
    if columns is not None:
        wanted = set(columns)
        options["usecols"] = lambda name: name in wanted
    return options


def _read_delimited(path: Path, sep: str, decode: str, columns) -> pd.DataFrame:
    header = check_header_width(path, sep)
    df = pd.read_csv(path, **_delimited(sep, columns), encoding_errors=_decode_errors(decode))
    df.attrs["file_columns"] = header  # what require_columns lists when one is missing
    return df


def _delimited_chunks(path: Path, sep: str, rows: int, columns) -> Iterator[pd.DataFrame]:
    header = check_header_width(path, sep)
    for chunk in pd.read_csv(path, chunksize=rows, **_delimited(sep, columns)):
        chunk.attrs["file_columns"] = header
        yield chunk


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

        try:
            table = pa.Table.from_pandas(df, preserve_index=False)
            if self.writer is not None:
                table = table.cast(self.writer.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            raise BertclfError(self._mixed_types(df)) from None
        if self.writer is None:
            # a first chunk whose lists are all empty must not fix their type to list<null>
            fields = [
                f.with_type(pa.list_(pa.string())) if f.type == pa.list_(pa.null()) else f
                for f in table.schema
            ]
            self.writer = pq.ParquetWriter(self.path, pa.schema(fields))
        self.writer.write_table(table.cast(self.writer.schema))

    def _mixed_types(self, df: pd.DataFrame) -> str:
        """Parquet holds one type per column: name the column whose values differ."""
        import pyarrow as pa

        for column in df.columns:
            kinds = sorted({type(v).__name__ for v in df[column]})
            earlier = None if self.writer is None else self.writer.schema.field(str(column)).type
            try:
                now = pa.Table.from_pandas(df[[column]], preserve_index=False).schema[0].type
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                now = None
            if now is None or (earlier is not None and now != earlier):
                rows = f"rows {df.index[0] + 1:,} to {df.index[-1] + 1:,}"
                before = "" if now is None else f", {earlier} in the rows before"
                return (
                    f"column {column!r} holds {' and '.join(kinds)} values in {rows}{before}; "
                    "Parquet holds one type per column: write CSV or JSONL, or make its values "
                    "one type in the input"
                )
        return "the rows cannot be written as Parquet"

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


def _parquet_columns(path: Path, columns) -> list[str] | None:
    import pyarrow.parquet as pq

    if columns is None:
        return None
    return [name for name in pq.read_schema(path).names if name in set(columns)]


def _with_file_columns(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Every column the file has, for require_columns to list when one asked for is missing."""
    import pyarrow.parquet as pq

    df.attrs["file_columns"] = pq.read_schema(path).names
    return df


def _parquet_chunks(path: Path, rows: int, columns) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    batches = pq.ParquetFile(path).iter_batches(
        batch_size=rows, columns=_parquet_columns(path, columns)
    )
    return (_with_file_columns(batch.to_pandas(), path) for batch in batches)


@dataclass(frozen=True)
class TableFormat:
    """Everything bertclf does with one file format."""

    # (path, decode policy, columns wanted or None for all) -> the whole table
    read: Callable[[Path, str, object], pd.DataFrame]
    # (path, rows, columns wanted or None) -> chunks
    read_chunks: Callable[[Path, int, object], Iterator[pd.DataFrame]]
    write: Callable[[pd.DataFrame, Path], None]
    appender: Callable[[Path], object]  # an object with write(df) and close()


FORMATS = {
    ".csv": TableFormat(
        read=lambda p, d, c: _read_delimited(p, ",", d, c),
        read_chunks=lambda p, n, c: _delimited_chunks(p, ",", n, c),
        write=lambda df, p: df.to_csv(p, sep=",", **CSV_WRITE),
        appender=lambda p: _DelimitedAppender(p, ","),
    ),
    ".tsv": TableFormat(
        read=lambda p, d, c: _read_delimited(p, "\t", d, c),
        read_chunks=lambda p, n, c: _delimited_chunks(p, "\t", n, c),
        write=lambda df, p: df.to_csv(p, sep="\t", **CSV_WRITE),
        appender=lambda p: _DelimitedAppender(p, "\t"),
    ),
    ".xlsx": TableFormat(
        read=lambda p, d, c: pd.concat(list(_xlsx_chunks(p, 100_000)), ignore_index=True),
        read_chunks=lambda p, n, c: _xlsx_chunks(p, n),
        write=lambda df, p: _write_xlsx(df, p),
        appender=_XlsxAppender,
    ),
    ".parquet": TableFormat(
        read=lambda p, d, c: _with_file_columns(
            pd.read_parquet(p, columns=_parquet_columns(p, c)), p
        ),
        read_chunks=_parquet_chunks,
        write=lambda df, p: df.to_parquet(p, index=False),
        appender=_ParquetAppender,
    ),
    ".jsonl": TableFormat(
        read=lambda p, d, c: pd.read_json(p, **_jsonl(), encoding_errors=_decode_errors(d)),
        read_chunks=lambda p, n, c: pd.read_json(p, chunksize=n, **_jsonl()),
        write=lambda df, p: df.to_json(p, orient="records", lines=True, force_ascii=False),
        appender=_JsonlAppender,
    ),
}


def table_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise BertclfError(f"{path}: unknown file type '{suffix}'; use one of {', '.join(FORMATS)}")
    return suffix


def _check_input(path: str | Path) -> str:
    suffix = table_format(path)
    path = Path(path)
    if path.is_dir():
        raise BertclfError(f"{path}: is a directory; give a {suffix[1:]} file")
    if path.exists() and not path.is_file():
        raise BertclfError(f"{path}: is not a regular file (a FIFO or a device); give a file")
    if not path.is_file():
        raise BertclfError(f"{path}: file not found")
    return suffix


def read_table(
    path: str | Path, decode: str = "error", columns: list[str] | None = None
) -> pd.DataFrame:
    """Read a CSV, TSV, XLSX, Parquet or JSONL table, the format chosen by extension. `decode`
    is the policy for bytes that are not UTF-8 in the text formats: "error" or "replace".
    With `columns`, CSV, TSV and Parquet read only those (the others are read and kept)."""
    suffix = _check_input(path)
    with _read_errors(path, suffix):
        return FORMATS[suffix].read(path, decode, columns).reset_index(drop=True)


def read_table_chunks(
    path: str | Path, rows: int, columns: list[str] | None = None
) -> Iterator[pd.DataFrame]:
    """The table `rows` rows at a time, so memory stays flat however long the file is. The
    index is the row position in the file, as in `read_table`."""
    suffix = _check_input(path)
    with _read_errors(path, suffix):  # readers fail when opened as well as when read
        start = 0
        for chunk in FORMATS[suffix].read_chunks(path, rows, columns):
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


def _first_bad_byte(path: str | Path, block: int = 1 << 20) -> str:
    """Where the file stops being UTF-8 (the readers' own offsets are within a buffer), read a
    block at a time: a bad byte early in a huge file costs one block."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    with open(path, "rb") as handle:
        while raw := handle.read(block):
            held = len(decoder.getstate()[0])  # a character's first bytes, from the last block
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as error:
                start = error.start - held  # error.start counts the held bytes first
                lines += raw[: max(start, 0)].count(b"\n")
                return f"byte {offset + start} (line {lines})"
            offset, lines = offset + len(raw), lines + raw.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return f"byte {offset - len(decoder.getstate()[0])} (line {lines}, the file's end)"
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
    """Every named column is there. In a later chunk (a JSONL line may lack a key), the
    message says from which row."""
    for key, column in columns.items():
        if column is not None and column not in df.columns:
            present = ", ".join(map(str, df.attrs.get("file_columns", df.columns)))
            start = int(df.index[0]) if len(df) and isinstance(df.index, pd.RangeIndex) else 0
            where = f" in rows {start + 1:,} to {start + len(df):,}" if start else ""
            raise BertclfError(
                f"{path}: no column '{column}' ({key}){where}; columns are: {present}"
            )


def text_cells(df: pd.DataFrame, column: str, path: str | Path) -> pd.Series:
    """The column as strings; a cell that is neither text nor empty is refused, naming its row.
    In a CSV or TSV, a text that seems to hold the next row's line is warned about."""
    values = df[column]
    bad = values.map(lambda v: not (isinstance(v, str) or v is None or _is_missing(v)))
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        value = values.iloc[row]
        kind = "a list" if isinstance(value, list | tuple) or hasattr(value, "shape") else "text"
        raise BertclfError(
            f"{path}: {row_name(df.index, row)} of column '{column}' is not text: {value!r}"
            + (f" ({kind}; give one text per cell)" if kind == "a list" else "")
        )
    texts = values.map(lambda v: v if isinstance(v, str) else "")
    suffix = Path(path).suffix.lower()  # a folder of files (the Ray engine's input) has none
    if suffix in (".csv", ".tsv"):
        warn_merged_rows(texts, path, "," if suffix == ".csv" else "\t")
    return texts


def refuse_blank_texts(texts: pd.Series, column: str, path: str | Path) -> None:
    """Prediction's rule, as the API's and the server's: a text that is empty or only
    whitespace has nothing to classify, and is refused, naming its row (a missing cell too)."""
    blank = texts.str.strip() == ""
    if blank.any():
        row = int(blank.to_numpy().nonzero()[0][0])
        raise BertclfError(
            f"{path}: {row_name(texts.index, row)} of column '{column}' is empty or only "
            "whitespace: nothing to classify; remove or fill such rows"
        )


def row_name(index: pd.Index, position: int) -> str:
    """How a message names a table's row: by its number when the index counts rows from 0, or
    by the name the index holds (the Ray engine's batches name theirs by id)."""
    label = index[position]
    return f"row {label + 1}" if pd.api.types.is_integer(label) else str(label)


def _is_missing(value) -> bool:
    """None or NaN; a list or an array (a Parquet list column) is not missing but not text."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # pd.isna of an array is an array
        return False


_WARNED_MERGED: set[str] = set()  # one warning per file and process, however many chunks


def warn_merged_rows(texts: pd.Series, path: str | Path, sep: str) -> int | None:
    """A stray quote makes the CSV reader take the lines after it as one quoted text, until
    the next quote: that row's text then holds the next rows' raw lines. CSV allows quoted
    newlines, so this cannot be refused, but a text holding a newline followed by what looks
    like an id and the delimiter is named in one warning. Returns that row (from 1)."""
    import re
    import sys

    pattern = re.compile(r"\n\s*\"?[\w.:-]{1,40}\"?" + re.escape(sep))
    suspicious = texts[texts.str.contains("\n", regex=False)]
    for index, text in suspicious.items():
        if pattern.search(text):
            if str(path) not in _WARNED_MERGED:
                _WARNED_MERGED.add(str(path))
                print(
                    f"warning: {path}: the text of row {index + 1} holds a line break followed "
                    "by what looks like the start of another row; a quote left open may have "
                    "merged rows (compare the rows read with the file's lines)",
                    file=sys.stderr,
                )
            return index + 1
    return None


def data_lines(path: str | Path) -> int | None:
    """The lines after the header of a CSV or TSV (None for other formats), counted a block
    at a time: compared with the rows read, it shows rows merged by a stray quote."""
    if table_format(path) not in (".csv", ".tsv"):
        return None
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines, last = lines + block.count(b"\n"), block[-1:]
    lines += last != b"\n"  # a last line without its newline
    return max(lines - 1, 0)


def rows_read(path: str | Path, rows: int) -> str:
    """`2,499 rows from 2,500 lines after the header` (CSV, TSV), or `2,499 rows`."""
    lines = data_lines(path)
    return f"{rows:,} rows" + ("" if lines is None else f" from {lines:,} lines after the header")


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
MAX_COLUMNS = XLSX_MAX_COLUMNS  # CSV and TSV too: a wider header is refused before any row
HEADER_BYTES = 1 << 20  # a CSV or TSV header that does not end within this is refused
# What openpyxl loads whole (shared strings, styles, the workbook) may unpack to at most this;
# the sheet itself is streamed. A 2 MB file whose strings unpack to 1 GB took 1.34 GB.
XLSX_MAX_MEMBER_BYTES = 256 * 1024 * 1024


def check_header_width(path: str | Path, sep: str) -> list[str]:
    """Refuse a CSV or TSV whose header has more than MAX_COLUMNS names, reading at most
    HEADER_BYTES: pandas builds every column of a 1,000,000-column file (2.2 GB for 10 MB)."""
    with open(path, "rb") as handle:
        head = handle.read(HEADER_BYTES)
    text = head.decode("utf-8", errors="replace")
    record = next(csv.reader(text.splitlines(keepends=True), delimiter=sep), [])
    cut = len(head) == HEADER_BYTES and "\n" not in text
    if len(record) > MAX_COLUMNS:
        found = f"{len(record):,} columns in its first MiB" if cut else f"{len(record):,} columns"
        raise BertclfError(
            f"{path}: the header has {found}; bertclf reads at most {MAX_COLUMNS:,} "
            "(keep the columns you need)"
        )
    if cut:
        raise BertclfError(f"{path}: the header does not end within its first MiB")
    return record


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

    check_xlsx_members(path)
    scan_xlsx_sheet(path)
    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = workbook.worksheets[0]
        sheet.reset_dimensions()  # a row's width is its own last cell, not the sheet's widest
        values = sheet.iter_rows(values_only=True)
        header = next(values, ())
        _check_width(len(header), path, sheet.title, 1)
        columns = _xlsx_header(header)
        chunk, blank = [], 0
        for number, row in enumerate(values, start=2):
            _check_width(len(row), path, sheet.title, number)
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


def check_xlsx_members(path: str | Path) -> None:
    """Refuse an XLSX any of whose parts that openpyxl reads whole unpacks to more than
    XLSX_MAX_MEMBER_BYTES, from the zip's own directory, before anything is unpacked."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            streamed = member.filename.startswith("xl/worksheets/")
            if not streamed and member.file_size > XLSX_MAX_MEMBER_BYTES:
                raise BertclfError(
                    f"{path}: {member.filename} unpacks to {member.file_size:,} bytes; bertclf "
                    f"reads at most {XLSX_MAX_MEMBER_BYTES:,} (save the sheet as CSV or Parquet)"
                )


def _column_number(reference: str) -> int:
    """1 for "A7", 27 for "AA7"."""
    number = 0
    for char in reference:
        if not char.isalpha():
            break
        number = number * 26 + ord(char.upper()) - 64
    return number


def _first_sheet(path: str | Path):
    """(title, part name) of the sheet openpyxl reads as `worksheets[0]`, from the workbook's
    own parts only: opening the sheet with openpyxl would first parse it whole to find its
    size when it declares none."""
    from openpyxl.reader.excel import ExcelReader

    reader = ExcelReader(str(path), read_only=True, data_only=True)
    try:
        reader.read_manifest()
        reader.read_workbook()
        for sheet, rel in reader.parser.find_sheets():
            if rel.target in reader.valid_files and "chartsheet" not in rel.Type:
                return sheet.name, rel.target
    finally:
        reader.archive.close()
    raise BertclfError(f"{path}: the workbook has no worksheet")


def scan_xlsx_sheet(path: str | Path) -> None:
    """One streaming pass over the first sheet's XML before openpyxl reads it: a row wider
    than XLSX_MAX_COLUMNS is refused at its first far cell (openpyxl builds a whole row
    first: 1.98 GB for a 223 KB file with a 2,000,000-cell row), and formulas without a saved
    value, which read as empty cells (and drop rows at the sheet's end), are refused, naming
    the first."""
    import zipfile

    from openpyxl.xml.functions import iterparse

    title, part = _first_sheet(path)
    main = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    row_tag, cell_tag, formula_tag, value_tag, data_tag = (
        main + t for t in ("row", "c", "f", "v", "sheetData")
    )
    number, column, reference, rows = 0, 0, "", None
    formula = value = False
    missing, first_missing = 0, ""
    with zipfile.ZipFile(path) as archive, archive.open(part) as source:
        for event, element in iterparse(source, events=("start", "end")):
            tag = element.tag
            if event == "start":
                if tag == data_tag:
                    rows = element
                elif tag == row_tag:
                    number = int(element.get("r", number + 1))
                    column = 0
                elif tag == cell_tag:
                    reference = element.get("r", "")
                    column = _column_number(reference) if reference else column + 1
                    formula = value = False
                    _check_width(column, path, title, number)
                continue
            if tag == formula_tag:
                formula = True
            elif tag == value_tag:
                value = bool(element.text)  # openpyxl writes a formula's value as <v />
            elif tag == cell_tag:
                if formula and not value:
                    missing += 1
                    first_missing = first_missing or reference or f"row {number}"
                element.clear()
            elif tag == row_tag and rows is not None:
                rows.clear()  # the rows read so far: memory stays flat
    if missing:
        raise BertclfError(
            f"{path}: sheet {title!r} has {missing:,} formula cell(s) without a saved "
            f"value (the first: {first_missing}), which would read as empty; open the file in "
            "Excel or LibreOffice and save it, so that every formula's value is stored"
        )


def _check_width(width: int, path: str | Path, sheet: str, number: int) -> None:
    if width > XLSX_MAX_COLUMNS:
        raise BertclfError(
            f"{path}: sheet {sheet!r} row {number} reaches column {width:,}; "
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
