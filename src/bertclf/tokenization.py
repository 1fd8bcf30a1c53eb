"""Tokenization, fitting long texts to the window (in numpy, and in TensorFlow ops for the
package's SavedModel, side by side), and the unpadded token cache.

TensorFlow-free at import (the graph form imports it itself): the cache is Parquet
(list<int32> per text), never a pickle. Padding is per batch, to each batch's own length
(`batching`).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from bertclf.config import TokenizeConfig
from bertclf.errors import BertclfError
from bertclf.layout import TOKENIZER

PAIR_SEPARATOR = "bertclf.pair_separator_id"  # a pair cache's Parquet metadata key


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """The encoder's fast tokenizer, with neither padding nor truncation: `encode` fits long
    texts to the window by the configured strategy.

    Some shipped tokenizer.json files have padding and truncation baked in: both are reset here.
    Special tokens written in a text are read as text.
    """
    path = Path(model_dir) / TOKENIZER
    if not path.is_file():
        raise BertclfError(f"{path}: tokenizer file not found")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    # "[SEP]" typed in a text is text, as the in-graph tokenizer reads it: a text cannot end a
    # sequence early or pose as a special token
    tokenizer.encode_special_tokens = True
    return tokenizer


def fit_to_window(ids: np.ndarray, tokenize: TokenizeConfig) -> list[np.ndarray]:
    """One text's token ids ([CLS] ... [SEP]) as the sequences the model sees.

    head: the first max_length - 2 tokens; head_tail: head_fraction of them from the start and
    the rest from the end; chunks: windows of max_length - 2 tokens, each overlapping the
    previous by chunk_stride. Every sequence keeps [CLS] first and [SEP] last."""
    cls, content, sep = ids[:1], ids[1:-1], ids[-1:]
    budget = tokenize.max_length - 2
    if len(content) <= budget:
        return [ids]
    if tokenize.long_text == "head":
        parts = [content[:budget]]
    elif tokenize.long_text == "head_tail":
        head = round(budget * tokenize.head_fraction)
        parts = [content[:head], content[len(content) - (budget - head) :]]
    else:
        step = budget - tokenize.chunk_stride
        starts = range(0, len(content) - tokenize.chunk_stride, step)
        return [np.concatenate([cls, content[s : s + budget], sep]) for s in starts]
    return [np.concatenate([cls, *parts, sep])]


def fit_to_window_in_graph(content, tokenize: TokenizeConfig, cls_id: int, sep_id: int):
    """`fit_to_window` in TensorFlow ops, for a batch: `content` holds each text's word-piece
    ids without [CLS] and [SEP] (a RaggedTensor, int64 row partitions). Returns the sequences
    the model sees ([CLS] ... [SEP], ragged) and the text each comes from."""
    import tensorflow as tf

    budget = tokenize.max_length - 2
    n = content.row_lengths()
    if tokenize.long_text == "chunks":
        step = budget - tokenize.chunk_stride
        limit = tf.where(n > budget, n - tokenize.chunk_stride, 1)
        starts = tf.ragged.range(tf.zeros_like(n), limit, step)
        text_of = starts.value_rowids()
        first = starts.flat_values
        last = tf.minimum(first + budget, tf.gather(n, text_of))
        positions = tf.ragged.range(first, last)
    elif tokenize.long_text == "head_tail":
        head = round(budget * tokenize.head_fraction)
        text_of = tf.range(tf.size(n, out_type=tf.int64))
        tail_start = tf.where(n > budget, n - (budget - head), tf.minimum(n, head))
        positions = tf.concat(
            [tf.ragged.range(tf.minimum(n, head)), tf.ragged.range(tail_start, n)], axis=1
        )
    else:  # head
        text_of = tf.range(tf.size(n, out_type=tf.int64))
        positions = tf.ragged.range(tf.minimum(n, budget))
    offsets = tf.gather(content.row_starts(), text_of)
    ids = tf.gather(content.flat_values, positions + offsets[:, None])
    rows = tf.shape(ids.row_lengths(), out_type=tf.int64)
    cls = tf.fill(rows, cls_id)[:, None]
    sep = tf.fill(rows, sep_id)[:, None]
    return tf.concat([cls, ids, sep], axis=1), text_of


def pair_budget(n_first, n_second, budget: int, ops=np):
    """Tokens kept from each text of a pair whose contents hold `n_first` and `n_second`
    tokens, so that both fit `budget`: the longer text is cut first (`longest_first`), the
    shorter keeps up to half the budget (the first text, of two of a length). `ops` is numpy,
    or tensorflow for tensors of lengths."""
    fits = n_first + n_second <= budget
    half = budget // 2
    shorter_first = ops.minimum(n_first, half)
    longer_first = budget - ops.minimum(n_second, half)
    keep_first = ops.where(
        fits, n_first, ops.where(n_first <= n_second, shorter_first, longer_first)
    )
    return keep_first, ops.where(fits, n_second, budget - keep_first)


def fit_pair_to_window_in_graph(first, second, tokenize: TokenizeConfig, cls_id: int, sep_id: int):
    """A batch of pairs in TensorFlow ops, as `encode_pairs` fits them: `first` and `second`
    hold each text's word-piece ids without special tokens (RaggedTensors). Returns
    [CLS] first [SEP] second [SEP] per pair (ragged), the longer text cut first, and the pair
    each comes from."""
    import tensorflow as tf

    lengths = (first.row_lengths(), second.row_lengths())
    keep_first, keep_second = pair_budget(*lengths, tokenize.max_length - 3, ops=tf)
    rows = tf.shape(keep_first, out_type=tf.int64)
    cls = tf.fill(rows, tf.constant(cls_id, first.dtype))[:, None]
    sep = tf.fill(rows, tf.constant(sep_id, first.dtype))[:, None]
    head = tf.ragged.range(keep_first)
    tail = tf.ragged.range(keep_second)
    first = tf.gather(first.flat_values, head + first.row_starts()[:, None])
    second = tf.gather(second.flat_values, tail + second.row_starts()[:, None])
    return tf.concat([cls, first, sep, second, sep], axis=1), tf.range(rows[0])


@dataclass
class Encoded:
    """Texts as model inputs: one sequence per text, or several with chunks."""

    sequences: list[np.ndarray]
    text_index: np.ndarray  # the text each sequence comes from, ascending
    lengths: np.ndarray  # each text's whole token count, [CLS] and [SEP] included
    pair_separator_id: int | None = None  # pairs: the token that ends the first text

    def long(self, max_length: int) -> np.ndarray:
        """Which texts do not fit the window."""
        return self.lengths > max_length


# A BERT word piece covers at most 100 characters of a word (WordPiece's
# max_input_chars_per_word: a longer word is one [UNK]); with a separator, 101 characters
# hold at least one token of ordinary text.
CHARS_PER_TOKEN = 101
PIECE_CHARS = 100_000  # chunks: a long text is tokenized this many characters at a time


def window_budget(tokenize: TokenizeConfig) -> tuple[int, int]:
    """Characters kept from the start and from the end of a text before tokenizing it (head:
    none from the end). Tokenizing costs about 140 MB of memory per MB of text, and the
    window uses only max_length - 2 tokens: two tokens' worth of characters to spare, so
    that a word cut at the edge lies beyond the tokens kept."""
    budget = tokenize.max_length - 2
    if tokenize.long_text == "head_tail":
        head = round(budget * tokenize.head_fraction)
        return (head + 2) * CHARS_PER_TOKEN, (budget - head + 2) * CHARS_PER_TOKEN
    return (budget + 2) * CHARS_PER_TOKEN, 0


def cut_to_window(text: str, tokenize: TokenizeConfig) -> str:
    """The part of `text` that its window can use: head keeps the budget's first characters,
    head_tail its first and last (joined by a space), chunks everything. The tokens the
    window keeps are those of the whole text, except where the kept characters hold fewer
    tokens than the window (long runs of spaces or control characters, or words of over
    100 characters)."""
    if tokenize.long_text == "chunks":
        return text
    head, tail = window_budget(tokenize)
    if len(text) <= head + tail:
        return text
    return text[:head] + " " + text[len(text) - tail :] if tail else text[:head]


def _pieces(text: str) -> list[str]:
    """`text` in pieces of at most PIECE_CHARS characters, each cut before a whitespace
    character where there is one: BERT's normalizer works per character and its
    pre-tokenizer splits at whitespace, so the pieces' tokens are the text's."""
    pieces, start = [], 0
    while len(text) - start > PIECE_CHARS:
        end = start + PIECE_CHARS
        cut = max(text.rfind(space, start + 1, end) for space in " \n\t\r")
        cut = cut if cut > start else end
        pieces.append(text[start:cut])
        start = cut
    return [*pieces, text[start:]]


def _token_ids(tokenizer: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Each text's token ids, [CLS] ... [SEP]; a text longer than PIECE_CHARS is tokenized a
    piece at a time, so memory follows the piece, not the text."""
    ids = [None] * len(texts)
    short = [i for i, text in enumerate(texts) if len(text) <= PIECE_CHARS]
    for i, encoding in zip(short, tokenizer.encode_batch([texts[i] for i in short]), strict=True):
        ids[i] = np.asarray(encoding.ids, dtype=np.int32)
    if len(short) < len(texts):
        cls, sep = (
            np.asarray(tokenizer.encode("").ids[:1]),
            np.asarray(tokenizer.encode("").ids[-1:]),
        )
        for i in sorted(set(range(len(texts))) - set(short)):
            content = [
                np.asarray(tokenizer.encode(piece, add_special_tokens=False).ids)
                for piece in _pieces(texts[i])
            ]
            ids[i] = np.concatenate([cls, *content, sep]).astype(np.int32)
    return ids


