"""Hardening (issue 14), without a model: no user file is deleted or half-written, XLSX in and
out holds what it can, a checkpoint is valid at every moment, a package's manifest is checked
for shape and for everything in its folder, and the lock pins every package by hash."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT, run

from bertclf import files
from bertclf.errors import BertclfError
from bertclf.files import atomic_path
from bertclf.package import verify_bundle, write_manifest
from bertclf.tables import check_cells_fit, read_table, read_table_chunks, spreadsheet_safe

PREDICT = ["bertclf", "predict", "--model", "no-such-package", "--quiet"]


# 1. A directory the user names is never removed; the input is never the output.


def test_predict_refuses_an_existing_directory_as_output_and_keeps_it(tmp_path):
    pd.DataFrame({"text": ["a"]}).to_csv(tmp_path / "in.csv", index=False)
    folder = tmp_path / "dataset.parquet"
    (folder / "part=1").mkdir(parents=True)
    (folder / "part=1/data.parquet").write_bytes(b"user data")
    result = run([*PREDICT, "--input", "in.csv", "--output", "dataset.parquet"], tmp_path, False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: dataset.parquet: is a directory; give a file name"
    assert (folder / "part=1/data.parquet").read_bytes() == b"user data"


def test_evaluate_refuses_an_existing_directory_as_output(tmp_path):
    (tmp_path / "metrics.json").mkdir()
    pd.DataFrame({"text": ["a"], "label": ["x"]}).to_csv(tmp_path / "in.csv", index=False)
    args = ["bertclf", "evaluate", "--model", "pkg", "--input", "in.csv", "--output"]
    result = run([*args, "metrics.json"], tmp_path, check=False)
    assert result.returncode == 2
    assert "metrics.json: is a directory; give a file name" in result.stderr
    assert (tmp_path / "metrics.json").is_dir()


def test_predict_refuses_its_input_as_output(tmp_path):
    table = pd.DataFrame({"text": ["a"], "notes": ["kept"]})
    table.to_csv(tmp_path / "in.csv", index=False)
    before = (tmp_path / "in.csv").read_bytes()
    result = run([*PREDICT, "--input", "in.csv", "--output", "./in.csv"], tmp_path, check=False)
    assert result.returncode == 2
    assert "error: ./in.csv: is the input file; give another name" in result.stderr
    assert (tmp_path / "in.csv").read_bytes() == before


def test_atomic_path_replaces_a_file_and_only_an_owned_directory(tmp_path):
    (tmp_path / "out.txt").write_text("old")
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("new")
    assert (tmp_path / "out.txt").read_text() == "new"
    (tmp_path / "stage_out").mkdir()
    (tmp_path / "stage_out/old").write_text("x")
    with (
        pytest.raises(BertclfError, match="is a directory; give a file name"),
        atomic_path(tmp_path / "stage_out"),
    ):
        pass
    with atomic_path(tmp_path / "stage_out", replace_directory=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert [p.name for p in (tmp_path / "stage_out").iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "stage_out"]


# 2. Only the scratch of a writer that is gone is removed, matched literally.


def test_only_abandoned_scratch_directories_are_removed(tmp_path):
    name = "out[1].csv"  # a "[" would make a glob pattern of the name
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        live_scratch = tmp_path / f".{name}.{live.pid}.abc123.tmp"
        gone_scratch = tmp_path / f".{name}.{gone.pid}.def456.tmp"
        other_target = tmp_path / f".{name}.x.{gone.pid}.ghi789.tmp"  # another file's scratch
        for scratch in (live_scratch, gone_scratch, other_target):
            scratch.mkdir()
            (scratch / "part").write_text("being written")
        with atomic_path(tmp_path / name) as tmp:
            tmp.write_text("done")
        assert live_scratch.is_dir() and (live_scratch / "part").is_file()
        assert not gone_scratch.exists()
        assert other_target.is_dir()
        assert (tmp_path / name).read_text() == "done"
    finally:
        live.kill()
        live.wait()


def test_two_writers_of_one_name_both_finish(tmp_path):
    """Two processes write the same output at once: neither removes the other's scratch."""
    script = (
        "import sys, time; from bertclf.files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text(sys.argv[2]); time.sleep(2)\n"
    )
    out = tmp_path / "out.txt"
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(out), text], stderr=subprocess.PIPE)
        for text in ("first", "second")
    ]
    for writer in writers:
        assert writer.wait(60) == 0, writer.stderr.read()
    assert out.read_text() in ("first", "second")
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


