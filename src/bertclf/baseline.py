"""A classic baseline on the same splits: TF-IDF (word 1-2 grams) plus logistic regression."""

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from bertclf.labels import LabelMap


def fit_baseline(train: pd.DataFrame, label_map: LabelMap, C: float, seed: int) -> Pipeline:
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(C=C, max_iter=2000, random_state=seed),
    )
    return pipeline.fit(train["text"], label_map.encode(train["label"]))


def baseline_probabilities(pipeline: Pipeline, texts: pd.Series, n_classes: int) -> np.ndarray:
    """Probabilities with one column per class of the label map, in its order."""
    probabilities = np.zeros((len(texts), n_classes))
    probabilities[:, pipeline.classes_] = pipeline.predict_proba(texts)
    return probabilities


def fit_multi_label_baseline(
    train: pd.DataFrame, label_map: LabelMap, C: float, seed: int
) -> Pipeline:
    """One logistic regression per label (one-vs-rest) on the same TF-IDF features."""
    from sklearn.multiclass import OneVsRestClassifier

    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        OneVsRestClassifier(LogisticRegression(C=C, max_iter=2000, random_state=seed)),
    )
    return pipeline.fit(train["text"], label_map.encode_sets(train["labels"]))
