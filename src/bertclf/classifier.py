"""Inference on a packaged model, in the manner of a scikit-learn classifier."""

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bertclf.choices import ATTRIBUTION_STEPS
from bertclf.config import CleanConfig, TokenizeConfig
from bertclf.errors import BertclfError
from bertclf.labels import REGRESSION, LabelMap
from bertclf.package_reader import Package, open_package
from bertclf.preprocessor import Preprocessor
from bertclf.tasks import task_of
from bertclf.thresholds import Thresholds
from bertclf.tokenization import Encoded


class Classifier:
    """A fine-tuned BERT classifier loaded from a package directory.

    >>> clf = Classifier.load("models/package")
    >>> clf.predict(["great coffee"])            # labels (multi-label: a list of labels each)
    >>> clf.predict_proba(["great coffee"])      # columns in clf.classes_ order

    A pair model takes each text's second text: `clf.predict(texts, text_pairs=seconds)`.
    """

    def __init__(
        self,
        model,
        tokenizer,
        label_map: LabelMap,
        tokenize: TokenizeConfig,
        batch_size: int = 64,
        thresholds: Thresholds | None = None,
        runtime: str = "tensorflow",
        precision: str = "f32",
        clean: CleanConfig | None = None,
        text_pair: bool = False,
    ):
        self.model = model
        self.runtime = runtime  # what runs the model: tensorflow or openvino
        self.precision = precision  # f32, bf16 or int8
        self.label_map = label_map
        self.batch_size = batch_size
        self.classes_ = np.asarray(label_map.classes)
        self.multi_label = label_map.multi_label
        self.task = task_of(label_map)  # what differs between tasks at the front doors
        self.thresholds = thresholds  # multi-label: the rule calibration.json holds
        self.package: Package | None = None  # the package's files, when loaded from one
        self._explainer = None  # the SavedModel's attribution functions, loaded on first use
        if self.multi_label and thresholds is None:
            raise BertclfError("a multi-label classifier needs its thresholds (calibration.json)")
        # the package's models hold the temperature: the logits they answer are scaled already
        self.preprocessor = Preprocessor(
            tokenizer,
            tokenize,
            clean,
            label_map.task,
            temperature=None,
            thresholds=thresholds.vector(list(label_map.classes)) if thresholds else None,
            at_least_one=thresholds.at_least_one if thresholds else True,
            text_pair=text_pair,
        )

    @property
    def tokenizer(self):
        return self.preprocessor.tokenizer

    @property
    def tokenize(self) -> TokenizeConfig:
        """How texts are fitted to the window, as the model was trained."""
        return self.preprocessor.tokenize

    @property
    def clean(self) -> CleanConfig | None:
        """The cleaning the package was trained with (data.clean)."""
        return self.preprocessor.clean

    @classmethod
    def load(
        cls,
        path: str | Path,
        batch_size: int = 64,
        expect_sha256: str | None = None,
        runtime: str = "auto",
        precision: str = "auto",
    ) -> "Classifier":
        """Load a package, after checking every file against its manifest and the graph's ops
        against those bertclf packages use. A package is a program: load only packages from
        sources you trust, and pass `expect_sha256` (or set BERTCLF_PACKAGE_SHA256), the
        manifest's digest as its builder published it, to know it is the one you were given.

        `runtime` is "tensorflow", "openvino" or "auto"; `precision` "f32", "bf16", "int8" or
        "auto". `auto` runs OpenVINO when the package holds its models, in bf16 on CPUs with
        native bfloat16 (avx512_bf16, amx_bf16) and in f32 elsewhere, and TensorFlow for a
        package built without them; int8 runs only when asked for. `runtime` and `precision`
        say what was chosen."""
        with open_package(path, expect_sha256) as package:
            return cls.from_package(package, batch_size, runtime, precision)

    @classmethod
    def from_package(
        cls, package: Package, batch_size: int = 64, runtime: str = "auto", precision: str = "auto"
    ) -> "Classifier":
        """The classifier of a package `open_package` read (inside its `with`, while the
        checked copy exists)."""
        from bertclf.hardware import cpu, native_bfloat16
        from bertclf.runtime import choose

        bfloat16 = native_bfloat16(cpu()["flags"])
        runtime, precision = choose(
            runtime, precision, list(package.offered), bfloat16, package.path
        )
        if runtime == "openvino":
            from bertclf.runtime import OpenVINOModel, model_path

            model = OpenVINOModel(model_path(package.path, precision), precision, bfloat16)
        else:
            from bertclf.export import TokenIdsModel
            from bertclf.layout import SAVED_MODEL
            from bertclf.package import check_saved_model_ops

            check_saved_model_ops(package.path / SAVED_MODEL)  # before TensorFlow loads the graph
            model = TokenIdsModel(package.path / SAVED_MODEL)
        classes = package.label_map.classes
        width = getattr(model, "output_width", None)
        if width is not None and width != len(classes):
            raise BertclfError(
                f"{package.path}: the model answers {width} columns, but labels.json has "
                f"{len(classes)} classes: not a consistent package"
            )
        classifier = cls(
            model,
            package.tokenizer,
            package.label_map,
            package.tokenize,
            batch_size,
            package.thresholds,
            runtime,
            precision,
            package.clean,
            package.text_pair,
        )
        classifier.package = package
        return classifier

    def describe(self) -> str:
        """What runs the model, for a program's first line: `runtime openvino, precision bf16`."""
        return f"runtime {self.runtime}, precision {self.precision}"

    @property
    def text_pair(self) -> bool:
        """Whether each example is two texts (`predict(texts, text_pairs=...)`)."""
        return self.preprocessor.text_pair

    @staticmethod
    def _texts(texts: str | Iterable[str], name: str = "texts") -> list[str]:
        if isinstance(texts, str):
            return [texts]
        if getattr(texts, "ndim", 1) != 1:  # a DataFrame iterates its column names
            shape = "x".join(map(str, getattr(texts, "shape", ())))
            raise BertclfError(
                f"{name} is {type(texts).__name__} of shape {shape}, not one column of texts; "
                "pass a column, such as df['text'], a list or a 1-D array"
            )
        texts = list(texts)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise BertclfError(f"{name}[{row}] is not a string: {text!r}")
            if not text.strip():  # the one rule of the API, the CLI and the server
                raise BertclfError(
                    f"{name}[{row}] is empty or only whitespace: nothing to classify"
                )
        return texts

    def predict_proba(
        self,
        texts: str | Iterable[str],
        batch_size: int | None = None,
        progress: bool = False,
        text_pairs: str | Iterable[str] | None = None,
    ) -> np.ndarray:
        """Probabilities, shape (n_texts, n_classes), columns in `classes_` order. Long texts
        are fitted to the window the way the model was trained (`tokenize.long_text`). A
        regression model has no probabilities: `predict` gives its scores."""
        if self.task.name == REGRESSION:
            raise BertclfError(
                "predict_proba: a regression model answers scores, not probabilities; use predict()"
            )
        return self.outputs(texts, text_pairs, batch_size, progress)

    def outputs(
        self,
        texts: str | Iterable[str],
        text_pairs: str | Iterable[str] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """What the model answers per text before any decision: the probabilities, or a
        regression model's scores (one column)."""
        return self.predict_encoded(self.encode(texts, text_pairs), batch_size, progress)

    def encode(
        self, texts: str | Iterable[str], text_pairs: str | Iterable[str] | None = None
    ) -> Encoded:
        """The texts' token ids (a pair model's: of the pairs), cleaned and fitted to the
        window as in training."""
        pairs = None if text_pairs is None else self._texts(text_pairs, "text_pairs")
        return self.preprocessor.encode(self._texts(texts), pairs)

    def predict_encoded(
        self, encoded: Encoded, batch_size: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """`predict_proba` on texts already encoded with `encode` (one row per text)."""
        from bertclf.prediction import predict_logits

        n_texts = len(encoded.lengths)
        if not n_texts:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        rows = predict_logits(
            self.model,
            encoded.sequences,
            batch_size or self.batch_size,
            self.tokenize,
            progress=progress,
        )
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():  # a NaN must never become a label
            text = int(encoded.text_index[np.flatnonzero(~finite)[0]])
            raise BertclfError(
                f"the model answered a probability that is not a number for texts[{text}]: "
                "the package is damaged, or was trained on NaN"
            )
        return self.preprocessor.answer(rows, encoded.text_index, n_texts)

    def predict(
        self,
        texts: str | Iterable[str],
        batch_size: int | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        text_pairs: str | Iterable[str] | None = None,
    ):
        """The most probable label of each text, shape (n_texts,); with `top_k`, the k most
        probable, most probable first, shape (n_texts, k). Multi-label: each text's list of
        labels, decided by the package's thresholds (or one global `threshold` instead).
        Regression: each text's score (float32)."""
        if top_k is not None and self.task.name == REGRESSION:
            raise BertclfError("top_k= ranks classes; a regression model answers one score")
        probabilities = self.predict_encoded(self.encode(texts, text_pairs), batch_size)
        if top_k is not None:
            return self.classes_[_top_columns(probabilities, top_k, len(self.classes_))]
        if threshold is None:
            return self.task.labels(self.preprocessor.decide(probabilities))
        if not self.multi_label:
            raise BertclfError("threshold= is for multi-label models; this one is single-label")
        return self.task.labels(self.decide(probabilities, threshold))

    def decide(self, probabilities: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Multi-label: which labels each text gets (bool, one column per label), by the
        package's thresholds or one global `threshold`."""
        if not self.multi_label:
            raise BertclfError("decide() is for multi-label models; this one is single-label")
        if threshold is not None and not 0 < threshold < 1:
            raise BertclfError(f"threshold={threshold}: expected a number between 0 and 1")
        return self.preprocessor.decide(probabilities, threshold)

    def top_k(
        self,
        texts: str | Iterable[str],
        k: int = 3,
        batch_size: int | None = None,
        text_pairs: str | Iterable[str] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """The k most probable labels of each text, with their probabilities."""
        probabilities = self.predict_proba(texts, batch_size, text_pairs=text_pairs)
        return most_probable(probabilities, self.classes_, k)

    def explain(
        self,
        texts: str | Iterable[str],
        text_pairs: str | Iterable[str] | None = None,
        label: str | None = None,
        steps: int = ATTRIBUTION_STEPS,
        baseline: str = "pad",
    ) -> list[dict]:
        """Token attributions of each text's answer: integrated gradients on the token
        embeddings (`bertclf.attributions`), on TensorFlow whatever runtime predicts.

        Each text gets a dict: `text` (and `text_pair`), `tokens` (each token the model saw:
        `token`, `start` and `end`, character offsets into its text, and for pairs `side`, 0
        or 1), and `explained`, one entry per explained answer: `label`, `value` (the
        probability; regression: the score), `baseline_value` (the baseline's) and
        `attributions`, one per token, adding up to about `value - baseline_value`. The
        explained answer is the predicted class (multi-label: each predicted label;
        regression: the score), or `label` for every text. Where data.clean changed a text,
        `model_text` holds what the model read, which the offsets index."""
        from bertclf.attributions import check_steps, explain_texts, explained_columns
        from bertclf.preprocessor import check_pairs_given

        check_steps(steps, baseline)
        texts = self._texts(texts)
        pairs = None if text_pairs is None else self._texts(text_pairs, "text_pairs")
        check_pairs_given(self.preprocessor.text_pair, pairs, len(texts))
        classes = [str(c) for c in self.label_map.classes]
        explained_columns(self.preprocessor, classes, label)  # a bad label, before any loading
        return explain_texts(
            self.explainer(), self.preprocessor, classes, texts, pairs, label, steps, baseline
        )

    def explainer(self):
        """The package's attribution functions on TensorFlow, loaded once: the SavedModel the
        TensorFlow runtime already holds, else read again from the package this classifier was
        loaded from, checked against the same manifest digest."""
        if self._explainer is not None:
            return self._explainer
        if self.package is None:
            raise BertclfError("explain() needs a classifier loaded from a package")
        from bertclf.attributions import Explainer
        from bertclf.export import TokenIdsModel
        from bertclf.layout import SAVED_MODEL
        from bertclf.package import check_saved_model_ops

        if isinstance(self.model, TokenIdsModel):  # loaded already: not a second time
            loaded = self.model.loaded
        else:
            with open_package(self.package.source, self.package.manifest_sha256) as package:
                check_saved_model_ops(package.path / SAVED_MODEL)
                loaded = TokenIdsModel(package.path / SAVED_MODEL).loaded
        self._explainer = Explainer.of_saved_model(
            loaded, self.package.source / SAVED_MODEL, self.preprocessor
        )
        return self._explainer


def _top_columns(probabilities: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    if not 1 <= k <= n_classes:
        raise BertclfError(f"top_k={k}: expected 1 to {n_classes} (the number of classes)")
    return np.argsort(-probabilities, axis=1, kind="stable")[:, :k]


def most_probable(
    probabilities: np.ndarray, classes: np.ndarray, k: int
) -> list[list[tuple[str, float]]]:
    """Each row's k most probable classes with their probabilities, most probable first."""
    columns = _top_columns(probabilities, k, len(classes))
    return [
        [(str(classes[j]), float(row[j])) for j in cols]
        for row, cols in zip(probabilities, columns, strict=True)
    ]