# 3. Durability: the written file and both directories are flushed.


def test_written_files_and_their_directory_are_flushed_to_disk(tmp_path, monkeypatch):
    flushed = []
    real_fsync = os.fsync

    def fsync(fd):
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    with atomic_path(tmp_path / "out" / "table.csv") as tmp:
        tmp.write_text("a,b\n")
    scratch_file = [p for p in flushed if p.endswith("table.csv") and ".tmp" in p]
    assert scratch_file, flushed  # the data, before the rename
    assert flushed[-1] == str(tmp_path / "out")  # the rename itself, after it
    assert (tmp_path / "out/table.csv").read_text() == "a,b\n"


# 4. XLSX output: what the format cannot hold is refused before predicting; all text stays text.


@pytest.mark.parametrize(
    "text, message",
    [
        ("bell \x01 here", "row 2, column 'text' holds control character U+0001"),
        ("y" * 32_768, "row 2, column 'text' has 32,768 characters; an XLSX cell holds at most"),
    ],
)
def test_predict_to_xlsx_refuses_what_xlsx_cannot_hold_before_loading_the_model(
    tmp_path, text, message
):
    pd.DataFrame({"text": ["fine", text]}).to_parquet(tmp_path / "in.parquet")
    result = run([*PREDICT, "--input", "in.parquet", "--output", "out.xlsx"], tmp_path, False)
    assert result.returncode == 2
    # the package does not exist: reaching this line proves nothing was predicted
    assert result.stderr.strip().startswith(f"error: out.xlsx: {message}"), result.stderr
    assert "write CSV, TSV, Parquet or JSONL instead" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_xlsx_keeps_every_header_and_text_cell_as_text(tmp_path):
    from openpyxl import load_workbook

    from bertclf.tables import write_table

    table = pd.DataFrame({"=HYPERLINK(1)": ["=1+1", "@SUM(A1)", "plain"], "p": [0.5, 1.0, 2.0]})
    write_table(table, tmp_path / "out.xlsx")
    sheet = load_workbook(tmp_path / "out.xlsx").active
    cells = [[(c.value, c.data_type) for c in row] for row in sheet.iter_rows()]
    assert cells[0] == [("=HYPERLINK(1)", "s"), ("p", "s")]
    assert [row[0] for row in cells[1:]] == [("=1+1", "s"), ("@SUM(A1)", "s"), ("plain", "s")]
    assert [row[1] for row in cells[1:]] == [(0.5, "n"), (1, "n"), (2, "n")]
    with pytest.raises(BertclfError, match=r"column name '=\\x02' holds control character"):
        check_cells_fit(pd.DataFrame(columns=["=\x02"]), "out.xlsx")


# 5. CSV for spreadsheets: a leading ' only when asked.


def test_spreadsheet_safe_prefixes_formula_cells_only():
    table = pd.DataFrame(
        {"text": ["=1+1", "+cmd", "-2", "@SUM", "\tx", "plain", "a=b"], "p": [0.1] * 7}
    )
    safe = spreadsheet_safe(table)
    assert safe["text"].tolist() == ["'=1+1", "'+cmd", "'-2", "'@SUM", "'\tx", "plain", "a=b"]
    assert safe["p"].tolist() == [0.1] * 7
    assert table["text"].iloc[0] == "=1+1"  # the caller's table is not changed


def test_spreadsheet_safe_is_refused_for_formats_that_need_no_escaping(tmp_path):
    pd.DataFrame({"text": ["a"]}).to_csv(tmp_path / "in.csv", index=False)
    args = [*PREDICT, "--input", "in.csv", "--output", "out.parquet", "--spreadsheet-safe"]
    result = run(args, tmp_path, check=False)
    assert result.returncode == 2
    assert "out.parquet: --spreadsheet-safe is for CSV and TSV output" in result.stderr


