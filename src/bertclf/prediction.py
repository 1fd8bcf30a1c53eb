"""Prediction on token ids: batched model calls in input order, and the windows of a long text
pooled into one row per text.

Training never imports this module (`dvc.yaml`: `train` does not depend on it), so editing a
prediction rule re-runs only the stages that predict (`calibrate`, `evaluate`, `package`,
`train_fold`), never the training itself.
"""

import numpy as np

from bertclf.batching import BucketedSequence
from bertclf.config import TokenizeConfig
from bertclf.tokenization import TokenCache


def pool_windows(
    probabilities: np.ndarray,
    text_index: np.ndarray,
    n_texts: int,
    how: str = "mean",
    multi_label: bool = False,
) -> np.ndarray:
    """One row of probabilities per text from one row per sequence. Single-label: the mean
    (equal to averaging the logits) or the maximum of the windows' log-probabilities,
    renormalised. Multi-label: each label's own probability, its mean or maximum over the
    windows (a label mentioned in one window of a long story stays on)."""
    if len(text_index) == n_texts:
        return probabilities  # one sequence per text
    if multi_label:
        values = probabilities.astype(np.float64)
        pooled = np.full((n_texts, probabilities.shape[1]), -np.inf if how == "max" else 0.0)
        if how == "max":
            np.maximum.at(pooled, text_index, values)
        else:
            np.add.at(pooled, text_index, values)
            pooled /= np.bincount(text_index, minlength=n_texts)[:, None]
        return pooled.astype(probabilities.dtype)
    log_p = np.log(np.clip(probabilities.astype(np.float64), 1e-30, None))
    pooled = np.full((n_texts, probabilities.shape[1]), -np.inf if how == "max" else 0.0)
    if how == "max":
        np.maximum.at(pooled, text_index, log_p)
    else:
        np.add.at(pooled, text_index, log_p)
        pooled /= np.bincount(text_index, minlength=n_texts)[:, None]
    pooled -= pooled.max(axis=1, keepdims=True)
    result = np.exp(pooled)
    return (result / result.sum(axis=1, keepdims=True)).astype(probabilities.dtype)


def predict_probabilities(
    model,
    sequences: list[np.ndarray],
    batch_size: int,
    tokenize: TokenizeConfig,
    progress: bool = False,
) -> np.ndarray:
    """Class probabilities in input order; texts are sorted by length so padding is minimal."""
    from tqdm import tqdm

    batches = BucketedSequence(sequences, None, batch_size, tokenize)
    with tqdm(total=len(sequences), unit="text", disable=not progress) as bar:
        parts = []
        for i in range(len(batches)):
            parts.append(np.asarray(model.predict_on_batch(batches[i])))
            bar.update(len(batches.batches[i]))
    probabilities = np.concatenate(parts)
    result = np.empty_like(probabilities)
    result[batches.order()] = probabilities
    return result


def predict_texts(
    model, cache: TokenCache, batch_size: int, tokenize: TokenizeConfig, multi_label: bool = False
) -> tuple[TokenCache, np.ndarray]:
    """Probabilities per text of a token cache, the windows of a text pooled (chunks).
    Returns the texts' rows of the cache (id, label, length) and the probabilities."""
    rows = predict_probabilities(model, cache.sequences, batch_size, tokenize)
    texts = cache.texts()
    pooled = pool_windows(
        rows, cache.text_index(), len(texts.ids), tokenize.chunk_pooling, multi_label
    )
    return texts, pooled
