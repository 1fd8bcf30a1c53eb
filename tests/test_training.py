"""Bucketed batches across epochs, and prediction order after length sorting."""

import numpy as np
from helpers import section

from bertclf.batching import BucketedSequence, predict_probabilities

TOKENIZE = section("tokenize", max_length=64, bucket_multiple=16)


def sequences(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.arange(1, rng.integers(2, 65), dtype=np.int32) for _ in range(n)]


def epoch_order(data: BucketedSequence) -> list[int]:
    """One pass over the tf.data view that Keras trains on: one epoch."""
    order = []
    for inputs, labels in data.dataset().as_numpy_iterator():
        assert inputs["input_ids"].shape[1] <= TOKENIZE.max_length  # the cap
        assert inputs["input_ids"].shape[1] % 16 == 0  # a bucket boundary
        assert inputs["input_ids"].shape[0] <= 8
        order.extend(labels.tolist())
    return order


def test_every_example_once_per_epoch_and_reshuffled_from_the_seed():
    texts = sequences(100)
    labels = np.arange(100)  # labels carry the example index
    data = BucketedSequence(texts, labels, 8, TOKENIZE, seed=3)
    first = epoch_order(data)
    second = epoch_order(data)  # the next pass is the next epoch
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != second  # a new order each epoch

    again = BucketedSequence(texts, labels, 8, TOKENIZE, seed=3)
    assert epoch_order(again) == first  # the same seed repeats it
    assert epoch_order(again) == second
    again.start_at(1)  # a resumed run
    assert epoch_order(again) == second


def test_batches_of_every_length_in_one_dataset():
    data = BucketedSequence(sequences(100), np.arange(100), 8, TOKENIZE, seed=0)
    widths = {inputs["input_ids"].shape[1] for inputs, _ in data.dataset().as_numpy_iterator()}
    assert widths == {16, 32, 48, 64}


def test_a_worker_gets_its_share_of_each_global_batch():
    def worker(shard: int, shards: int) -> list[list[int]]:  # each worker: its own process
        data = BucketedSequence(sequences(40), np.arange(40), 8, TOKENIZE, 0, drop_remainder=True)
        parts = data.dataset(shards, range(shard, shard + 1))
        return [labels.tolist() for _, labels in parts.as_numpy_iterator()]

    shares, whole = [worker(0, 2), worker(1, 2)], worker(0, 1)
    assert [a + b for a, b in zip(*shares, strict=True)] == whole
    assert all(len(share) == 4 for share in shares[0] + shares[1])


def test_batches_keep_their_length_and_mask():
    texts = sequences(40)
    data = BucketedSequence(texts, np.arange(40), 8, TOKENIZE, seed=0)
    for i in range(len(data)):
        inputs, labels = data[i]
        for row, index in enumerate(labels):
            length = len(texts[index])
            assert inputs["attention_mask"][row].sum() == length


class EchoModel:
    """Stands in for Keras: 'probabilities' that encode each row's first and last real token."""

    def predict_on_batch(self, inputs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        last = ids[np.arange(len(ids)), mask.sum(axis=1) - 1]
        return np.stack([ids[:, 1], last], axis=1).astype(np.float32)


def test_prediction_order_is_restored_after_sorting():
    rng = np.random.default_rng(1)
    texts = [
        np.array([101, i, *rng.integers(1000, 2000, rng.integers(0, 60)), 5000 + i])
        for i in range(37)
    ]
    out = predict_probabilities(
        EchoModel(), texts, 4, section("tokenize", max_length=64, bucket_multiple=16)
    )
    assert out[:, 0].tolist() == list(range(37))
    assert out[:, 1].tolist() == [5000 + i for i in range(37)]