# 6. An XLSX sheet with a far cell is refused at once, with flat memory.


def far_cell_xlsx(path: Path) -> Path:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet["A1"], sheet["B1"], sheet["A2"], sheet["B2"] = "text", "label", "good", "x"
    sheet["XFD1048576"] = "far"
    workbook.save(path)
    return path


def test_xlsx_with_a_far_cell_is_refused_naming_the_sheet(tmp_path):
    path = far_cell_xlsx(tmp_path / "far.xlsx")
    assert path.stat().st_size < 10_000
    message = "sheet 'Sheet' row 1048576 reaches column 16,384; bertclf reads at most 1,000 columns"
    script = (
        "import sys; from bertclf.tables import read_table, read_table_chunks\n"
        "for read in (read_table, lambda p: list(read_table_chunks(p, 1000))):\n"
        "    try: read(sys.argv[1])\n"
        "    except Exception as error: print(error)\n"
        # VmHWM: this process's own peak (ru_maxrss would count the forking pytest's memory)
        "print(int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) // 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300
    )
    *errors, peak_mb = result.stdout.strip().splitlines()
    assert errors == [f"{path}: {message} (delete the far cells)"] * 2, result.stderr
    assert int(peak_mb) < 1_000  # pandas' reader needs more than 5 GB for this 5 KB file
    print(f"far-cell XLSX refused with a peak of {peak_mb} MB")


def test_xlsx_reader_streams_and_reads_as_pandas_does(tmp_path):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    rows = [["id", "text", None, "text"], [1, "a", None, "b"], [None, None], [2.0, 3.5, "x", True]]
    for row in rows:
        sheet.append(row)
    sheet.append([])
    workbook.save(tmp_path / "t.xlsx")
    ours = read_table(tmp_path / "t.xlsx")
    pandas = pd.read_excel(tmp_path / "t.xlsx", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(ours, pandas)
    chunks = list(read_table_chunks(tmp_path / "t.xlsx", 2))
    assert [len(c) for c in chunks] == [2, 1]
    assert chunks[1].index.tolist() == [2]


# 7. A checkpoint is valid at every moment; one that cannot be read is set aside.


def small_model():
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 0.0]]), verbose=0)
    return model


EARLY_STOPPING = {"wait": 0, "best": 1.0, "stopped": False}


def test_checkpoint_replacement_keeps_a_readable_state_at_every_rename(tmp_path, monkeypatch):
    from bertclf.checkpoint import Checkpoint

    model = small_model()
    directory = tmp_path / "train-key"
    checkpoint = Checkpoint(directory)
    checkpoint.save(1, model, {**EARLY_STOPPING, "best_weights": None})
    states_seen = []
    real_replace = os.replace

    def replace(source, target):
        states_seen.append(Checkpoint(directory).next_epoch)  # as a killed run would find it
        real_replace(source, target)

    monkeypatch.setattr(files.os, "replace", replace)
    checkpoint.save(2, model, {**EARLY_STOPPING, "best_weights": model.get_weights()})
    assert states_seen and all(epoch >= 1 for epoch in states_seen)
    assert Checkpoint(directory).next_epoch == 2
    assert [p.name for p in directory.iterdir()] == ["epoch-0002"]


def test_unreadable_checkpoint_is_set_aside_with_a_warning(tmp_path, monkeypatch, capsys):
    from bertclf import checkpoint as checkpoints

    monkeypatch.setattr(checkpoints, "UNREADABLE", tmp_path / "unreadable")
    saved = tmp_path / "train-key" / "epoch-0001"
    saved.mkdir(parents=True)
    (saved / "state.json").write_text('{"next_epoch": 1, "early_st')  # cut short
    (saved / "state.index").write_bytes(b"")
    checkpoint = checkpoints.Checkpoint(tmp_path / "train-key")
    assert checkpoint.state is None and checkpoint.next_epoch == 0  # training starts over
    warning = capsys.readouterr().err.strip()
    assert warning.startswith(f"warning: {saved}: checkpoint cannot be read (")
    assert "not resumed from" in warning and len(warning.splitlines()) == 1
    assert not saved.exists()
    assert [p.name for p in (tmp_path / "unreadable").iterdir()][0].startswith(
        "train-key-epoch-0001-"
    )


