"""A classic baseline on the same splits: TF-IDF (word 1-2 grams) plus logistic regression;
one regression per label (one-vs-rest) for a multi-label task; ridge regression for a
regression task (alpha = 1 / baseline.C, C's inverse as in logistic regression). For text
pairs, the features of each side, their absolute difference, their product and their cosine
(`PairFeatures`)."""

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline

from bertclf.labels import MULTI_LABEL, REGRESSION


class PairFeatures(BaseEstimator, TransformerMixin):
    """TF-IDF (word 1-2 grams, fitted on both sides' texts) of a pair's text a and text_pair b,
    as [a, b, |a - b|, a * b, cos(a, b)] (the rows are unit length: the cosine is a . b)."""

    def fit(self, pairs: pd.DataFrame, y=None):
        self.tfidf_ = tfidf().fit(pd.concat([pairs["text"], pairs["text_pair"]]))
        return self

    def transform(self, pairs: pd.DataFrame):
        a = self.tfidf_.transform(pairs["text"])
        b = self.tfidf_.transform(pairs["text_pair"])
        product = a.multiply(b).tocsr()
        cosine = sparse.csr_matrix(np.asarray(product.sum(axis=1)))
        return sparse.hstack([a, b, abs(a - b), product, cosine]).tocsr()


def tfidf() -> TfidfVectorizer:
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)


def baseline_inputs(frame: pd.DataFrame):
    """What the baseline reads of a split: its texts, or for pairs both text columns."""
    return frame[["text", "text_pair"]] if "text_pair" in frame.columns else frame["text"]


def fit_baseline(texts, targets: np.ndarray, C: float, seed: int, task: str) -> Pipeline:
    """Fitted on `baseline_inputs` and a task's targets (`Task.targets`): class ids, a 0/1
    column per label (one regression each), or scores."""
    if task == REGRESSION:
        model = Ridge(alpha=1 / C)
    else:
        model = LogisticRegression(C=C, max_iter=2000, random_state=seed)
        if task == MULTI_LABEL:
            model = OneVsRestClassifier(model)
    features = PairFeatures() if isinstance(texts, pd.DataFrame) else tfidf()
    pipeline = make_pipeline(features, model)
    return pipeline.fit(texts, targets)


def baseline_probabilities(pipeline: Pipeline, texts, n_classes: int) -> np.ndarray:
    """Probabilities with one column per class of the label map, in its order (a class absent
    from training gets 0); a regression's scores, one column."""
    if not hasattr(pipeline, "predict_proba"):
        return pipeline.predict(texts).reshape(-1, 1)
    probabilities = np.zeros((len(texts), n_classes))
    probabilities[:, pipeline.classes_] = pipeline.predict_proba(texts)
    return probabilities
