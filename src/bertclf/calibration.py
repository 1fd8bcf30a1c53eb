"""Temperature scaling: probabilities that mean what they say.

One temperature T (multi-label: one per label) divides the model's logits before the softmax
(sigmoid); T > 1 softens an overconfident model, T < 1 sharpens an underconfident one, and the
most probable class never changes. T is fitted on the validation split by minimising log loss
(`calibrate` stage) and applied wherever the model answers: the evaluate stage, and inside the
package's SavedModel functions, so the OpenVINO models converted from them, the Python API, the
CLI and the server all answer calibrated probabilities.

The model's outputs are probabilities, so the logits are recovered from them: log p for a
softmax (the constant lost in the softmax cancels), log p - log(1 - p) for a sigmoid. Both are
computed the same way here (numpy) and in the graph (`export`).
"""

import numpy as np

from bertclf.errors import BertclfError

BOUNDS = (0.05, 20.0)  # the temperatures searched
SOFTMAX_FLOOR = 1e-30  # log of a probability that underflowed to 0
SIGMOID_EPSILON = 1e-7  # sigmoid probabilities kept inside (eps, 1 - eps) before the logit


def scale(probabilities: np.ndarray, temperature, multi_label: bool) -> np.ndarray:
    """The probabilities after temperature scaling (float32, as the model's)."""
    p = np.asarray(probabilities, dtype=np.float32)
    t = np.asarray(temperature, dtype=np.float32)
    if multi_label:
        p = np.clip(p, SIGMOID_EPSILON, 1 - SIGMOID_EPSILON)
        logits = (np.log(p) - np.log1p(-p)) / t
        return (1 / (1 + np.exp(-logits))).astype(np.float32)
    logits = np.log(np.maximum(p, SOFTMAX_FLOOR)) / t
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_temperature(probabilities: np.ndarray, y_true: np.ndarray, multi_label: bool):
    """The temperature that minimises log loss on (probabilities, y_true): a float, or one per
    label (a list) for a multi-label model; a label with no positive or no negative example
    keeps 1.0 (its log loss has no interior minimum)."""
    from scipy.optimize import minimize_scalar
    from sklearn.metrics import log_loss

    y_true = np.asarray(y_true)
    if not len(y_true):
        raise BertclfError("calibrate: no validation texts to fit a temperature on")

    def fitted(loss) -> float:
        result = minimize_scalar(
            lambda log_t: loss(float(np.exp(log_t))),
            bounds=np.log(BOUNDS),
            method="bounded",
            options={"xatol": 1e-4},
        )
        return float(np.exp(result.x))

    if not multi_label:
        labels = np.arange(probabilities.shape[1])
        return fitted(lambda t: log_loss(y_true, scale(probabilities, t, False), labels=labels))
    temperatures = []
    for j in range(probabilities.shape[1]):
        truth = y_true[:, j] > 0.5
        if truth.all() or not truth.any():
            temperatures.append(1.0)
            continue
        column = probabilities[:, j : j + 1]
        temperatures.append(
            fitted(lambda t, c=column, y=truth: log_loss(y, scale(c, t, True)[:, 0], labels=[0, 1]))
        )
    return temperatures


class Calibrated:
    """A model whose `predict_on_batch` answers temperature-scaled probabilities."""

    def __init__(self, model, temperature, multi_label: bool):
        self.model = model
        self.temperature = temperature
        self.multi_label = multi_label

    def predict_on_batch(self, inputs) -> np.ndarray:
        probabilities = np.asarray(self.model.predict_on_batch(inputs))
        return scale(probabilities, self.temperature, self.multi_label)


def calibrated(model, calibration: dict, multi_label: bool):
    """`model`, temperature-scaled if calibration.json holds a temperature."""
    temperature = calibration.get("temperature")
    return model if temperature is None else Calibrated(model, temperature, multi_label)