def test_a_damaged_checkpoint_file_is_found_before_it_is_read_and_set_aside(
    tmp_path, monkeypatch, capsys
):
    """A state.data file cut in half (a disk error, a partial copy) made every later run fail
    with TensorFlow's "Read less bytes than requested": its digest now finds it first, and
    training starts over."""
    from bertclf import checkpoint as checkpoints

    monkeypatch.setattr(checkpoints, "UNREADABLE", tmp_path / "unreadable")
    model = small_model()
    directory = tmp_path / "train-key"
    checkpoints.Checkpoint(directory).save(1, model, {**EARLY_STOPPING, "best_weights": None})
    assert checkpoints.Checkpoint(directory).next_epoch == 1  # intact: resumed from
    (data,) = (directory / "epoch-0001").glob("state.data-*")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    capsys.readouterr()
    checkpoint = checkpoints.Checkpoint(directory)
    assert checkpoint.state is None and checkpoint.next_epoch == 0
    warning = capsys.readouterr().err.strip()
    assert f"({data.name} is damaged (its sha256 differs from the one saved))" in warning
    assert len(warning.splitlines()) == 1 and not (directory / "epoch-0001").exists()


# 8. A package's folder holds exactly what its manifest lists, and the manifest is well formed.


@pytest.fixture
def bundle(tmp_path) -> Path:
    bundle = tmp_path / "package"
    (bundle / "saved_model/variables").mkdir(parents=True)
    (bundle / "labels.json").write_text("{}")
    (bundle / "saved_model/variables/variables.index").write_bytes(b"index")
    (bundle / "saved_model/assets").mkdir()  # TensorFlow writes it empty
    write_manifest(bundle)
    return bundle


def rewrite_manifest(bundle: Path, change) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps(change(manifest)))


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda b: (b / "empty").mkdir(), "empty: folder not in the manifest"),
        (lambda b: os.mkfifo(b / "pipe"), "pipe: not a regular file"),
        (lambda b: (b / "link").symlink_to(b / "labels.json"), "link: a link"),
        (
            lambda b: (b / "saved_model/manifest.json").write_text("{}"),
            "saved_model/manifest.json: file not in the manifest",
        ),
        (
            lambda b: rewrite_manifest(b, lambda m: {**m, "format_version": True}),
            "format_version True is not one this bertclf",
        ),
        (
            lambda b: rewrite_manifest(b, lambda m: {**m, "format_version": 2.0}),
            "format_version 2.0 is not one this bertclf",
        ),
        (
            lambda b: rewrite_manifest(b, lambda m: [m]),
            "not a manifest (a JSON object whose 'files' maps names to sha256)",
        ),
        (
            lambda b: rewrite_manifest(b, lambda m: {"format_version": 2}),
            "not a manifest (a JSON object whose 'files' maps names to sha256)",
        ),
        (lambda b: (b / "manifest.json").write_text("{not json"), "manifest.json: not valid JSON"),
        (
            lambda b: rewrite_manifest(b, lambda m: {**m, "files": {"../x": "0"}}),
            "lists '../x', which is not a file inside the package",
        ),
    ],
)
def test_anything_the_manifest_does_not_vouch_for_is_refused(bundle, tamper, message):
    verify_bundle(bundle)  # as written
    tamper(bundle)
    with pytest.raises(BertclfError, match=message.replace("(", r"\(").replace(")", r"\)")):
        verify_bundle(bundle)


def test_expected_manifest_digest_from_argument_or_environment(bundle, monkeypatch):
    digest = files.sha256_file(bundle / "manifest.json")
    verify_bundle(bundle, expect_sha256=digest.upper())
    with pytest.raises(BertclfError, match="not the package you were given"):
        verify_bundle(bundle, expect_sha256="0" * 64)
    monkeypatch.setenv("BERTCLF_PACKAGE_SHA256", "f" * 64)
    with pytest.raises(BertclfError, match="BERTCLF_PACKAGE_SHA256"):
        verify_bundle(bundle)
    monkeypatch.setenv("BERTCLF_PACKAGE_SHA256", digest)
    verify_bundle(bundle)


