"""Temperature scaling: fitted by hand-worked examples, applied the same way by numpy and by the
package's SavedModel, and reported by the evaluate stage (the shared tiny build)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from bertclf.calibration import fit_temperature
from bertclf.errors import BertclfError
from bertclf.labels import MULTI_LABEL, SINGLE_LABEL
from bertclf.prediction import probabilities as to_probabilities
from bertclf.prediction import scale


def logit(p):
    return np.log(p / (1 - p))


def test_temperature_of_an_overconfident_model_by_hand():
    # every text gets 0.99 for class 0, and 70 of 100 are class 0: the calibrated probability
    # should be 0.7, so (0.99 / 0.01) ** (1 / T) = 0.7 / 0.3, T = ln 99 / ln (7 / 3)
    probabilities = np.tile([[0.99, 0.01]], (100, 1)).astype(np.float32)
    logits = np.log(probabilities)
    y_true = np.array([0] * 70 + [1] * 30)
    temperature = fit_temperature(logits, y_true, SINGLE_LABEL)
    assert temperature == pytest.approx(np.log(99) / np.log(7 / 3), rel=1e-3)  # 5.42
    scaled = to_probabilities(scale(logits, temperature), SINGLE_LABEL)
    np.testing.assert_allclose(scaled[0], [0.7, 0.3], atol=1e-3)
    # log loss: -(0.7 ln 0.99 + 0.3 ln 0.01) = 1.389 before, -(0.7 ln 0.7 + 0.3 ln 0.3) = 0.611
    assert log_loss(y_true, probabilities) == pytest.approx(1.3886, abs=1e-3)
    assert log_loss(y_true, scaled) == pytest.approx(0.6109, abs=1e-3)


def test_temperature_of_an_underconfident_model_is_below_one_and_keeps_every_label():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 300)
    logits = np.eye(3)[y_true] * 0.5 + rng.normal(0, 0.1, (300, 3))  # right, but timidly
    probabilities = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    temperature = fit_temperature(logits, y_true, SINGLE_LABEL)
    scaled = to_probabilities(scale(logits, temperature), SINGLE_LABEL)
    assert temperature < 1
    assert (scaled.argmax(1) == probabilities.argmax(1)).all()
    assert log_loss(y_true, scaled) < log_loss(y_true, probabilities)
    np.testing.assert_allclose(
        to_probabilities(scale(logits, 1.0), SINGLE_LABEL), probabilities, 1e-6
    )
    np.testing.assert_array_equal(scale(logits, None), logits.astype(np.float32))


def test_multi_label_gets_one_temperature_per_label():
    # label 0: probability 0.9 where 60% are positive (overconfident, T > 1); label 1: 0.6
    # where 95% are positive (underconfident, T < 1); label 2: never positive (T stays 1)
    n = 200
    probabilities = np.tile([[0.9, 0.6, 0.2]], (n, 1)).astype(np.float32)
    y_true = np.zeros((n, 3), int)
    y_true[: int(0.6 * n), 0] = 1
    y_true[: int(0.95 * n), 1] = 1
    temperatures = fit_temperature(logit(probabilities), y_true, MULTI_LABEL)
    # sigmoid(logit(p) / T) = rate: T = logit(p) / logit(rate)
    assert temperatures[0] == pytest.approx(logit(0.9) / logit(0.6), rel=1e-3)  # 5.4
    assert temperatures[1] == pytest.approx(logit(0.6) / logit(0.95), rel=1e-3)  # 0.14
    assert temperatures[2] == 1.0
    scaled = to_probabilities(scale(logit(probabilities), temperatures), MULTI_LABEL)
    np.testing.assert_allclose(scaled[0, :2], [0.6, 0.95], atol=1e-3)


def test_no_validation_texts_is_one_clear_error():
    with pytest.raises(BertclfError, match="no validation texts"):
        fit_temperature(np.zeros((0, 2), np.float32), np.zeros(0, int), False)


@pytest.mark.e2e
def test_the_package_answers_the_temperature_the_calibrate_stage_fitted(dag_repo):
    """The SavedModel's token_ids function (and so every runtime converted from it) returns
    the trained model's logits divided by the temperature in calibration.json, and their
    probabilities."""
    import tensorflow as tf

    from bertclf.batching import pad_batch
    from bertclf.export import load_saved_model
    from bertclf.model import load_classifier
    from bertclf.tokenization import read_token_cache

    calibration = json.loads((dag_repo / "models/calibration.json").read_text())
    temperature = calibration["temperature"]
    assert calibration["scaling"] == "temperature" and 0.05 <= temperature <= 20
    cache = read_token_cache(dag_repo / "data/tokenized/test.parquet")
    batch = pad_batch(cache.sequences[:16], 32, 128)
    model, _ = load_classifier(dag_repo / "models/trained")
    own = np.asarray(model.predict_on_batch(batch))  # logits
    token_ids = load_saved_model(dag_repo / "models/package/saved_model", "token_ids")
    answered = token_ids(**{k: tf.constant(v) for k, v in batch.items()})
    np.testing.assert_allclose(answered["logits"], own / temperature, rtol=1e-5, atol=1e-6)
    expected = to_probabilities(own / temperature, SINGLE_LABEL)
    np.testing.assert_allclose(answered["probabilities"], expected, atol=1e-5)
    assert np.abs(to_probabilities(own, SINGLE_LABEL) - expected).max() > 1e-4  # it did change them


@pytest.mark.e2e
def test_metrics_report_calibration_before_and_after_the_temperature(dag_repo):
    metrics = json.loads((dag_repo / "reports/metrics.json").read_text())
    for split in ("test", "val"):
        for key in ("ece", "log_loss", "ece_before_temperature", "log_loss_before_temperature"):
            assert 0 <= metrics[split][key] < 10, (split, key)
    # fitted on validation to minimise log loss there: it cannot be worse there
    assert metrics["val"]["log_loss"] <= metrics["val"]["log_loss_before_temperature"] + 1e-6
    plots = dag_repo / "reports/plots"
    before = pd.read_csv(plots / "calibration_before_temperature.csv")
    after = pd.read_csv(plots / "calibration.csv")
    assert list(before.columns) == list(after.columns) == ["bin", "confidence", "accuracy", "count"]
    assert before["count"].sum() == after["count"].sum() == metrics["test"]["n"]
