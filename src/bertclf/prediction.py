"""Prediction on token ids: batched model calls in input order, and the rules that turn the
model's logits into probabilities, each written twice side by side: in numpy (training's
evaluation, calibration and the Classifier) and in TensorFlow ops (the package's SavedModel).
Tests check each pair against each other.

The classifier's last layer answers logits, one row per window (a text cut into chunks has
several); a temperature divides them (`scale`), and `pool_windows` turns a text's windows into
one row of probabilities: single-label, the mean (equal to averaging the logits) or the maximum
of the windows' log-probabilities, renormalised; multi-label, each label's own probability,
its mean or maximum over the windows (a label mentioned in one window of a long story stays on);
regression, the score (the one output, no link) and its mean or maximum.

Training never imports this module (`dvc.yaml`: `train` does not depend on it), so editing a
prediction rule re-runs only the stages that predict (`calibrate`, `evaluate`, `package`,
`train_fold`), never the training itself.
"""

import numpy as np

from bertclf.batching import BucketedSequence
from bertclf.config import TokenizeConfig
from bertclf.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL
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


def log_probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Single-label: the log-softmax of each row; multi-label: each label's log-sigmoid.
    Float64, computed without overflow and without any floor."""
    z = np.asarray(logits, dtype=np.float64)
    if task == MULTI_LABEL:
        return -np.logaddexp(0.0, -z)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax over the classes, a sigmoid per label, or (regression) the score itself; float32."""
    if task == REGRESSION:
        return np.asarray(logits, dtype=np.float32)
    return np.exp(log_probabilities(logits, task)).astype(np.float32)


def probabilities_in_graph(logits, task: str):
    """`probabilities` in TensorFlow ops."""
    import tensorflow as tf

    if task == REGRESSION:
        return tf.cast(logits, tf.float32)
    return tf.sigmoid(logits) if task == MULTI_LABEL else tf.nn.softmax(logits, axis=1)


def pool_windows(
    logits: np.ndarray,
    text_index: np.ndarray,
    n_texts: int,
    how: str = "mean",
    task: str = SINGLE_LABEL,
) -> np.ndarray:
    """One row of probabilities (regression: of scores) per text from one row of outputs per
    window (the module's docstring says how). `text_index[i]` is the text of window i."""
    logits = np.asarray(logits)
    if len(text_index) == n_texts:  # one window per text
        return probabilities(logits, task)
    if task == SINGLE_LABEL:
        values = log_probabilities(logits, task)
    else:  # each label's probability, or the score, is pooled
        values = probabilities(logits, task).astype(np.float64)
    pooled = np.full((n_texts, logits.shape[1]), -np.inf if how == "max" else 0.0)
    if how == "max":
        np.maximum.at(pooled, text_index, values)
    else:
        np.add.at(pooled, text_index, values)
        pooled /= np.bincount(text_index, minlength=n_texts)[:, None]
    if task == SINGLE_LABEL:
        return probabilities(pooled, task)  # renormalised
    return pooled.astype(np.float32)


def pool_windows_in_graph(logits, text_index, n_texts, how: str, task: str):
    """`pool_windows` in TensorFlow ops (`text_index` int64, windows in text order)."""
    import tensorflow as tf

    segment = tf.math.unsorted_segment_max if how == "max" else tf.math.unsorted_segment_mean
    if task != SINGLE_LABEL:
        return segment(probabilities_in_graph(logits, task), text_index, n_texts)
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
