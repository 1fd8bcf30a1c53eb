"""Metrics on the test and validation splits, plot data, the confusion matrix and the errors."""

import time

import pandas as pd

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, write_json
from bertclf.paths import CONFUSION_PNG, ERRORS, METRICS, PLOTS, PREPARED, TOKENIZED, TRAINED


@exits_cleanly
def main() -> None:
    evaluate = load_section("evaluate")

    from bertclf.batching import predict_texts
    from bertclf.config import TokenizeConfig
    from bertclf.evaluation import errors_table, write_confusion_png, write_plot_data
    from bertclf.metrics import split_metrics
    from bertclf.model import load_classifier
    from bertclf.tokenization import read_token_cache

    model, spec = load_classifier(TRAINED)
    classes, tokenize = spec["classes"], TokenizeConfig(**spec["tokenize"])
    metrics, scored, seconds = {}, {}, {}
    for split in ("test", "val"):
        cache = read_token_cache(TOKENIZED / f"{split}.parquet")
        start = time.perf_counter()
        texts, probabilities = predict_texts(model, cache, evaluate.batch_size, tokenize)
        seconds[split] = time.perf_counter() - start
        y_true = texts.labels
        long = texts.text_lengths > tokenize.max_length
        metrics[split] = split_metrics(y_true, probabilities, classes, long)
        scored[split] = (y_true, probabilities)

    y_true, probabilities = scored["test"]
    write_plot_data(PLOTS, y_true, probabilities, classes, metrics["test"]["per_class"])
    write_confusion_png(CONFUSION_PNG, y_true, probabilities, classes)
    errors = errors_table(
        pd.read_parquet(PREPARED / "test.parquet"), y_true, probabilities, classes
    )
    with atomic_path(ERRORS) as tmp:
        errors.to_csv(tmp, index=False)
    write_json(METRICS, metrics)
    print(
        f"evaluate: test accuracy {metrics['test']['accuracy']:.4f}, "
        f"macro F1 {metrics['test']['macro_f1']:.4f} (n={metrics['test']['n']}); "
        f"predicted the test split in {seconds['test']:.1f} s"
    )


if __name__ == "__main__":
    main()
