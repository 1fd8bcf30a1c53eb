"""A classic baseline on the same splits: TF-IDF (word 1-2 grams) plus logistic regression;
one regression per label (one-vs-rest) for a multi-label task; ridge regression for a
regression task (alpha = 1 / baseline.C, C's inverse as in logistic regression)."""

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline

from bertclf.labels import MULTI_LABEL, REGRESSION


def fit_baseline(texts: pd.Series, targets: np.ndarray, C: float, seed: int, task: str) -> Pipeline:
    """Fitted on a task's targets (`Task.targets`): class ids, a 0/1 column per label (one
    regression each), or scores."""
    if task == REGRESSION:
        model = Ridge(alpha=1 / C)
    else:
        model = LogisticRegression(C=C, max_iter=2000, random_state=seed)
        if task == MULTI_LABEL:
            model = OneVsRestClassifier(model)
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), model)
    return pipeline.fit(texts, targets)


def baseline_probabilities(pipeline: Pipeline, texts: pd.Series, n_classes: int) -> np.ndarray:
    """Probabilities with one column per class of the label map, in its order (a class absent
    from training gets 0); a regression's scores, one column."""
    if not hasattr(pipeline, "predict_proba"):
        return pipeline.predict(texts).reshape(-1, 1)
    probabilities = np.zeros((len(texts), n_classes))
    probabilities[:, pipeline.classes_] = pipeline.predict_proba(texts)
    return probabilities
