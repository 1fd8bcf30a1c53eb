"""Entry points print one line per problem and exit non-zero, unless BERTCLF_DEBUG=1 asks for
the traceback."""

import pandas as pd
from helpers import run

PREDICT = ["bertclf", "predict", "--model", "m", "--input", "in.csv"]


def test_bad_input_is_one_line_with_exit_2(tmp_path):
    result = run([*PREDICT, "--output", "out.csv"], tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: in.csv: file not found"
    assert not (tmp_path / "out.csv").exists()


def test_unexpected_failure_is_one_line_with_its_type_and_exit_1(tmp_path):
    (tmp_path / "in.csv").write_text("text\nhello\n")
    (tmp_path / "a_file").write_text("")
    result = run([*PREDICT, "--output", "a_file/out.csv"], tmp_path, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: FileExistsError: ")
    assert lines[0].endswith("(set BERTCLF_DEBUG=1 for the traceback)")


def test_debug_variable_lets_the_traceback_through(tmp_path):
    result = run(
        [*PREDICT, "--output", "out.csv"], tmp_path, check=False, env={"BERTCLF_DEBUG": "1"}
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "bertclf.errors.BertclfError: in.csv: file not found" in result.stderr


def test_stage_errors_are_one_line_too(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epochs: zero\n")
    stage = __import__("helpers").ROOT / "stages/train.py"
    result = run(["python", str(stage)], tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: params.yaml: train.epochs")
    assert "Traceback" not in result.stderr


def test_predict_names_an_unreadable_input_and_writes_nothing(tmp_path):
    from bertclf.tables import write_table

    write_table(pd.DataFrame({"text": ["a", "b"]}), tmp_path / "whole.xlsx")
    (tmp_path / "broken.csv").write_text('text,label\n"an open quote,a\nnext,b\n')
    (tmp_path / "broken.xlsx").write_bytes((tmp_path / "whole.xlsx").read_bytes()[:300])
    for name, reason in [("broken.csv", "EOF inside string"), ("broken.xlsx", "not a zip file")]:
        args = ["bertclf", "predict", "--model", "m", "--input", name, "--output", "out.csv"]
        result = run(args, tmp_path, check=False)
        assert result.returncode == 2, result.stderr
        line = result.stderr.strip()
        assert line.startswith(f"error: {name}: cannot be read as ") and reason in line, line
        assert "\n" not in line
        assert not (tmp_path / "out.csv").exists()
