"""The raw-text SavedModel: tokenization inside the graph, so any TensorFlow client can call it.

`serving_default` takes `text` (a batch of strings; a pair model's, `text` and `text_pair`, the
two texts of each example) and returns `probabilities` (float32, one
column per class, in labels.json order) and `label`; a multi-label model returns
`probabilities` (one sigmoid per label) and `predicted` (bool, one column per label: the
thresholds of calibration.json applied, and at least one label per text if it says so).

`token_ids` takes `input_ids` and `attention_mask` (int32, padded) and returns `probabilities`
and `logits` (format 8 on), one row per window: the Python API tokenizes with the Hugging Face
tokenizer, calls it on length-sorted batches and pools a long text's windows from the logits.

Both divide the model's logits by the temperature when calibration.json holds one, so every
runtime converted from `token_ids` does too. Scaling, pooling and the multi-label decision are
the rules of `prediction` and `thresholds`, whose TensorFlow forms are composed here.

`serving_default` tokenizes as the encoder's Hugging Face tokenizer does: each character
becomes what that tokenizer's normalizer and pre-tokenizer make of it (a table read from the
tokenizer at export), the text is split into words on spaces, and tensorflow-text's
FastWordpieceTokenizer cuts the words into pieces of the encoder's vocabulary. It fits texts to
the window exactly as `tokenization.fit_to_window` does in training (head, head_tail or chunks,
with the chunks pooled per text as `prediction.pool_windows` pools them).

Loading it needs `import tensorflow_text` first: that registers the tokenizer's ops.
"""

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from bertclf.cleaning import (
    clean_in_graph,
    cleaning_tables,
    cleans,
    map_characters,
    string_table,
)
from bertclf.errors import BertclfError
from bertclf.labels import REGRESSION, SINGLE_LABEL
from bertclf.layout import VOCAB
from bertclf.model import logits_from_token_embeddings
from bertclf.prediction import probabilities_in_graph, scale_in_graph
from bertclf.preprocessor import Preprocessor

MAX_PROBABILITY_DIFFERENCE = 1e-4
# Texts every package's check runs beside the test split: the forms where an in-graph tokenizer
# and the Hugging Face one most easily part (compatibility forms, marks, scripts, controls).
STRESS_TEXTS = [
    "\uff27\uff52\uff45\uff41\uff54 \uff43\uff4f\uff46\uff46\uff45\uff45",  # fullwidth
    "\ufb01ne \ufb02avour, caf\u00e9 \u2026 \u00bd price\u2122 \u2163 \u2460 \u00b2",  # ligatures
    "\u0661\u0662\u0663 \u096a\u096b \uff11\uff12 \U0001d7d9",  # other digits
    "e\u0301 a\u0308\u0304 \u1e9b\u0323 n\u0303\u0303 \u0915\u093f",  # combining marks
    "emoji \U0001f600\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469 \u2764\ufe0f",
    "\u4e2d\u6587 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4",  # CJK
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092e\u0947\u0902 \u0932\u093f\u0916\u093e",  # Hindi
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea \u200f\u202e",  # RTL
    "zero\u200bwidth\u200c\u200d soft\u00adhyphen bell\x07 \x00nul \ufeffbom \ufffd",
    "no\u00a0break\u2007space\u202fthin \u3000ideographic\u2028line\u2029para\x85",
    "tab\tnew\nline\r\nvertical\x0bform\x0c",
    "\u0130stanbul \u03a3\u039f\u03a6\u039f\u03a3 STRA\u1e9eE \u212a\u212b",  # case
    "x" * 101 + " " + "\u00e9" * 100 + " " + "\u00e9" * 101 + " " + "y" * 100,  # long words
    "[CLS] [SEP] [UNK] [PAD] [MASK] ##ing <s> </s>",  # special tokens are text
    "word " * 1000,  # 5,000 characters
]