def encode(tokenizer: Tokenizer, texts: list[str], tokenize: TokenizeConfig) -> Encoded:
    """Token ids of every text, fitted to `tokenize.max_length` by `tokenize.long_text`. Each
    text is first cut to what its window can use (`cut_to_window`), so a text of any size
    costs the memory of its window: a text's length counts its tokens up to that cut."""
    sequences, text_index, lengths = [], [], []
    cut = [cut_to_window(text, tokenize) for text in texts]
    for i, ids in enumerate(_token_ids(tokenizer, cut)):
        windows = fit_to_window(ids, tokenize)
        sequences.extend(windows)
        text_index.extend([i] * len(windows))
        lengths.append(len(ids))
    return Encoded(sequences, np.asarray(text_index, dtype=np.int64), np.asarray(lengths))


def encode_pairs(
    tokenizer: Tokenizer, texts: list[str], pairs: list[str], tokenize: TokenizeConfig
) -> Encoded:
    """Token ids of every pair through the tokenizer's own pair template (BERT's [CLS] text
    [SEP] pair [SEP], segment ids 0 then 1; RoBERTa's <s> text </s></s> pair </s>), fitted to
    `tokenize.max_length` by cutting the longer text first (`pair_budget`; `long_text` is head
    for pairs, `TokenizeConfig.check_pairs`). A pair's length counts both texts' tokens and
    the template's special tokens."""
    tokenize.check_pairs(True)
    specials = tokenizer.num_special_tokens_to_add(True)
    budget = tokenize.max_length - specials
    sides = [
        tokenizer.encode_batch([cut_to_window(t, tokenize) for t in side], add_special_tokens=False)
        for side in (texts, pairs)
    ]
    sequences, lengths = [], []
    for first, second in zip(*sides, strict=True):
        n_first, n_second = len(first.ids), len(second.ids)
        keep_first, keep_second = pair_budget(n_first, n_second, budget)
        for encoding, n, keep in ((first, n_first, keep_first), (second, n_second, keep_second)):
            if keep < n:
                encoding.truncate(int(keep))
        sequences.append(np.asarray(tokenizer.post_process(first, second).ids, dtype=np.int32))
        lengths.append(n_first + n_second + specials)
    index = np.arange(len(texts), dtype=np.int64)
    return Encoded(sequences, index, np.asarray(lengths), pair_separator(tokenizer))


