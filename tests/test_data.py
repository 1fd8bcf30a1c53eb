import dataclasses

import pandas as pd
import pytest
from helpers import section

from bertclf.cleaning import clean_text
from bertclf.config import DataConfig
from bertclf.errors import BertclfError
from bertclf.prepare import prepare_splits
from bertclf.tables import read_table, write_table

TABLE = pd.DataFrame(
    {
        "id": ["a", "b", "c"],
        "text": ["Great coffee!", "Awful tea, 2 stars", "Ça va — très bien"],
        "label": ["pos", "neg", "pos"],
    }
)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx", ".parquet", ".jsonl"])
def test_every_format_round_trips(tmp_path, suffix):
    path = tmp_path / f"table{suffix}"
    write_table(TABLE, path)
    pd.testing.assert_frame_equal(read_table(path), TABLE)


def test_unknown_extension_is_refused(tmp_path):
    path = tmp_path / "table.txt"
    path.write_text("text,label\n")
    with pytest.raises(BertclfError, match=r"table\.txt: unknown file type '\.txt'"):
        read_table(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(BertclfError, match=r"nothere\.csv: file not found"):
        read_table(tmp_path / "nothere.csv")


def test_corrupt_xlsx_is_named(tmp_path):
    path = tmp_path / "broken.xlsx"
    write_table(TABLE, tmp_path / "whole.xlsx")
    path.write_bytes((tmp_path / "whole.xlsx").read_bytes()[:500])
    with pytest.raises(BertclfError, match=r"broken\.xlsx: cannot be read as xlsx"):
        read_table(path)


def test_non_utf8_csv_names_the_byte(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncafé,a\n".encode("latin-1"))
    with pytest.raises(BertclfError, match=r"latin1\.csv: not valid UTF-8 at byte 14 \(line 2\)"):
        read_table(path)


def config(path, **overrides) -> DataConfig:
    values = {"name": "t", "path": str(path), "text_column": "text", "label_column": "label"}
    return section("data", **{"test_path": None, "id_column": None, **values, **overrides})


def test_missing_column_lists_the_columns_present(tmp_path):
    path = tmp_path / "t.csv"
    write_table(TABLE, path)
    with pytest.raises(
        BertclfError, match=r"no column 'body' \(data\.text_column\); columns are: id, text, label"
    ):
        prepare_splits(config(path, text_column="body"), seed=0)


def test_non_text_cell_names_its_row(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n{"text": 3.5, "label": "b"}\n')
    with pytest.raises(BertclfError, match=r"row 2 of column 'text' is not text: 3\.5"):
        prepare_splits(config(path), seed=0)


def test_single_class_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    write_table(pd.DataFrame({"text": [f"t{i}" for i in range(10)], "label": ["x"] * 10}), path)
    with pytest.raises(BertclfError, match=r"one class \('x'\)"):
        prepare_splits(config(path), seed=0)


def test_class_too_small_for_the_splits_is_named(tmp_path):
    path = tmp_path / "t.csv"
    labels = ["big"] * 20 + ["tiny", "tiny"]
    write_table(pd.DataFrame({"text": [f"t{i}" for i in range(22)], "label": labels}), path)
    with pytest.raises(BertclfError, match=r"class 'tiny' has 2 example\(s\)"):
        prepare_splits(config(path), seed=0)


def test_a_split_too_small_for_the_classes_names_the_split_the_key_and_what_works(tmp_path):
    """The seed's own shape (30 rows, 6 classes of 5): 0.2 of it is 6 test rows; 0.1 would be
    3, fewer than the classes. scikit-learn's message spoke of a "test_size" and named no key."""
    path = tmp_path / "t.csv"
    labels = [f"c{i % 6}" for i in range(30)]
    write_table(pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": labels}), path)
    with pytest.raises(BertclfError) as caught:
        prepare_splits(config(path, val_fraction=0.2, test_fraction=0.1), seed=0)
    assert str(caught.value) == (
        f"{path}: the test split would hold 3 of 30 rows (data.test_fraction=0.1) for 6 "
        "classes; a stratified split needs one row per class: set data.test_fraction to at "
        "least 0.19"
    )
    splits, _ = prepare_splits(config(path, val_fraction=0.2, test_fraction=0.19), seed=0)
    assert splits["test"]["label"].nunique() == 6  # the value it names works


def test_a_validation_split_too_small_for_the_classes_grows_to_one_row_a_class(tmp_path, capsys):
    """8 texts a class with the default fraction: the validation split takes one row of each
    class, and says so, instead of refusing the table (issue 50)."""
    path = tmp_path / "t.csv"
    labels = [f"c{i % 4}" for i in range(32)]
    write_table(pd.DataFrame({"text": [f"t{i}" for i in range(32)], "label": labels}), path)
    splits, _ = prepare_splits(config(path, val_fraction=0.1, test_fraction=0.25), seed=0)
    assert splits["val"]["label"].value_counts().to_dict() == {f"c{i}": 1 for i in range(4)}
    assert len(splits["train"]) == 32 - 8 - 4
    assert capsys.readouterr().out == (
        "prepare: the validation split holds 4 rows, one per class "
        "(data.val_fraction=0.1 of 32 rows would give 3)\n"
    )
    few = tmp_path / "few.csv"  # too few rows left to give training one a class too: refused
    write_table(pd.DataFrame({"text": [f"t{i}" for i in range(12)], "label": labels[:12]}), few)
    with pytest.raises(BertclfError, match=r"the validation split would hold 1 of 12 rows"):
        prepare_splits(config(few, val_fraction=0.1, test_fraction=0.5), seed=0)


def test_cleaning_is_off_by_default_and_keeps_case():
    text = "  Visit <b>HTTP://x.io</b> now, 42 Times!  "
    assert clean_text(text, section("data").clean) == text.strip()


def test_cleaning_options():
    options = section("data").clean
    options = dataclasses.replace(
        options,
        remove_urls=True,
        remove_html=True,
        remove_punctuation=True,
        remove_digits=True,
        remove_stopwords=True,
    )
    assert clean_text("Visit <b>https://x.io</b> now, 42 Times & more!", options) == "Visit Times"


def test_news_sample_splits_are_stratified_and_disjoint(news_sample):
    cfg = config(
        news_sample,
        text_column="EXCERPT",
        label_column="TAG",
        id_column="ID",
        val_fraction=0.2,
        test_fraction=0.2,
    )
    splits, report = prepare_splits(cfg, seed=0)
    assert report.split_sizes == {"train": 18, "val": 6, "test": 6}
    classes = set(splits["train"]["label"])
    assert len(classes) == 6
    for name in ("val", "test"):
        assert set(splits[name]["label"]) == classes
    texts = [set(part["text"]) for part in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    ids = pd.concat(splits.values())["id"]
    assert sorted(ids) == sorted(read_table(news_sample)["ID"].astype(str))


def test_duplicates_and_test_overlap_are_dropped_from_train(tmp_path):
    train = pd.DataFrame(
        {
            "text": ["dup", "dup", "in test", "conflict", "conflict", "  "]
            + [f"a{i}" for i in range(10)]
            + [f"b{i}" for i in range(10)],
            "label": ["a", "a", "a", "a", "b", "a"] + ["a"] * 10 + ["b"] * 10,
        }
    )
    test = pd.DataFrame({"text": ["in test", "t1", "t2"], "label": ["a", "a", "b"]})
    write_table(train, tmp_path / "train.csv")
    write_table(test, tmp_path / "test.csv")
    cfg = config(tmp_path / "train.csv", test_path=str(tmp_path / "test.csv"), val_fraction=0.2)
    splits, report = prepare_splits(cfg, seed=0)
    assert (
        report.duplicates_dropped,
        report.conflicting_labels_dropped,
        report.train_texts_in_test_dropped,
        report.empty_texts_dropped,
    ) == (1, 2, 1, 1)
    assert report.split_sizes == {"train": 17, "val": 4, "test": 3}
    assert "in test" not in set(splits["train"]["text"]) | set(splits["val"]["text"])


def test_repeated_id_is_named(tmp_path):
    path = tmp_path / "t.csv"
    write_table(
        pd.DataFrame(
            {"key": ["k1", "k2", "k1"], "text": ["a", "b", "c"], "label": ["x", "y", "x"]}
        ),
        path,
    )
    with pytest.raises(
        BertclfError, match=r"t\.csv: id 'k1' appears more than once in column 'key'"
    ):
        prepare_splits(config(path, id_column="key"), seed=0)


def test_ids_without_an_id_column_name_the_file_and_row(tmp_path):
    train = pd.DataFrame({"text": [f"t{i}" for i in range(20)], "label": ["a", "b"] * 10})
    write_table(train, tmp_path / "train.csv")
    write_table(pd.DataFrame({"text": ["u", "v"], "label": ["a", "b"]}), tmp_path / "test.csv")
    cfg = config(tmp_path / "train.csv", test_path=str(tmp_path / "test.csv"), val_fraction=0.2)
    splits, _ = prepare_splits(cfg, seed=0)
    assert sorted(splits["test"]["id"]) == ["test:1", "test:2"]
    assert set(pd.concat([splits["train"], splits["val"]])["id"]) == {
        f"train:{i}" for i in range(1, 21)
    }


def balanced(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"t{i}" for i in range(2 * n)], "label": ["a", "b"] * n})


def test_broken_csv_quote_is_one_line(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text('text,label\n"an open quote,a\nnext,b\n')
    with pytest.raises(BertclfError, match=r"broken\.csv: cannot be read as csv: "):
        prepare_splits(config(path), seed=0)


def test_empty_table_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\n")
    with pytest.raises(BertclfError, match=r"t\.csv: the table has no rows"):
        prepare_splits(config(path), seed=0)


def test_empty_texts_are_dropped_and_counted_or_refused(tmp_path):
    path = tmp_path / "t.csv"
    table = pd.concat([balanced(), pd.DataFrame({"text": ["", " \t "], "label": ["a", "b"]})])
    write_table(table, path)
    _, report = prepare_splits(config(path, val_fraction=0.2), seed=0)
    assert report.empty_texts_dropped == 2
    with pytest.raises(BertclfError, match=r"t\.csv: row 21 has an empty text in column 'text'"):
        prepare_splits(config(path, val_fraction=0.2, on_empty="error"), seed=0)


def test_conflicting_labels_are_reported_or_refused(tmp_path):
    path = tmp_path / "t.csv"
    extra = pd.DataFrame({"id": ["c1", "c2"], "text": ["same", "same"], "label": ["a", "b"]})
    table = balanced().assign(id=[f"r{i}" for i in range(20)])
    write_table(pd.concat([table, extra]), path)
    cfg = config(path, val_fraction=0.2, id_column="id")
    _, report = prepare_splits(cfg, seed=0)
    assert report.conflicting_labels_dropped == 2
    assert report.conflicting_label_examples == ["ids c1, c2 with labels a, b"]
    with pytest.raises(BertclfError, match=r"the same text has different labels \(ids c1, c2"):
        prepare_splits(config(path, val_fraction=0.2, id_column="id", on_conflict="error"), 0)


def test_non_utf8_bytes_are_replaced_and_counted_when_asked(tmp_path):
    path = tmp_path / "latin1.csv"
    rows = "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20))
    path.write_bytes(("text,label\ncafé,a\n" + rows).encode("latin-1"))
    splits, report = prepare_splits(config(path, val_fraction=0.2, decode_errors="replace"), 0)
    assert report.texts_with_replaced_bytes == 1
    assert "caf\ufffd" in set(pd.concat(splits.values())["text"])


@pytest.mark.parametrize(
    ("key", "value"), [("on_empty", "skip"), ("on_conflict", "keep"), ("decode_errors", "latin1")]
)
def test_unknown_policy_names_the_key(key, value):
    with pytest.raises(BertclfError, match=rf"params\.yaml: data\.{key} must be one of"):
        config("x.csv", **{key: value})


def test_missing_label_names_its_row(tmp_path):
    path = tmp_path / "t.csv"
    write_table(pd.concat([balanced(), pd.DataFrame({"text": ["x"], "label": [""]})]), path)
    with pytest.raises(BertclfError, match=r"t\.csv: row 21 has no label in column 'label'"):
        prepare_splits(config(path), seed=0)


def test_all_texts_empty_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    write_table(pd.DataFrame({"text": ["", "  "], "label": ["a", "b"]}), path)
    with pytest.raises(BertclfError, match=r"t\.csv: every text in column 'text' is empty"):
        prepare_splits(config(path), seed=0)


def test_own_table_group_splits_one_file_and_a_test_file_error_says_whose_it_is(tmp_path):
    """`-S data=table -S data.path=...` uses only the user's file; an error in the demo's
    separate test file (when a user keeps the default group) names data.test_path."""
    from helpers import ROOT

    from bertclf.config import compose_params, load_section

    rows = [
        (f"text {i} {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg") for i in range(40)
    ]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "my.csv", index=False)
    params = tmp_path / "params.yaml"
    compose_params(params, ["data=table", f"data.path={tmp_path / 'my.csv'}"], ROOT / "conf")
    splits, report = prepare_splits(load_section("data", params), seed=0)
    assert report.split_sizes == {"train": 28, "val": 4, "test": 8}

    compose_params(
        params,
        [f"data.path={tmp_path / 'my.csv'}", "data.text_column=text", "data.label_column=label"],
        ROOT / "conf",
    )
    data = load_section("data", params)
    pd.DataFrame({"review": ["x"], "score": ["y"]}).to_parquet(tmp_path / "demo_test.parquet")
    data.test_path = str(tmp_path / "demo_test.parquet")
    with pytest.raises(BertclfError) as raised:
        prepare_splits(data, seed=0)
    message = str(raised.value)
    assert message.startswith(f"{data.test_path}: no column 'text' (data.text_column)")
    assert "(this is data.test_path, the separate test table of data 'fine_food'" in message
    assert "use data=table, or set data.test_path=null" in message
