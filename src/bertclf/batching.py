"""Batches of unpadded token ids: bucketed by length and padded per batch.

Training, evaluation and inference all batch this way; nothing here trains or predicts.
"""

import numpy as np

from bertclf.config import TokenizeConfig


def padded_length(length: int, multiple: int, max_length: int) -> int:
    """The next multiple of `multiple` at or above `length`, but never above `max_length`."""
    return min(-(-length // multiple) * multiple, max_length)


def pad_batch(
    sequences: list[np.ndarray], multiple: int, max_length: int, pad_id: int = 0
) -> dict[str, np.ndarray]:
    """Pad one batch to its own bucketed length: input_ids and attention_mask, int32."""
    width = padded_length(max(len(s) for s in sequences), multiple, max_length)
    input_ids = np.full((len(sequences), width), pad_id, dtype=np.int32)
    attention_mask = np.zeros((len(sequences), width), dtype=np.int32)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = seq
        attention_mask[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def bucketed_batches(
    lengths: np.ndarray,
    batch_size: int,
    multiple: int,
    max_length: int,
    rng: np.random.Generator | None,
) -> list[np.ndarray]:
    """Index batches whose texts share a padded length.

    With `rng`, order is shuffled within each bucket and across batches (training); without,
    texts are sorted by length (prediction: the least padding).
    """
    buckets = np.array([padded_length(n, multiple, max_length) for n in lengths])
    batches = []
    for width in np.unique(buckets):
        members = np.flatnonzero(buckets == width)
        if rng is not None:
            members = rng.permutation(members)
        else:
            members = members[np.argsort(lengths[members], kind="stable")]
        batches.extend(np.array_split(members, range(batch_size, len(members), batch_size)))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def full_batches(batches: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Only batches of exactly `batch_size`: the partial batches are pooled, regrouped and the
    last remainder (fewer than batch_size texts) dropped, so every step has the same shape."""
    full = [b for b in batches if len(b) == batch_size]
    rest = np.concatenate([b for b in batches if len(b) != batch_size] or [np.array([], int)])
    usable = len(rest) - len(rest) % batch_size
    return full + [rest[i : i + batch_size] for i in range(0, usable, batch_size)]


class BucketedSequence:
    """Batches padded to their own bucketed length. With a seed, the order is reshuffled every
    epoch (within and across buckets) from (seed, epoch), so a run repeats exactly.

    With `drop_remainder`, every batch holds exactly `batch_size` texts and a few texts sit out
    each epoch (multi-worker training: every worker must run the same number of equal steps).
    `dataset()` is the `tf.data` view that Keras trains on."""

    def __init__(
        self,
        sequences: list[np.ndarray],
        labels: np.ndarray | None,
        batch_size: int,
        tokenize: TokenizeConfig,
        seed: int | None = None,
        drop_remainder: bool = False,
    ):
        self.sequences = sequences
        self.labels = labels
        self.batch_size = batch_size
        self.tokenize = tokenize
        self.seed = seed
        self.drop_remainder = drop_remainder
        self.lengths = np.array([len(s) for s in sequences])
        self.epoch = 0  # the epoch of the next pass (seeded order)
        self._plan()

    def _plan(self) -> None:
        rng = None if self.seed is None else np.random.default_rng([self.seed, self.epoch])
        self.batches = bucketed_batches(
            self.lengths,
            self.batch_size,
            self.tokenize.bucket_multiple,
            self.tokenize.max_length,
            rng,
        )
        if self.drop_remainder:
            self.batches = full_batches(self.batches, self.batch_size)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        return self.batch(self.batches[index])

    def batch(self, members: np.ndarray):
        """The padded inputs of these texts, with their labels when there are labels."""
        inputs = pad_batch(
            [self.sequences[i] for i in members],
            self.tokenize.bucket_multiple,
            self.tokenize.max_length,
        )
        if self.labels is None:
            return inputs
        return inputs, self.labels[members]

    def start_at(self, epoch: int) -> None:
        """The batch order of `epoch`, as if the earlier epochs had run: the next pass over
        `dataset()` is that epoch."""
        self.epoch = epoch
        self._plan()

    def epoch_batches(self) -> list[np.ndarray]:
        """The batches of one pass: with a seed, each call plans the next epoch (the first
        call, epoch 0 or the one `start_at` named)."""
        if self.seed is not None:
            self._plan()
            self.epoch += 1
        return self.batches

    def order(self) -> np.ndarray:
        """The input position of every output row, batch after batch."""
        return np.concatenate(self.batches)

    def dataset(self, shards: int = 1, shard_ids: range = range(1)):
        """A `tf.data.Dataset` of this plan's batches: each pass over it is one epoch. Lengths
        are declared unknown, so one traced training step serves every padded length. With
        `shards`, each batch is cut in that many parts and the parts `shard_ids` follow each
        other (the shares of one worker's replicas)."""
        import tensorflow as tf

        def batches():
            for members in self.epoch_batches():
                parts = np.array_split(members, shards)
                for shard in shard_ids:
                    yield self.batch(parts[shard])

        ids = tf.TensorSpec((None, None), tf.int32)
        signature = {"input_ids": ids, "attention_mask": ids}
        if self.labels is not None:
            label_shape = (None, *self.labels.shape[1:])
            signature = (signature, tf.TensorSpec(label_shape, tf.as_dtype(self.labels.dtype)))
        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        cardinality = tf.data.experimental.assert_cardinality(len(self) * len(shard_ids))
        return dataset.apply(cardinality)

    def replica_dataset(self, context):
        """`dataset` for one worker under `strategy.distribute_datasets_from_function`: its
        replicas' shares of every global batch."""
        local = context.num_replicas_in_sync // context.num_input_pipelines
        first = context.input_pipeline_id * local
        return self.dataset(context.num_replicas_in_sync, range(first, first + local))