def encode_split(tokenizer: Tokenizer, frame: pd.DataFrame, tokenize: TokenizeConfig) -> Encoded:
    """A prepared split's texts (its `text`, and `text_pair` for pairs) as `encode` and
    `encode_pairs` make them."""
    if "text_pair" in frame.columns:
        return encode_pairs(
            tokenizer, frame["text"].tolist(), frame["text_pair"].tolist(), tokenize
        )
    return encode(tokenizer, frame["text"].tolist(), tokenize)


def pair_separator(tokenizer: Tokenizer) -> int:
    """The id of the token that ends a text in the tokenizer's template ([SEP], </s>)."""
    return tokenizer.encode("").ids[-1]


def write_token_cache(
    path: str | Path,
    ids: list[str],
    token_ids: list[np.ndarray],
    label_ids: np.ndarray | None,
    text_lengths: np.ndarray | None = None,
    pair_separator_id: int | None = None,
) -> None:
    """One row per sequence: a text cut into several windows has several rows with its id.
    `text_lengths` is each row's whole text's token count. A cache of pairs names the token
    that ends their first texts in the file's metadata (the model's `PairSegments`)."""
    columns = {
        "id": pa.array(ids, type=pa.string()),
        "input_ids": pa.array([t.tolist() for t in token_ids], type=pa.list_(pa.int32())),
    }
    if label_ids is not None and np.ndim(label_ids) == 2:  # multi-label: multi-hot rows
        columns["label_vector"] = pa.array(
            np.asarray(label_ids, dtype=np.float32).tolist(), type=pa.list_(pa.float32())
        )
    elif label_ids is not None and np.issubdtype(np.asarray(label_ids).dtype, np.floating):
        columns["label_score"] = pa.array(np.asarray(label_ids, dtype=np.float32))  # regression
    elif label_ids is not None:
        columns["label_id"] = pa.array(np.asarray(label_ids, dtype=np.int32))
    if text_lengths is not None:
        columns["text_tokens"] = pa.array(np.asarray(text_lengths, dtype=np.int32))
    table = pa.table(columns)
    if pair_separator_id is not None:
        table = table.replace_schema_metadata({PAIR_SEPARATOR: str(pair_separator_id)})
    pq.write_table(table, path)