@pytest.mark.parametrize("given", ["", "  ", "abc", "g" * 64, None])
def test_an_empty_or_malformed_expected_digest_fails_closed(bundle, monkeypatch, given):
    """`--expect-sha256 ""` and `BERTCLF_PACKAGE_SHA256=` (a deploy script whose variable is
    unset) loaded the package unchecked; given but not a sha256 is now refused."""
    if given is None:  # the variable set, but empty
        monkeypatch.setenv("BERTCLF_PACKAGE_SHA256", "")
        source, shown = "BERTCLF_PACKAGE_SHA256", "''"
    else:
        monkeypatch.delenv("BERTCLF_PACKAGE_SHA256", raising=False)
        source, shown = "--expect-sha256", repr(given)
    with pytest.raises(BertclfError) as caught:
        verify_bundle(bundle, expect_sha256=given)
    assert str(caught.value) == (
        f"{source} is {shown}: expected a sha256, 64 hexadecimal digits (leave it unset to "
        "load without this check)"
    )


def test_metadata_shows_no_absolute_path_of_the_build_machine(tmp_path):
    from bertclf.serve import _without_paths

    card = {
        "encoder": {"origin": "/home/builder/venv/site-packages/pkg/model/model.safetensors"},
        "notes": ["C:\\Users\\builder\\model", "relative/path stays", "a / b"],
    }
    cleaned = _without_paths(card)
    assert cleaned["encoder"]["origin"] == "model.safetensors"
    assert cleaned["notes"] == ["model", "relative/path stays", "a / b"]
    assert "builder" not in json.dumps(cleaned)


# 12. The lock pins every package, the build backend included, by hash.


def test_lock_pins_every_package_with_hashes_and_install_requires_them():
    lines = (ROOT / "requirements.lock").read_text().replace("\\\n", " ").splitlines()
    requirements = [line for line in lines if line.strip() and not line.startswith("#")]
    assert len(requirements) > 100
    for line in requirements:
        assert "==" in line and "--hash=sha256:" in line, line
    names = {line.split("==")[0].strip().lower() for line in requirements}
    assert {"setuptools", "antlr4-python3-runtime", "tensorflow"} <= names
    makefile = (ROOT / "Makefile").read_text()
    install = makefile.split("$(STAMP):")[1].split("\n\n")[0]
    assert install.count("--require-hashes") >= 2, install
    assert "/tmp/bertclf-lock" not in makefile  # no scratch path shared by every user


def test_xlsx_reader_reads_a_larger_sheet_whole(tmp_path):
    """2,000 rows: nothing cut, nothing padded (the time is printed, not asserted)."""
    table = pd.DataFrame({"text": [f"t{i}" for i in range(2000)], "label": ["a", "b"] * 1000})
    table.to_excel(tmp_path / "big.xlsx", index=False)
    start = time.perf_counter()
    pd.testing.assert_frame_equal(read_table(tmp_path / "big.xlsx"), table)
    print(f"2,000-row XLSX read in {time.perf_counter() - start:.2f} s")


def test_serve_refuses_a_queue_smaller_than_a_request_and_shows_its_defaults(tmp_path):
    """--max-queue-texts below --max-texts made every full request 503 with Retry-After
    forever; it is refused at start, before the package is read. --help shows the defaults."""
    args = ["bertclf", "serve", "--model", "no-such-package", "--max-texts", "300"]
    result = run([*args, "--max-queue-texts", "100"], tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --max-queue-texts 100 is below --max-texts 300: a request of 300 texts would "
        "get 503 forever; give --max-queue-texts at least --max-texts"
    )
    shown = " ".join(run(["bertclf", "serve", "--help"], tmp_path).stdout.split())
    for default in ("(default: 127.0.0.1)", "(default: 8000)", "texts a request (default: 256)"):
        assert default in shown, default
