"""Files that exhaust memory or merge rows: each is refused or named in one line, with memory
bounded by what bertclf reads, not by what the file unpacks to."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from helpers import run

from bertclf import tables
from bertclf.errors import BertclfError
from bertclf.tables import read_table, read_table_chunks, write_table

# This process's own peak memory (ru_maxrss would count the forking pytest's).
PEAK = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) // 1024"


def read_in_a_process(path: Path) -> tuple[list[str], int]:
    """Read `path` whole and in chunks in a fresh process: the errors it printed and its peak
    memory in MB."""
    script = (
        "import sys; from bertclf.tables import read_table, read_table_chunks\n"
        f"print({PEAK})\n"
        "for read in (read_table, lambda p: list(read_table_chunks(p, 1000))):\n"
        "    try: read(sys.argv[1])\n"
        "    except Exception as error: print(error)\n"
        f"print({PEAK})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300
    )
    before, *errors, after = result.stdout.strip().splitlines()
    return errors, int(after) - int(before)


def xlsx_with_sheet(path: Path, rows_xml, shared_strings: bytes | None = None) -> Path:
    """A minimal XLSX whose first sheet's <sheetData> is written from `rows_xml`, a stream of
    byte strings (so that a huge sheet never sits in this process's memory)."""
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    package_rel = "http://schemas.openxmlformats.org/package/2006/relationships"
    kinds = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        overrides = (
            f'<Override PartName="/xl/workbook.xml" ContentType="{kinds}.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" '
            f'ContentType="{kinds}.worksheet+xml"/>'
        )
        if shared_strings is not None:
            overrides += (
                f'<Override PartName="/xl/sharedStrings.xml" '
                f'ContentType="{kinds}.sharedStrings+xml"/>'
            )
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxml'
            'formats-package.relationships+xml"/><Default Extension="xml" ContentType='
            f'"application/xml"/>{overrides}</Types>',
        )
        archive.writestr(
            "_rels/.rels",
            f'<?xml version="1.0"?><Relationships xmlns="{package_rel}"><Relationship Id="r1" '
            f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        )
        archive.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0"?><workbook xmlns="{main}" xmlns:r="{rel}"><sheets><sheet '
            'name="Sheet" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        strings_rel = (
            f'<Relationship Id="rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/>'
            if shared_strings is not None
            else ""
        )
        archive.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<?xml version="1.0"?><Relationships xmlns="{package_rel}"><Relationship Id="rId1" '
            f'Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>{strings_rel}'
            "</Relationships>",
        )
        if shared_strings is not None:
            with archive.open("xl/sharedStrings.xml", "w") as member:
                member.write(shared_strings)
        with archive.open("xl/worksheets/sheet1.xml", "w") as member:
            member.write(f'<?xml version="1.0"?><worksheet xmlns="{main}"><sheetData>'.encode())
            for part in rows_xml:
                member.write(part)
            member.write(b"</sheetData></worksheet>")
    return path


def inline_row(number: int, *texts: str) -> bytes:
    cells = "".join(f'<c t="inlineStr"><is><t>{t}</t></is></c>' for t in texts)
    return f'<row r="{number}">{cells}</row>'.encode()


def test_the_minimal_xlsx_reads_as_a_table(tmp_path):
    """The hand-made files below are real XLSX: the reader takes a well-formed one."""
    path = xlsx_with_sheet(tmp_path / "ok.xlsx", [inline_row(1, "text"), inline_row(2, "good")])
    assert read_table(path).to_dict("list") == {"text": ["good"]}


def test_a_row_of_two_million_cells_is_refused_before_it_is_built(tmp_path):
    """openpyxl builds a whole row before the reader sees its width: 1.98 GB for this
    223 KB file. The scan before it refuses the row at its 1,001st cell."""

    def rows():
        yield inline_row(1, "text", "label")
        yield b'<row r="2">'
        for _ in range(2_000):
            yield b"<c><v>1</v></c>" * 1_000  # cells without a reference: counted
        yield b"</row>"

    path = xlsx_with_sheet(tmp_path / "wide.xlsx", rows())
    errors, peak = read_in_a_process(path)
    message = "sheet 'Sheet' row 2 reaches column 1,001; bertclf reads at most 1,000 columns"
    assert errors == [f"{path}: {message} (delete the far cells)"] * 2
    print(f"2,000,000-cell row ({path.stat().st_size:,} bytes): refused, peak +{peak} MB")
    assert peak < 100


