"""The preprocessor: everything between a text and the model, and between the model's logits
and an answer, that a model was trained with, in one object.

It owns the tokenizer, how a text is fitted to the window (`TokenizeConfig`), the cleaning
training applied (`data.clean`), the temperature, and the task's rules for a long text's
windows and for the decision. Each rule is written twice, side by side in the module that
owns it: in numpy (evaluation, calibration and the `Classifier`) and in TensorFlow ops (the
package's raw-text SavedModel, `export.RawTextClassifier`, composes this object):

| rule | numpy | TensorFlow | module |
| --- | --- | --- | --- |
| fit a text to the window | `fit_to_window` | `fit_to_window_in_graph` | tokenization |
| temperature | `scale` | `scale_in_graph` | prediction |
| pool a text's windows | `pool_windows` | `pool_windows_in_graph` | prediction |
| decision (multi-label thresholds) | `decide` | `decide_in_graph` | thresholds |

The cleaning has both forms in `cleaning` (`clean_text`, `clean_in_graph`). Tests check each
pair against each other (tests/test_export.py, tests/test_cleaning.py). Training imports none
of the prediction rules: it needs only the tokenization, so DVC re-runs training for an edit to
what fits texts to the window, and only the stages that predict for the rest.
"""

from dataclasses import dataclass, replace

import numpy as np

from bertclf.cleaning import clean_texts
from bertclf.config import CleanConfig, TokenizeConfig
from bertclf.errors import BertclfError
from bertclf.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from bertclf.prediction import (
    pool_windows,
    pool_windows_in_graph,
    probabilities_in_graph,
    scale,
    scale_in_graph,
)
from bertclf.thresholds import decide, decide_in_graph
from bertclf.tokenization import (
    Encoded,
    encode,
    encode_pairs,
    fit_pair_to_window_in_graph,
    fit_to_window_in_graph,
)


def check_pairs_given(text_pair: bool, text_pairs, n_texts: int) -> None:
    """A pair model needs a second text for every text; a single-text model takes none."""
    if text_pair and text_pairs is None:
        raise BertclfError("this model takes text pairs: give each text its second text")
    if not text_pair and text_pairs is not None:
        raise BertclfError("this model takes one text per example, not text pairs")
    if text_pairs is not None and len(text_pairs) != n_texts:
        raise BertclfError(
            f"{n_texts} texts and {len(text_pairs)} second texts: give one second text per text"
        )


@dataclass(frozen=True)
class Preprocessor:
    tokenizer: object  # tokenizers.Tokenizer; None where only logits are turned into answers
    tokenize: TokenizeConfig
    clean: CleanConfig | None = None  # data.clean, as training applied it
    task: str = SINGLE_LABEL  # the name labels.json gives it (`Task.name`)
    temperature: object = None  # a number, one per label, or None
    thresholds: np.ndarray | None = None  # multi-label: one per label
    at_least_one: bool = True  # multi-label: a text that reaches no threshold gets its top label
    text_pair: bool = False  # each example is two texts (model.json's pair_separator_id)

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI_LABEL

    def with_temperature(self, temperature) -> "Preprocessor":
        return replace(self, temperature=temperature)

    def with_rule(self, rule, classes: list[str]) -> "Preprocessor":
        """The decision rule of `thresholds.fit_rule` or `read_rule` applied."""
        return replace(self, thresholds=rule.vector(classes), at_least_one=rule.at_least_one)

    # texts to the model's inputs

    def encode(self, texts: list[str], text_pairs: list[str] | None = None) -> Encoded:
        """The texts (and a pair model's second texts) cleaned as in training, tokenized and
        fitted to the window."""
        check_pairs_given(self.text_pair, text_pairs, len(texts))
        texts = clean_texts(texts, self.clean)
        if self.text_pair:
            pairs = clean_texts(text_pairs, self.clean)
            return encode_pairs(self.tokenizer, texts, pairs, self.tokenize)
        return encode(self.tokenizer, texts, self.tokenize)

    def windows_in_graph(self, content, cls_id: int, sep_id: int, pair_content=None):
        """`fit_to_window` for a batch of word-piece ids in the graph, or for pairs
        `encode_pairs`' window: (sequences, text_of)."""
        if self.text_pair:
            return fit_pair_to_window_in_graph(content, pair_content, self.tokenize, cls_id, sep_id)
        return fit_to_window_in_graph(content, self.tokenize, cls_id, sep_id)

    # the model's logits (one row per window) to answers (one row per text)

    def answer(self, window_logits: np.ndarray, text_index: np.ndarray, n_texts: int):
        """Probabilities per text: the logits scaled by the temperature, a long text's windows
        pooled as `tokenize.chunk_pooling` says."""
        logits = scale(window_logits, self.temperature)
        how = self.tokenize.chunk_pooling  # a text of one window is its own answer
        return pool_windows(logits, text_index, n_texts, how, self.task)

    def answer_in_graph(self, window_logits, text_of, n_texts, temperature=None):
        """`answer` in TensorFlow ops (`temperature` the graph's constant)."""
        logits = scale_in_graph(window_logits, temperature)
        if self.tokenize.long_text != "chunks":
            return probabilities_in_graph(logits, self.task)
        how = self.tokenize.chunk_pooling
        return pool_windows_in_graph(logits, text_of, n_texts, how, self.task)

    def decide(self, probabilities_: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """The answer's decision: single-label, the most probable class's index; multi-label,
        which labels each text gets (bool), by the thresholds (or one `threshold`); regression,
        the score (float32, one per text)."""
        if self.task == REGRESSION:
            return np.asarray(probabilities_, dtype=np.float32).reshape(-1)
        if not self.multi_label:
            return np.asarray(probabilities_).argmax(axis=1)
        limits = self.thresholds if threshold is None else threshold
        return decide(probabilities_, limits, self.at_least_one)

    def decide_in_graph(self, probabilities_, thresholds):
        """`decide` in TensorFlow ops (`thresholds` the graph's constant)."""
        return decide_in_graph(probabilities_, thresholds, self.at_least_one)