def character_table(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """What the encoder's own normalizer and pre-tokenizer make of each character they change:
    its code point, and what it becomes, with a space on each side where the pre-tokenizer
    splits ("" for a character dropped, " " for whitespace, " , " for punctuation).

    The graph applies this character by character and splits on spaces: the words WordPiece
    sees are then the Hugging Face tokenizer's, by construction, since BERT's normalizer
    (clean-up, CJK spacing, NFD and accent stripping, lowercasing) and pre-tokenizer work a
    character at a time. (The one exception: NFD puts two spacing combining marks of different
    classes in canonical order, and a table cannot; docs/package.md says so.) The table is
    read from the tokenizer, so its Unicode tables are the tokenizer's own."""
    normalizer, pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer
    codes, becomes = [], []
    for code in (*range(0xD800), *range(0xE000, 0x110000)):  # every code point but surrogates
        char = chr(code)
        normalized = normalizer.normalize_str(char) if normalizer else char
        # between two letters, so that a split shows as a space
        pieces = pre_tokenizer.pre_tokenize_str(f"a{normalized}a") if pre_tokenizer else None
        mapped = " ".join(piece for piece, _ in pieces)[1:-1] if pieces else normalized
        if mapped != char:
            codes.append(code)
            becomes.append(mapped)
    return np.asarray(codes, dtype=np.int32), np.asarray(becomes, dtype=object)


def keras_explainer(model, pooling: str, preprocessor):
    """Token attributions through the trained Keras model (`evaluate`, before there is a
    package): the functions the package's `token_embeddings` and `from_token_embeddings`
    export, without the SavedModel."""
    from bertclf.attributions import Explainer

    encoder = model.get_layer("encoder")
    temperature = preprocessor.temperature
    if temperature is not None:
        temperature = tf.constant(temperature, tf.float32)
    return Explainer(
        lambda ids: tf.cast(encoder.token_embedding(ids), tf.float32),
        lambda x, ids, mask: scale_in_graph(
            logits_from_token_embeddings(model, pooling, x, ids, mask), temperature
        ),
        preprocessor,
    )


class TokenIdsClassifier(tf.Module):
    """The package's SavedModel of a family without an in-graph tokenizer (`Family.raw_text`):
    the model on token ids, its temperature, and the functions token attributions need."""

    def __init__(self, model, preprocessor: Preprocessor, pooling: str):
        super().__init__()
        self.model = model
        self.pooling = pooling  # head.pooling, for from_token_embeddings
        self.preprocessor = preprocessor
        self.temperature = None
        if preprocessor.temperature is not None:
            self.temperature = tf.constant(np.asarray(preprocessor.temperature, dtype=np.float32))

    def endpoints(self) -> list[tuple[str, object]]:
        """The SavedModel's functions, by name."""
        return [
            ("token_ids", self.from_token_ids),
            ("token_embeddings", self.token_embeddings),
            ("from_token_embeddings", self.from_token_embeddings),
        ]

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask"),
        ]
    )
    def from_token_ids(self, input_ids, attention_mask):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        logits = scale_in_graph(self.model(inputs, training=False), self.temperature)
        return {
            "probabilities": probabilities_in_graph(logits, self.preprocessor.task),
            "logits": logits,
        }

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="input_ids")])
    def token_embeddings(self, input_ids):
        """The encoder's token embeddings of the ids (format 10 on): where token attributions
        start (`attributions`)."""
        encoder = self.model.get_layer("encoder")
        return {"token_embeddings": tf.cast(encoder.token_embedding(input_ids), tf.float32)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None], tf.float32, name="token_embeddings"),
            tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask"),
        ]
    )
    def from_token_embeddings(self, token_embeddings, input_ids, attention_mask):
        """`token_ids` with the token embeddings given (format 10 on): differentiable in them,
        as `token_ids` is not (ids are integers). The ids give positions and pair segments."""
        # the hidden size known to the graph, as a family's layer normalisation needs it
        hidden = self.model.get_layer("encoder").token_embedding.embeddings.shape[-1]
        shape = tf.shape(token_embeddings)
        token_embeddings = tf.reshape(token_embeddings, [shape[0], shape[1], hidden])
        logits = logits_from_token_embeddings(
            self.model, self.pooling, token_embeddings, input_ids, attention_mask
        )
        logits = scale_in_graph(logits, self.temperature)
        return {
            "probabilities": probabilities_in_graph(logits, self.preprocessor.task),
            "logits": logits,
        }