def test_shared_strings_that_unpack_to_more_than_the_cap_are_refused_unread(tmp_path):
    """A 2 MB file whose shared strings unpack to 1 GB peaked at 1.34 GB: the zip's directory
    says the size, and the file is refused before anything is unpacked (here 300 MB)."""
    path = tmp_path / "inflated.xlsx"
    block = b"<si><t>" + b"a" * 1_000_000 + b"</t></si>"
    main = b"http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    strings = b'<?xml version="1.0"?><sst xmlns="' + main + b'">' + block * 300 + b"</sst>"
    xlsx_with_sheet(path, [inline_row(1, "text")], shared_strings=strings)
    size = len(strings)
    del strings
    errors, peak = read_in_a_process(path)
    message = (
        f"{path}: xl/sharedStrings.xml unpacks to {size:,} bytes; bertclf reads at most "
        "268,435,456 (save the sheet as CSV or Parquet)"
    )
    assert errors == [message] * 2
    print(f"shared strings of 300 MB ({path.stat().st_size:,} bytes): refused, peak +{peak} MB")
    assert peak < 100


def test_formulas_without_a_saved_value_are_refused_naming_the_first(tmp_path):
    """openpyxl (and other scripts) write formulas without their values; read as data they
    were empty: a text of "" in mid-sheet, and rows dropped at its end."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    for row in (["id", "text"], [1, "good coffee"], [2, "=A1&A2"], [3, "=B2"]):
        sheet.append(row)
    workbook.save(tmp_path / "formulas.xlsx")
    with pytest.raises(BertclfError) as caught:
        read_table(tmp_path / "formulas.xlsx")
    assert str(caught.value) == (
        f"{tmp_path / 'formulas.xlsx'}: sheet 'Sheet' has 2 formula cell(s) without a saved "
        "value (the first: B3), which would read as empty; open the file in Excel or "
        "LibreOffice and save it, so that every formula's value is stored"
    )


def test_a_csv_of_a_million_columns_is_refused_at_its_header(tmp_path):
    """It took 2.2 GB and then succeeded; the header now says it, and CSV and TSV read only
    the columns asked for."""
    path = tmp_path / "wide.csv"
    with open(path, "w") as handle:
        handle.write(",".join(f"c{i}" for i in range(1_000_000)) + "\n")
        handle.write(",".join("x" for _ in range(1_000_000)) + "\n")
    errors, peak = read_in_a_process(path)
    message = "the header has 144,961 columns in its first MiB; bertclf reads at most 1,000"
    assert errors == [f"{path}: {message} (keep the columns you need)"] * 2
    (tmp_path / "wide.tsv").write_text("\t".join(f"c{i}" for i in range(1_001)) + "\n")
    with pytest.raises(BertclfError, match=r"the header has 1,001 columns; bertclf reads at"):
        read_table(tmp_path / "wide.tsv")
    print(f"1,000,000-column CSV ({path.stat().st_size:,} bytes): refused, peak +{peak} MB")
    assert peak < 100
    narrow = tmp_path / "narrow.tsv"
    write_table(pd.DataFrame({"id": ["1"], "text": ["good"], "other": ["x"]}), narrow)
    assert read_table(narrow, columns=["text", "id"]).columns.tolist() == ["id", "text"]
    with pytest.raises(
        BertclfError, match=r"no column 'body' \(key\); columns are: id, text, other"
    ):
        tables.require_columns(read_table(narrow, columns=["body"]), narrow, {"key": "body"})


def test_a_bad_byte_early_in_a_huge_file_is_named_reading_one_block(tmp_path):
    """The error path read the whole file to say where the bad byte is: 3 GB for a 1.5 GB
    CSV. In a 300 MB one with a bad byte at 14, it costs a block."""
    path = tmp_path / "huge.csv"
    block = b"good,x\n" * (1 << 17)
    with open(path, "wb") as handle:
        handle.write(b"text,label\n" + b"caf\xe9,x\n")
        for _ in range(300 * 1024 * 1024 // len(block)):
            handle.write(block)
    errors, peak = read_in_a_process(path)
    assert errors[0] == (
        f"{path}: not valid UTF-8 at byte 14 (line 2); save it as UTF-8 (in prepare, "
        "data.decode_errors=replace reads such bytes as U+FFFD)"
    )
    print(f"bad byte at 14 of 300 MB: named, peak +{peak} MB")
    assert peak < 100


@pytest.mark.parametrize("block", [1, 2, 3, 5, 1 << 20])
def test_the_bad_byte_is_found_across_block_boundaries(tmp_path, block):
    path = tmp_path / "t.csv"
    path.write_bytes("text\néé\nok\n".encode() + b"\xff\n")
    assert tables._first_bad_byte(path, block) == "byte 13 (line 4)"


def test_a_stray_quote_is_named_and_the_rows_are_counted_against_the_lines(tmp_path, capsys):
    """CSV allows quoted newlines, so a quote left open merges the rows after it into one text
    without an error: "wrote 2499 predictions" for 2,500 rows. The reader now names the row
    and prepare's report says how many rows came from how many lines."""
    from helpers import section

    from bertclf.prepare import prepare_splits

    lines = ["id,text,label"]
    for i in range(1, 2_501):
        text = f'"broken {i}' if i == 2_199 else f'"text number {i}"'
        lines.append(f"{i},{text},{'ab'[i % 2]}")
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    values = {"path": str(path), "test_path": None, "id_column": "id", "text_column": "text"}
    data = section("data", **values, label_column="label")
    tables._WARNED_MERGED.clear()
    splits, report = prepare_splits(data, 0, section("task"))
    warning = capsys.readouterr().err.strip()
    assert warning == (
        f"warning: {path}: the text of row 2199 holds a line break followed by what looks "
        "like the start of another row; a quote left open may have merged rows (compare the "
        "rows read with the file's lines)"
    )
    assert report.rows_read == {str(path): 2_499} and report.lines_read == {str(path): 2_500}
    assert report.rows_read_lines() == [
        f"read 2,499 rows from 2,500 lines after the header of {path}"
    ]


