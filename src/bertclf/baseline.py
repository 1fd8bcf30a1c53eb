"""A classic baseline on the same splits: TF-IDF (word 1-2 grams) plus logistic regression;
one regression per label (one-vs-rest) for a multi-label task."""

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline


def fit_baseline(
    texts: pd.Series, targets: np.ndarray, C: float, seed: int, per_label: bool
) -> Pipeline:
    """Fitted on a task's targets (`Task.targets`): class ids, or with `per_label` (a
    multi-label task) a 0/1 column per label, one regression each."""
    classifier = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    if per_label:
        classifier = OneVsRestClassifier(classifier)
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), classifier)
    return pipeline.fit(texts, targets)


def baseline_probabilities(pipeline: Pipeline, texts: pd.Series, n_classes: int) -> np.ndarray:
    """Probabilities with one column per class of the label map, in its order (a class absent
    from training gets 0)."""
    probabilities = np.zeros((len(texts), n_classes))
    probabilities[:, pipeline.classes_] = pipeline.predict_proba(texts)
    return probabilities