class RawTextClassifier(TokenIdsClassifier):
    """The package's SavedModel: the model between the graph forms of its preprocessor's rules
    (the cleaning, the character table and WordPiece, the window, the temperature, the
    pooling and the decision)."""

    def __init__(
        self,
        model,
        vocab: list[str],
        table: tuple[np.ndarray, np.ndarray],
        max_word_chars: int,
        preprocessor: Preprocessor,
        classes: list[str],
        pooling: str,
    ):
        super().__init__(model, preprocessor, pooling)
        self.clean = preprocessor.clean if cleans(preprocessor.clean) else None
        if self.clean is not None:
            self.cleaning_tables = cleaning_tables()
        if preprocessor.multi_label:
            self.thresholds = tf.constant(np.asarray(preprocessor.thresholds, dtype=np.float32))
        codes, becomes = table
        self.table = string_table(codes, becomes.tolist(), tf.int32)
        self.max_word_chars = max_word_chars
        # words come split: WordPiece only. A word of max_word_chars characters may take four
        # bytes each; a longer one is [UNK] before it gets here, as the Hugging Face one counts
        self.wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=vocab,
            suffix_indicator="##",
            max_bytes_per_word=4 * max_word_chars,
            token_out_type=tf.int32,
            unknown_token="[UNK]",
            no_pretokenization=True,
            support_detokenization=False,
        )
        self.cls_id = vocab.index("[CLS]")
        self.sep_id = vocab.index("[SEP]")
        self.classes = tf.constant(classes)

    def wordpiece_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Word-piece ids of each text, without [CLS] and [SEP]: [batch, (tokens)]. The text
        is cleaned as training's were (data.clean); each character becomes what the encoder's
        tokenizer makes of it (`character_table`); the text is split on spaces, a word over
        max_word_chars characters is [UNK], and the words are cut into word pieces."""
        if self.clean is not None:  # data.clean, as training's texts were
            text = clean_in_graph(text, self.clean, self.cleaning_tables)
        words = tf.strings.split(map_characters(text, self.table), sep=" ")
        words = tf.ragged.boolean_mask(words, words != "")
        long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > self.max_word_chars
        words = words.with_flat_values(tf.where(long, "[UNK]", words.flat_values))
        return self.wordpiece.tokenize(words).merge_dims(1, 2)

    def windows(self, content: tf.RaggedTensor, pair_content=None):
        """The sequences the model sees ([CLS] ... [SEP], for a pair [CLS] ... [SEP] ...
        [SEP]) and the text each comes from."""
        return self.preprocessor.windows_in_graph(content, self.cls_id, self.sep_id, pair_content)

    def serve(self, text):
        """`serving_default` of a model of one text per example."""
        return self.answer(self.windows(self.wordpiece_ids(text)), tf.size(text, out_type=tf.int64))

    def serve_pairs(self, text, text_pair):
        """A pair model's `serving_default`: each text with its second text."""
        tf.debugging.assert_equal(
            tf.size(text), tf.size(text_pair), message="text and text_pair differ in length"
        )
        windows = self.windows(self.wordpiece_ids(text), self.wordpiece_ids(text_pair))
        return self.answer(windows, tf.size(text, out_type=tf.int64))

    def endpoints(self) -> list[tuple[str, object]]:
        return [("serving_default", self.serving_default()), *super().endpoints()]

    def serving_default(self):
        """`serve`, or `serve_pairs` for a pair model, as a tf.function of its inputs."""
        texts = [tf.TensorSpec([None], tf.string, name="text")]
        if not self.preprocessor.text_pair:
            return tf.function(self.serve, input_signature=texts)
        pairs = [*texts, tf.TensorSpec([None], tf.string, name="text_pair")]
        return tf.function(self.serve_pairs, input_signature=pairs)

    def answer(self, windows, n_texts):
        """The answers of the model on `windows` (sequences and the text each comes from)."""
        sequences, text_of = windows
        inputs = {
            "input_ids": sequences.to_tensor(0),
            "attention_mask": tf.ones_like(sequences).to_tensor(0),
        }
        logits = self.model(inputs, training=False)
        probabilities = self.preprocessor.answer_in_graph(
            logits, text_of, n_texts, self.temperature
        )
        if self.preprocessor.task == REGRESSION:  # one output, the score
            return {"score": probabilities[:, 0]}
        if self.preprocessor.multi_label:
            predicted = self.preprocessor.decide_in_graph(probabilities, self.thresholds)
            return {"probabilities": probabilities, "predicted": predicted}
        label = tf.gather(self.classes, tf.argmax(probabilities, axis=1))
        return {"probabilities": probabilities, "label": label}