def test_a_text_with_line_breaks_but_no_row_after_them_gives_no_warning(tmp_path, capsys):
    path = tmp_path / "t.csv"
    write_table(pd.DataFrame({"text": ["two\nlines", "plain"], "label": ["a", "b"]}), path)
    tables._WARNED_MERGED.clear()
    tables.text_cells(read_table(path), "text", path)
    assert capsys.readouterr().err == ""


def test_a_directory_or_a_fifo_as_input_is_named_as_such(tmp_path):
    import os

    (tmp_path / "dir.csv").mkdir()
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(BertclfError, match=r"dir\.csv: is a directory; give a csv file"):
        read_table(tmp_path / "dir.csv")
    with pytest.raises(BertclfError, match=r"pipe\.csv: is not a regular file \(a FIFO"):
        list(read_table_chunks(tmp_path / "pipe.csv", 10))


def test_a_parquet_list_column_as_text_is_one_line(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": [["a", "b"], ["c"]]}).to_parquet(path)
    with pytest.raises(BertclfError) as caught:
        tables.text_cells(read_table(path), "text", path)
    assert str(caught.value).startswith(f"{path}: row 1 of column 'text' is not text: array(")
    assert str(caught.value).endswith("(a list; give one text per cell)")


# The CLI on the shared tiny build: late failures are one line, and no output is written.


def package(dag_repo) -> str:
    return str(dag_repo / "models/package")


@pytest.mark.e2e
def test_predict_names_late_failures_in_one_line_and_writes_nothing(dag_repo, tmp_path):
    rows = [{"id": i, "text": f"text {i}"} for i in range(5)]
    rows += [{"id": 5, "body": "no text key"}]  # the second chunk of 5 lacks the text
    (tmp_path / "late.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mixed = [{"id": i, "text": f"text {i}"} for i in range(5)]
    mixed += [{"id": f"k{i}", "text": f"text {i}"} for i in range(5)]  # ints, then strings
    (tmp_path / "mixed.jsonl").write_text("\n".join(json.dumps(r) for r in mixed) + "\n")
    predict = ["bertclf", "predict", "--model", package(dag_repo), "--quiet", "--chunk-rows", "5"]
    cases = [
        (
            ["--input", "late.jsonl", "--output", "out.csv"],
            "late.jsonl: no column 'text' (--text-column) in rows 6 to 6; columns are: id, body",
        ),
        (
            ["--input", "mixed.jsonl", "--output", "out.parquet", "--id-column", "id"],
            "out.parquet: column 'id' holds str values in rows 6 to 10, int64 in the rows before;"
            " Parquet holds one type per column: write CSV or JSONL, or make its values one type"
            " in the input",
        ),
        (["--input", "mixed.jsonl", "--output", "out.csv", "--batch-size", "0"], "--batch-size"),
    ]
    for args, message in cases:
        result = run([*predict, *args], tmp_path, check=False)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert not list(tmp_path.glob("out.*"))
    result = run([*predict, "--input", "mixed.jsonl", "--output", "out.csv"], tmp_path)
    assert "mixed.jsonl: read 10 rows" in result.stdout
