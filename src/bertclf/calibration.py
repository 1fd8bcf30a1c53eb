"""Temperature scaling: probabilities that mean what they say.

One temperature T (multi-label: one per label) divides the model's logits before the softmax
(sigmoid); T > 1 softens an overconfident model, T < 1 sharpens an underconfident one, and the
most probable class never changes. T is fitted on the validation split's windows by minimising
log loss (`calibrate` stage) and applied wherever the model answers: the evaluate stage, and
inside the package's SavedModel functions, so the OpenVINO models converted from them, the
Python API, the CLI and the server all answer calibrated probabilities. The scaling itself is
`prediction.scale`, in numpy and in the graph.
"""

import numpy as np

from bertclf.errors import BertclfError
from bertclf.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from bertclf.prediction import probabilities, scale

BOUNDS = (0.05, 20.0)  # the temperatures searched


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, task: str):
    """The temperature that minimises log loss on (logits, y_true): a float, or one per
    label (a list) for a multi-label model; a label with no positive or no negative example
    keeps 1.0 (its log loss has no interior minimum). A regression model's scores are no
    probabilities: nothing to fit (None)."""
    from scipy.optimize import minimize_scalar
    from sklearn.metrics import log_loss

    if task == REGRESSION:
        return None
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

    if task == SINGLE_LABEL:
        labels = np.arange(logits.shape[1])

        def single_label_loss(t: float) -> float:
            return log_loss(y_true, probabilities(scale(logits, t), SINGLE_LABEL), labels=labels)

        return fitted(single_label_loss)
    temperatures = []
    for j in range(logits.shape[1]):
        truth = y_true[:, j] > 0.5
        if truth.all() or not truth.any():
            temperatures.append(1.0)
            continue
        column = logits[:, j : j + 1]
        temperatures.append(
            fitted(
                lambda t, c=column, y=truth: log_loss(
                    y, probabilities(scale(c, t), MULTI_LABEL)[:, 0], labels=[0, 1]
                )
            )
        )
    return temperatures