def export_saved_model(
    model,
    tokenizer_dir: Path,
    preprocessor: Preprocessor,
    classes: list[str],
    out: Path,
    pooling: str,
    raw_text: bool = True,
) -> TokenIdsClassifier:
    """The raw-text SavedModel of `model` (whose head pools by `pooling`) and its preprocessor
    (multi-label when the preprocessor's task is; its temperature and cleaning applied in the
    graph); without `raw_text` (a family whose tokenizer has no equal in-graph form), the
    SavedModel of the model on token ids."""
    if raw_text:
        vocab = (tokenizer_dir / VOCAB).read_text(encoding="utf-8").splitlines()
        module = RawTextClassifier(
            model,
            vocab,
            character_table(preprocessor.tokenizer),
            preprocessor.tokenizer.model.max_input_chars_per_word,
            preprocessor,
            classes,
            pooling,
        )
    else:
        module = TokenIdsClassifier(model, preprocessor, pooling)
    # Keras' ExportArchive saves the variables the functions read, once each and under their own
    # names, so TensorFlow's session loader (saved_model_cli run, TF Serving) restores them too;
    # nothing else (no optimizer state). Tracking the model as well would save every weight a
    # second time, as a Keras variable beside its TensorFlow one.
    archive = keras.export.ExportArchive()
    archive.track(module)  # the tokenizer's tables
    for name, function in module.endpoints():
        function.get_concrete_function()
        archive.add_endpoint(name, function)
    archive.write_out(str(out), verbose=False)
    return module


def load_saved_model(path: Path, signature: str = "serving_default"):
    """One of the exported model's functions."""
    return tf.saved_model.load(str(path)).signatures[signature]