def write_encoded_cache(path: str | Path, ids: list[str], encoded: Encoded, label_ids) -> None:
    """A split's cache from `encode`'s output: each sequence with its text's id and label."""
    rows = encoded.text_index
    labels = None if label_ids is None else np.asarray(label_ids)[rows]
    write_token_cache(
        path,
        np.asarray(ids)[rows].tolist(),
        encoded.sequences,
        labels,
        encoded.lengths[rows],
        encoded.pair_separator_id,
    )


@dataclass
class TokenCache:
    """One split's token cache, row for row: text id, unpadded token ids, label id (multi-label:
    a multi-hot row) and the whole text's token count. With chunks, one text spans several
    consecutive rows."""

    ids: np.ndarray
    sequences: list[np.ndarray]
    labels: np.ndarray | None
    text_lengths: np.ndarray | None = None
    pair_separator_id: int | None = None  # pairs: the token that ends the first text

    def subset(self, rows: np.ndarray) -> "TokenCache":
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        labels = None if self.labels is None else self.labels[rows]
        lengths = None if self.text_lengths is None else self.text_lengths[rows]
        sequences = [self.sequences[i] for i in rows]
        return TokenCache(self.ids[rows], sequences, labels, lengths, self.pair_separator_id)

    def texts(self) -> "TokenCache":
        """The first row of every text: its id, label and length (sequences of that row)."""
        _, first = np.unique(self.ids, return_index=True)
        return self.subset(np.sort(first))

    def text_index(self) -> np.ndarray:
        """For every row, the position of its text in `texts()`."""
        return pd.factorize(self.ids)[0]


def read_token_cache(path: str | Path) -> TokenCache:
    table = pq.read_table(path)
    column = table.column("input_ids").combine_chunks()
    offsets = column.offsets.to_numpy()
    flat = column.values.to_numpy()
    sequences = [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    names = table.column_names
    labels = table.column("label_id").to_numpy() if "label_id" in names else None
    if "label_score" in names:  # regression: a score per sequence
        labels = table.column("label_score").to_numpy()
    if "label_vector" in names:  # multi-label: one row of 0/1 per sequence
        vectors = table.column("label_vector").combine_chunks()
        labels = vectors.values.to_numpy().reshape(len(vectors), -1)
    lengths = table.column("text_tokens").to_numpy() if "text_tokens" in names else None
    separator = (table.schema.metadata or {}).get(PAIR_SEPARATOR.encode())
    ids = table.column("id").to_numpy(zero_copy_only=False)
    return TokenCache(ids, sequences, labels, lengths, separator and int(separator))
