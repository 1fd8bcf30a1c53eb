"""Metrics on the test and validation splits, plot data, the confusion matrix and the errors.

A multi-label model's labels are decided with the thresholds `calibrate` chose on validation.
"""

import time

import pandas as pd

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, read_json, write_json
from bertclf.paths import (
    CALIBRATION,
    CONFUSION_PNG,
    ERRORS,
    METRICS,
    PLOTS,
    PREPARED,
    TOKENIZED,
    TRAINED,
)


@exits_cleanly
def main() -> None:
    evaluate = load_section("evaluate")
    calibration = read_json(CALIBRATION)

    from bertclf.batching import predict_texts
    from bertclf.config import TokenizeConfig
    from bertclf.model import load_classifier
    from bertclf.tokenization import read_token_cache

    model, spec = load_classifier(TRAINED)
    classes, tokenize = spec["classes"], TokenizeConfig(**spec["tokenize"])
    multi_label = spec["task"] == "multi_label"
    scored, seconds = {}, {}
    for split in ("test", "val"):
        cache = read_token_cache(TOKENIZED / f"{split}.parquet")
        start = time.perf_counter()
        texts, probabilities = predict_texts(
            model, cache, evaluate.batch_size, tokenize, multi_label
        )
        seconds[split] = time.perf_counter() - start
        scored[split] = (texts.labels, probabilities, texts.text_lengths > tokenize.max_length)
    test_frame = pd.read_parquet(PREPARED / "test.parquet")
    if multi_label:
        metrics, errors = multi_label_reports(scored, classes, calibration, test_frame)
        headline = f"micro F1 {metrics['test']['micro_f1']:.4f}"
    else:
        metrics, errors = single_label_reports(scored, classes, test_frame)
        headline = f"accuracy {metrics['test']['accuracy']:.4f}"
    with atomic_path(ERRORS) as tmp:
        errors.to_csv(tmp, index=False)
    write_json(METRICS, metrics)
    print(
        f"evaluate: test {headline}, macro F1 {metrics['test']['macro_f1']:.4f} "
        f"(n={metrics['test']['n']}); predicted the test split in {seconds['test']:.1f} s"
    )


def single_label_reports(scored: dict, classes: list[str], test_frame: pd.DataFrame):
    from bertclf.evaluation import errors_table, write_confusion_png, write_plot_data
    from bertclf.metrics import split_metrics

    metrics = {}
    for split in ("test", "val"):
        y_true, probabilities, long = scored[split]
        metrics[split] = split_metrics(y_true, probabilities, classes, long)
    y_true, probabilities, _ = scored["test"]
    write_plot_data(PLOTS, y_true, probabilities, classes, metrics["test"]["per_class"])
    write_confusion_png(CONFUSION_PNG, y_true, probabilities, classes)
    return metrics, errors_table(test_frame, y_true, probabilities, classes)


def multi_label_reports(
    scored: dict, classes: list[str], calibration: dict, test_frame: pd.DataFrame
):
    from bertclf.evaluation import (
        multi_label_errors_table,
        write_label_counts_png,
        write_multi_label_plot_data,
    )
    from bertclf.metrics import multi_label_split_metrics
    from bertclf.thresholds import Thresholds, decide

    rule = Thresholds.from_json(calibration, str(CALIBRATION))
    thresholds = rule.vector(classes)
    metrics, decided = {}, {}
    for split in ("test", "val"):
        y_true, probabilities, long = scored[split]
        decided[split] = decide(probabilities, thresholds, rule.at_least_one)
        metrics[split] = multi_label_split_metrics(
            y_true, probabilities, decided[split], classes, thresholds, long
        )
    y_true, probabilities, _ = scored["test"]
    per_label = metrics["test"]["per_label"]
    write_multi_label_plot_data(PLOTS, y_true, probabilities, decided["test"], classes, per_label)
    write_label_counts_png(CONFUSION_PNG, y_true, decided["test"], classes)
    errors = multi_label_errors_table(test_frame, y_true, probabilities, decided["test"], classes)
    return metrics, errors


if __name__ == "__main__":
    main()
