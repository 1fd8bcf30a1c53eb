"""Tokenization, the unpadded token cache, and per-batch padding (dynamic length).

TensorFlow-free: the cache is Parquet (list<int32> per text), never a pickle.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from bertclf.errors import BertclfError

TOKENIZER_FILE = "tokenizer.json"


def load_tokenizer(model_dir: str | Path, max_length: int) -> Tokenizer:
    """The encoder's fast tokenizer, with no padding and truncation at `max_length`.

    Some shipped tokenizer.json files have padding and truncation baked in: both are reset here.
    """
    path = Path(model_dir) / TOKENIZER_FILE
    if not path.is_file():
        raise BertclfError(f"{path}: tokenizer file not found")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def encode(tokenizer: Tokenizer, texts: list[str]) -> tuple[list[np.ndarray], int]:
    """Token ids per text (special tokens included, unpadded), and how many were truncated."""
    encodings = tokenizer.encode_batch(list(texts))
    truncated = sum(1 for e in encodings if e.overflowing)
    return [np.asarray(e.ids, dtype=np.int32) for e in encodings], truncated


def write_token_cache(
    path: str | Path, ids: list[str], token_ids: list[np.ndarray], label_ids: np.ndarray | None
) -> None:
    columns = {
        "id": pa.array(ids, type=pa.string()),
        "input_ids": pa.array([t.tolist() for t in token_ids], type=pa.list_(pa.int32())),
    }
    if label_ids is not None:
        columns["label_id"] = pa.array(np.asarray(label_ids, dtype=np.int32))
    pq.write_table(pa.table(columns), path)


@dataclass
class TokenCache:
    """One split's token cache: ids, unpadded token ids and label ids, row for row."""

    ids: np.ndarray
    sequences: list[np.ndarray]
    labels: np.ndarray | None

    def subset(self, rows: np.ndarray) -> "TokenCache":
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        labels = None if self.labels is None else self.labels[rows]
        return TokenCache(self.ids[rows], [self.sequences[i] for i in rows], labels)


def read_token_cache(path: str | Path) -> TokenCache:
    table = pq.read_table(path)
    column = table.column("input_ids").combine_chunks()
    offsets = column.offsets.to_numpy()
    flat = column.values.to_numpy()
    sequences = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    labels = table.column("label_id").to_numpy() if "label_id" in table.column_names else None
    return TokenCache(table.column("id").to_numpy(zero_copy_only=False), sequences, labels)


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
