"""Metrics on the test and validation splits, the confusion matrix, and the misclassified texts."""

from pathlib import Path

import numpy as np
import pandas as pd

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, write_json

PREPARED = Path("data/prepared")
TOKENIZED = Path("data/tokenized")
TRAINED = Path("models/trained")
METRICS = "reports/metrics.json"
CONFUSION = "reports/confusion.csv"
CONFUSION_PNG = "reports/confusion.png"
ERRORS = "reports/errors.csv"


@exits_cleanly
def main() -> None:
    evaluate = load_section("evaluate")

    from bertclf.config import TokenizeConfig
    from bertclf.metrics import (
        classification_metrics,
        confusion_rows,
        save_confusion_png,
    )
    from bertclf.model import load_classifier
    from bertclf.tokenization import read_token_cache
    from bertclf.training import predict_probabilities

    model, spec = load_classifier(TRAINED)
    classes, tokenize = spec["classes"], TokenizeConfig(**spec["tokenize"])
    metrics, predictions = {}, {}
    for split in ("test", "val"):
        sequences, y_true = read_token_cache(TOKENIZED / f"{split}.parquet")
        probabilities = predict_probabilities(model, sequences, evaluate.batch_size, tokenize)
        y_pred = probabilities.argmax(axis=1)
        metrics[split] = classification_metrics(y_true, y_pred, classes)
        predictions[split] = (y_true, y_pred, probabilities)

    y_true, y_pred, probabilities = predictions["test"]
    with atomic_path(CONFUSION) as tmp:
        pd.DataFrame(confusion_rows(y_true, y_pred, classes)).to_csv(tmp, index=False)
    with atomic_path(CONFUSION_PNG) as tmp:
        save_confusion_png(y_true, y_pred, classes, str(tmp), "test")
    test = pd.read_parquet(PREPARED / "test.parquet")
    wrong = np.flatnonzero(y_true != y_pred)
    errors = pd.DataFrame(
        {
            "id": test["id"].to_numpy()[wrong],
            "text": test["text"].to_numpy()[wrong],
            "true_label": [classes[i] for i in y_true[wrong]],
            "predicted_label": [classes[i] for i in y_pred[wrong]],
            "confidence": probabilities[wrong].max(axis=1),
        }
    ).sort_values("confidence", ascending=False)
    with atomic_path(ERRORS) as tmp:
        errors.to_csv(tmp, index=False)
    write_json(METRICS, metrics)
    print(
        f"evaluate: test accuracy {metrics['test']['accuracy']:.4f}, "
        f"macro F1 {metrics['test']['macro_f1']:.4f} (n={metrics['test']['n']})"
    )


if __name__ == "__main__":
    main()
