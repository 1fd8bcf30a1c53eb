"""Prediction on token ids: batched model calls in input order, and the rules that turn the
model's logits into probabilities, each written twice side by side: in numpy (training's
evaluation, calibration and the Classifier) and in TensorFlow ops (the package's SavedModel).
Tests check each pair against each other.

The classifier's last layer answers logits, one row per window (a text cut into chunks has
several); a temperature divides them (`scale`), and `pool_windows` turns a text's windows into
one row of probabilities: single-label, the mean (equal to averaging the logits) or the maximum
of the windows' log-probabilities, renormalised; multi-label, each label's own probability,
its mean or maximum over the windows (a label mentioned in one window of a long story stays on).

Training never imports this module (`dvc.yaml`: `train` does not depend on it), so editing a
prediction rule re-runs only the stages that predict (`calibrate`, `evaluate`, `package`,
`train_fold`), never the training itself.
"""

import numpy as np

from bertclf.batching import BucketedSequence
from bertclf.config import TokenizeConfig
from bertclf.tokenization import TokenCache


def scale(logits: np.ndarray, temperature=None) -> np.ndarray:
    """The logits divided by the temperature (a number, or one per label); as they are
    without one."""
    logits = np.asarray(logits, dtype=np.float32)
    if temperature is None:
        return logits
    return logits / np.asarray(temperature, dtype=np.float32)


def scale_in_graph(logits, temperature):
    """`scale` in TensorFlow ops (`temperature` a constant, or None)."""
    return logits if temperature is None else logits / temperature


def log_probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Single-label: the log-softmax of each row; multi-label: each label's log-sigmoid.
    Float64, computed without overflow and without any floor."""
    z = np.asarray(logits, dtype=np.float64)
    if multi_label:
        return -np.logaddexp(0.0, -z)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Softmax over the classes, or a sigmoid per label (float32)."""
    return np.exp(log_probabilities(logits, multi_label)).astype(np.float32)


def probabilities_in_graph(logits, multi_label: bool):
    """`probabilities` in TensorFlow ops."""
    import tensorflow as tf

    return tf.sigmoid(logits) if multi_label else tf.nn.softmax(logits, axis=1)


def pool_windows(
    logits: np.ndarray,
    text_index: np.ndarray,
    n_texts: int,
    how: str = "mean",
    multi_label: bool = False,
) -> np.ndarray:
    """One row of probabilities per text from one row of logits per window (the module's
    docstring says how). `text_index[i]` is the text of window i."""
    logits = np.asarray(logits)
    if len(text_index) == n_texts:  # one window per text
        return probabilities(logits, multi_label)
    values = log_probabilities(logits, multi_label)
    if multi_label:
        values = np.exp(values)  # each label's probability is pooled
    pooled = np.full((n_texts, logits.shape[1]), -np.inf if how == "max" else 0.0)
    if how == "max":
        np.maximum.at(pooled, text_index, values)
    else:
        np.add.at(pooled, text_index, values)
        pooled /= np.bincount(text_index, minlength=n_texts)[:, None]
    if multi_label:
        return pooled.astype(np.float32)
    return probabilities(pooled, multi_label=False)  # renormalised


def pool_windows_in_graph(logits, text_index, n_texts, how: str, multi_label: bool):
    """`pool_windows` in TensorFlow ops (`text_index` int64, windows in text order)."""
    import tensorflow as tf

    segment = tf.math.unsorted_segment_max if how == "max" else tf.math.unsorted_segment_mean
    if multi_label:
        return segment(tf.sigmoid(logits), text_index, n_texts)
    pooled = segment(tf.nn.log_softmax(logits, axis=1), text_index, n_texts)
    return tf.nn.softmax(pooled, axis=1)


def predict_logits(
    model,
    sequences: list[np.ndarray],
    batch_size: int,
    tokenize: TokenizeConfig,
    progress: bool = False,
) -> np.ndarray:
    """The model's logits, one row per sequence in input order; sequences are sorted by length
    so padding is minimal."""
    from tqdm import tqdm

    batches = BucketedSequence(sequences, None, batch_size, tokenize)
    with tqdm(total=len(sequences), unit="text", disable=not progress) as bar:
        parts = []
        for i in range(len(batches)):
            parts.append(np.asarray(model.predict_on_batch(batches[i])))
            bar.update(len(batches.batches[i]))
    logits = np.concatenate(parts)
    result = np.empty_like(logits)
    result[batches.order()] = logits
    return result


def predict_texts(
    model, cache: TokenCache, batch_size: int, answers
) -> tuple[TokenCache, np.ndarray]:
    """Probabilities per text of a token cache, as `answers` (a `Preprocessor`) turns the
    model's logits into them. Returns the texts' rows of the cache (id, label, length) and the
    probabilities."""
    rows = predict_logits(model, cache.sequences, batch_size, answers.tokenize)
    texts = cache.texts()
    return texts, answers.answer(rows, cache.text_index(), len(texts.ids))
