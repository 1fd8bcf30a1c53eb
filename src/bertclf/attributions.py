"""Token attributions: how much each token of a text moved its answer.

Integrated gradients (Sundararajan, Taly and Yan, 2017) on the encoder's token embeddings: the
answer's gradient is averaged along the straight line from a baseline to the text's embeddings
(`steps` points, the midpoint rule) and multiplied by the difference, per embedding dimension;
a token's attribution is the sum over its dimensions. The attributions of a text add up to its
answer minus the baseline's (completeness), up to the rule's error, which shrinks with `steps`.
The baseline keeps the special tokens ([CLS], [SEP]; RoBERTa's <s>, </s>) and the positions, and
replaces every token of the text by the padding token ([PAD], <pad>: `pad`) or by a zero vector
(`zeros`).

The answer is what the package answers, pooled over a long text's windows as the package pools
them: a single-label model's probability of the explained class, a multi-label model's
probability of each explained label, a regression model's score. All windows of a text are
inputs of one answer, so a token in two overlapping chunks gets the sum of both.

It runs on TensorFlow (OpenVINO computes no gradients), through two functions: a package's
SavedModel exports them from format 10 on, `token_embeddings` (ids to embeddings) and
`from_token_embeddings` (embeddings to logits); `export.keras_explainer` takes the same two
from the trained Keras model, for `evaluate`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertclf.choices import ATTRIBUTION_BASELINES, ATTRIBUTION_STEPS
from bertclf.errors import BertclfError
from bertclf.tokenization import cut_to_window, fit_to_window, pair_budget, window_budget

EXPLAIN_FUNCTIONS = ("token_embeddings", "from_token_embeddings")


@dataclass
class TokenWindows:
    """One text (or pair) as the model sees it, with where each token comes from."""

    ids: np.ndarray  # [windows, length] int32, padded with 0
    mask: np.ndarray  # [windows, length] int32
    token_of: np.ndarray  # [windows, length]: the index into `tokens`, -1 for special and padding
    tokens: list[dict]  # each token the windows hold: text, start, end (and side, for pairs)


def token_windows(tokenizer, text: str, tokenize, pair: str | None = None) -> TokenWindows:
    """The windows `Preprocessor.encode` makes of a (cleaned) text or pair, and each token's
    span of characters in its text. Tokens a window leaves out (past `head`, between
    `head_tail`'s ends) are not listed: the model did not see them."""
    if pair is not None:
        first, second = (tokenizer.encode(t, add_special_tokens=False) for t in (text, pair))
        budget = tokenize.max_length - tokenizer.num_special_tokens_to_add(True)
        for encoding, keep in zip(
            (first, second), pair_budget(len(first.ids), len(second.ids), budget), strict=True
        ):
            if keep < len(encoding.ids):
                encoding.truncate(int(keep))
        joined = tokenizer.post_process(first, second)  # the tokenizer's own pair template
        # the template keeps each text's tokens in order, the first text's first; their spans
        # are as `encode` gave them (post-processing may trim them a second time)
        spans = [(0, span) for span in first.offsets] + [(1, span) for span in second.offsets]
        token_of, tokens = [], []
        for special in joined.special_tokens_mask:
            token_of.append(-1 if special else len(tokens))
            if not special:
                side, (start, end) = spans[len(tokens)]
                tokens.append({"start": start, "end": end, "side": side})
        windows = [np.asarray(joined.ids)], [np.asarray(token_of)]
        return _padded(windows, tokens, (text, pair))
    cls_id, sep_id = tokenizer.encode("").ids
    cut = cut_to_window(text, tokenize)
    encoding = tokenizer.encode(cut, add_special_tokens=False)
    offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    if cut != text and tokenize.long_text == "head_tail":  # cut: head, a space, the tail
        head, _ = window_budget(tokenize)
        offsets = np.where(offsets > head, offsets + len(text) - len(cut), offsets)
    ids = np.asarray([cls_id, *encoding.ids, sep_id], dtype=np.int64)
    index = np.arange(-1, len(encoding.ids) + 1)
    index[-1] = -1
    id_windows, index_windows = fit_to_window(ids, tokenize), fit_to_window(index, tokenize)
    seen = sorted({int(i) for w in index_windows for i in w if i >= 0})
    renumber = {old: new for new, old in enumerate(seen)}
    index_windows = [np.asarray([renumber.get(int(i), -1) for i in w]) for w in index_windows]
    tokens = [{"start": int(offsets[i][0]), "end": int(offsets[i][1])} for i in seen]
    return _padded((id_windows, index_windows), tokens, (text,))


def _padded(windows, tokens: list[dict], texts: tuple) -> TokenWindows:
    id_windows, index_windows = windows
    length = max(len(w) for w in id_windows)
    ids = np.zeros((len(id_windows), length), dtype=np.int32)
    mask = np.zeros_like(ids)
    token_of = np.full(ids.shape, -1, dtype=np.int64)
    for row, (w, index) in enumerate(zip(id_windows, index_windows, strict=True)):
        ids[row, : len(w)], mask[row, : len(w)], token_of[row, : len(w)] = w, 1, index
    for token in tokens:
        token["token"] = texts[token.get("side", 0)][token["start"] : token["end"]]
    return TokenWindows(ids, mask, token_of, tokens)


class Explainer:
    """Integrated gradients through a model's two halves: `embed(ids)`, the token embeddings,
    and `forward(embeddings, ids, mask)`, the temperature-scaled logits, which `preprocessor`
    (the model's own) turns into answers and pools over each text's windows."""

    def __init__(self, embed, forward, preprocessor, owner=None):
        self.owner = owner  # what the functions belong to, kept alive as long as they are
        self.embed = embed
        self.forward = forward
        self.answer = preprocessor.answer_in_graph  # the logits come scaled already
        tokenizer = preprocessor.tokenizer
        pad = [tokenizer.token_to_id(token) for token in ("[PAD]", "<pad>")]  # BERT, RoBERTa
        self.pad_id = next((id_ for id_ in pad if id_ is not None), 0)

    @classmethod
    def of_saved_model(cls, loaded, saved_model: Path, preprocessor) -> "Explainer":
        """Through a package's SavedModel as `tf.saved_model.load` gives it (format 10 on;
        `saved_model` names it in messages)."""
        missing = [name for name in EXPLAIN_FUNCTIONS if name not in loaded.signatures]
        if missing:
            raise BertclfError(
                f"{saved_model}: this package cannot explain (its SavedModel has no "
                f"{' or '.join(missing)} function: written before format 10); rebuild it "
                "with `dvc repro`"
            )
        embed, forward = (loaded.signatures[name] for name in EXPLAIN_FUNCTIONS)
        return cls(
            lambda ids: embed(input_ids=ids)["token_embeddings"],
            lambda x, ids, mask: forward(token_embeddings=x, input_ids=ids, attention_mask=mask)[
                "logits"
            ],
            preprocessor,
            loaded,
        )

    def values(self, embeddings, windows: TokenWindows):
        """The text's answers (one row) for embeddings of its windows, [n, windows, length,
        hidden] for n points at once: [n, columns]."""
        import tensorflow as tf

        n, w = embeddings.shape[0], embeddings.shape[1]
        logits = self.forward(
            tf.reshape(embeddings, (n * w, *embeddings.shape[2:])),
            tf.tile(windows.ids, (n, 1)),
            tf.tile(windows.mask, (n, 1)),
        )
        return self.answer(logits, tf.repeat(tf.range(n, dtype=tf.int64), w), n)

    def attribute(
        self,
        windows: TokenWindows,
        choose,
        steps: int = ATTRIBUTION_STEPS,
        baseline: str = "pad",
        rows_per_call: int = 64,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """Attributions of the answer columns `choose(answer row)` names: returns their
        answers, the baseline's answers, one attribution per token of `windows.tokens` per
        column ([columns, tokens]), and the columns."""
        import tensorflow as tf

        embeddings = self.embed(tf.constant(windows.ids))
        content = tf.constant(windows.token_of >= 0)[:, :, None]
        if baseline == "pad":
            pads = tf.fill(tf.shape(windows.ids), tf.constant(self.pad_id, tf.int32))
            base = self.embed(tf.where(content[:, :, 0], pads, windows.ids))
            base = tf.where(content, base, embeddings)
        else:
            base = tf.where(content, tf.zeros_like(embeddings), embeddings)
        ends = self.values(tf.stack([embeddings, base]), windows).numpy()
        columns = list(choose(ends[0]))
        if not columns:  # a multi-label text given no label: nothing to explain
            return ends[0][:0], ends[1][:0], np.zeros((0, len(windows.tokens))), []
        difference = embeddings - base
        total = [tf.zeros_like(embeddings) for _ in columns]
        per_call = max(1, rows_per_call // len(windows.ids))
        alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps
        for start in range(0, steps, per_call):
            alpha = tf.constant(alphas[start : start + per_call])[:, None, None, None]
            points = base[None] + alpha * difference[None]
            with tf.GradientTape(persistent=len(columns) > 1) as tape:
                tape.watch(points)
                answers = self.values(points, windows)
                picked = [tf.reduce_sum(answers[:, column]) for column in columns]
            for k, value in enumerate(picked):
                total[k] += tf.reduce_sum(tape.gradient(value, points), axis=0)
            del tape
        per_position = [
            tf.reduce_sum(difference * gradient, axis=-1).numpy() / steps for gradient in total
        ]
        attributions = np.zeros((len(columns), len(windows.tokens)), dtype=np.float64)
        seen = windows.token_of >= 0
        for k, values in enumerate(per_position):
            np.add.at(attributions[k], windows.token_of[seen], values[seen])
        return ends[0][columns], ends[1][columns], attributions, columns


def explain_texts(
    explainer: Explainer,
    preprocessor,
    classes: list[str],
    texts: list[str],
    pairs: list[str] | None,
    label: str | None = None,
    steps: int = ATTRIBUTION_STEPS,
    baseline: str = "pad",
) -> list[dict]:
    """`Classifier.explain`'s results (see there) of the texts and pairs, read as
    `preprocessor` reads them (its cleaning, tokenizer and window), by `explainer`."""
    from bertclf.cleaning import clean_texts
    from bertclf.labels import REGRESSION

    choose = explained_columns(preprocessor, classes, label)
    read = clean_texts(texts, preprocessor.clean)
    read_pairs = [None] * len(texts) if pairs is None else clean_texts(pairs, preprocessor.clean)
    results = []
    for i, (text, pair) in enumerate(zip(read, read_pairs, strict=True)):
        windows = token_windows(preprocessor.tokenizer, text, preprocessor.tokenize, pair)
        values, baselines, attributions, columns = explainer.attribute(
            windows, choose, steps, baseline
        )
        result = {"text": texts[i]}
        if pairs is not None:
            result["text_pair"] = pairs[i]
        if text != texts[i] or (pairs is not None and pair != pairs[i]):
            result["model_text"] = text if pair is None else [text, pair]
        names = ["score"] if preprocessor.task == REGRESSION else [classes[c] for c in columns]
        result["tokens"] = windows.tokens
        result["explained"] = [
            {
                "label": str(name),
                "value": float(value),
                "baseline_value": float(base),
                "attributions": [round(float(a), 6) for a in row],
            }
            for name, value, base, row in zip(names, values, baselines, attributions, strict=True)
        ]
        results.append(result)
    return results


def explained_columns(preprocessor, classes: list[str], label: str | None):
    """Which answer columns a text's explanation covers, from its answer row: the column
    `label` names, else the predicted class (multi-label: each predicted label; regression:
    the score)."""
    from bertclf.labels import REGRESSION

    if label is not None:
        if preprocessor.task == REGRESSION:
            raise BertclfError("label= names a class; a regression model answers one score")
        if label not in classes:
            known = ", ".join(map(str, classes))
            raise BertclfError(f"label {label!r} is not one of the model's classes ({known})")
        column = list(classes).index(label)
        return lambda row: [column]
    if preprocessor.multi_label:
        return lambda row: np.flatnonzero(preprocessor.decide(row[None])[0]).tolist()
    return lambda row: [int(np.argmax(row))]


def check_steps(steps: int, baseline: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1024:
        raise BertclfError(f"steps={steps!r}: expected a whole number from 1 to 1024")
    if baseline not in ATTRIBUTION_BASELINES:
        expected = ", ".join(ATTRIBUTION_BASELINES)
        raise BertclfError(f"baseline={baseline!r}: expected one of {expected}")