class TokenIdsModel:
    """The SavedModel's `token_ids` function where a Keras model's `predict_on_batch` is
    expected: a graph already built for any batch shape, so no shape is traced at run time.
    It answers the function's `logits`."""

    def __init__(self, saved_model: Path):
        self.loaded = tf.saved_model.load(str(saved_model))  # its other functions explain
        self.function = self.loaded.signatures["token_ids"]
        outputs = self.function.structured_outputs
        if not isinstance(outputs, dict) or "logits" not in outputs:
            raise BertclfError(f"{saved_model}: its token_ids function has no logits output")
        shape = outputs["logits"].shape
        self.output_width = shape[-1] if shape is not None and shape.rank else None

    def predict_on_batch(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.function(
            input_ids=tf.constant(inputs["input_ids"]),
            attention_mask=tf.constant(inputs["attention_mask"]),
        )["logits"].numpy()


def saved_model_outputs(
    serve, texts: list[str], lengths: np.ndarray, batch_size: int, text_pairs=None
) -> dict[str, np.ndarray]:
    """`serve` on texts (with `text_pairs`, pairs) in batches of similar length (less
    padding); every output in input order."""
    order = np.argsort(lengths, kind="stable")
    result: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        inputs = {"text": tf.constant([texts[i] for i in rows])}
        if text_pairs is not None:
            inputs["text_pair"] = tf.constant([text_pairs[i] for i in rows])
        outputs = serve(**inputs)
        for name, value in outputs.items():
            value = value.numpy()
            if name not in result:
                result[name] = np.empty((len(texts), *value.shape[1:]), dtype=value.dtype)
            result[name][rows] = value
    return result


def check_parity(
    module: TokenIdsClassifier,
    saved_model: Path,
    model,
    texts: list[str],
    batch_size: int,
    text_pairs: list[str] | None = None,
) -> dict:
    """The exported SavedModel against the training path (the Hugging Face tokenizer and the
    Keras model, its logits turned into answers by the numpy forms of the preprocessor's
    rules, as `evaluate` predicts), on `texts` (a pair model's: with `text_pairs`) and
    STRESS_TEXTS (for pairs, each with the next as its second text): the share of texts whose
    in-graph token ids are identical, and the largest probability difference. Raises if any
    text gets other ids, or a difference exceeds 1e-4. A SavedModel without raw-text serving
    is checked through its `token_ids` function, on the training path's ids."""
    from bertclf.prediction import predict_logits

    n_checked = len(texts)
    texts = [*texts, *STRESS_TEXTS]
    if text_pairs is not None:
        text_pairs = [*text_pairs, *STRESS_TEXTS[1:], STRESS_TEXTS[0]]
    preprocessor = module.preprocessor
    encoded = preprocessor.encode(texts, text_pairs)
    logits = predict_logits(model, encoded.sequences, batch_size, preprocessor.tokenize)
    reference = preprocessor.answer(logits, encoded.text_index, len(texts))
    raw_text = isinstance(module, RawTextClassifier)
    if raw_text:
        identical = _identical_ids(module, encoded, texts, text_pairs)
        serve = load_saved_model(saved_model)
        outputs = saved_model_outputs(serve, texts, encoded.lengths, batch_size, text_pairs)
    else:  # the answers the Python API gives through the SavedModel's token_ids
        identical = np.ones(len(texts), dtype=bool)
        exported_logits = predict_logits(
            TokenIdsModel(saved_model), encoded.sequences, batch_size, preprocessor.tokenize
        )
        unscaled = preprocessor.with_temperature(None)  # token_ids' logits come scaled
        answers = unscaled.answer(exported_logits, encoded.text_index, len(texts))
        outputs = {"score": answers[:, 0], "probabilities": answers}
        if preprocessor.multi_label:
            outputs["predicted"] = preprocessor.decide(answers)
    if preprocessor.task == REGRESSION:  # the score is the answer: its difference is the check
        exported = outputs["score"][:, None]
        same_labels = np.ones(len(texts), dtype=bool)
    else:
        exported = outputs["probabilities"]
    difference = np.abs(exported - reference).max(axis=1)
    if preprocessor.multi_label:  # the exported decisions against thresholds.decide on training's
        expected = preprocessor.decide(reference)
        same_labels = (outputs["predicted"] == expected).all(axis=1)
    elif preprocessor.task == SINGLE_LABEL:
        same_labels = exported.argmax(1) == reference.argmax(1)
    report = {
        "n": n_checked,
        "stress_texts": len(STRESS_TEXTS),
        "raw_text_serving": raw_text,
        # of the in-graph tokenizer; without raw-text serving, the ids are training's own
        "token_ids_identical": float(identical.mean()) if raw_text else None,
        "texts_with_other_ids": int((~identical).sum()),
        "max_probability_difference": float(difference[identical].max(initial=0.0)),
        "labels_identical": float(same_labels.mean()),
    }
    if not identical.all():
        first = texts[int(np.flatnonzero(~identical)[0])]
        raise BertclfError(
            f"the SavedModel's in-graph tokenizer gives other token ids than training's on "
            f"{report['texts_with_other_ids']} of {len(texts)} texts (the first: "
            f"{first[:60]!r}); every text must get the same ids"
        )
    if report["max_probability_difference"] > MAX_PROBABILITY_DIFFERENCE:
        raise BertclfError(
            f"the SavedModel's probabilities differ from the trained model's by up to "
            f"{report['max_probability_difference']:.2g} (at most {MAX_PROBABILITY_DIFFERENCE})"
        )
    return report


def _identical_ids(module: RawTextClassifier, encoded, texts, text_pairs) -> np.ndarray:
    """Which texts get the same ids in the graph as in `encoded` (the training path's)."""
    pair_ids = None if text_pairs is None else module.wordpiece_ids(tf.constant(text_pairs))
    graph_sequences, graph_text_of = module.windows(
        module.wordpiece_ids(tf.constant(texts)), pair_ids
    )
    identical = np.ones(len(texts), dtype=bool)
    if len(graph_text_of) != len(encoded.text_index):
        identical[:] = False  # a text was cut into a different number of windows
    else:
        for text, ours, theirs in zip(
            encoded.text_index, graph_sequences.to_list(), encoded.sequences, strict=True
        ):
            identical[text] &= ours == theirs.tolist()
    return identical
