"""Metrics on the test and validation splits, plot data, the confusion matrix and the errors.

A multi-label model's labels are decided with the thresholds `calibrate` chose on validation.
"""

import time

import pandas as pd

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, read_json, write_json
from bertclf.labels import LabelMap
from bertclf.paths import (
    CALIBRATION,
    CONFUSION_PNG,
    ERRORS,
    LABELS,
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
    multi_label = LabelMap.load(LABELS).multi_label  # the task, as labels.json alone says

    from bertclf.config import TokenizeConfig
    from bertclf.metrics import probability_scores
    from bertclf.model import load_classifier
    from bertclf.prediction import predict_logits
    from bertclf.preprocessor import Preprocessor
    from bertclf.tokenization import read_token_cache

    model, spec = load_classifier(TRAINED)
    classes, tokenize = spec["classes"], TokenizeConfig(**spec["tokenize"])
    temperature = calibration.get("temperature")
    answers = Preprocessor(None, tokenize, multi_label=multi_label, temperature=temperature)
    scored, before, seconds = {}, {}, {}
    for split in ("test", "val"):
        cache = read_token_cache(TOKENIZED / f"{split}.parquet")
        texts = cache.texts()
        windows = (cache.text_index(), len(texts.ids))
        start = time.perf_counter()
        rows = predict_logits(model, cache.sequences, evaluate.batch_size, tokenize)
        seconds[split] = time.perf_counter() - start
        # the package answers temperature-scaled probabilities; the model's own are kept to
        # report what the temperature changed
        long = texts.text_lengths > tokenize.max_length
        scored[split] = (texts.labels, answers.answer(rows, *windows), long)
        before[split] = answers.with_temperature(None).answer(rows, *windows)
    test_frame = pd.read_parquet(PREPARED / "test.parquet")
    if multi_label:
        metrics, errors = multi_label_reports(
            scored, classes, calibration, test_frame, before["test"]
        )
        headline = f"micro F1 {metrics['test']['micro_f1']:.4f}"
    else:
        metrics, errors = single_label_reports(scored, classes, test_frame, before["test"])
        headline = f"accuracy {metrics['test']['accuracy']:.4f}"
    for split, probabilities in before.items():
        own = probability_scores(scored[split][0], probabilities, multi_label)
        metrics[split].update({f"{key}_before_temperature": value for key, value in own.items()})
    with atomic_path(ERRORS) as tmp:
        errors.to_csv(tmp, index=False)
    write_json(METRICS, metrics)
    test = metrics["test"]
    print(
        f"evaluate: test {headline}, macro F1 {test['macro_f1']:.4f} (n={test['n']}); "
        f"ECE {test['ece_before_temperature']:.4f} -> {test['ece']:.4f} and log loss "
        f"{test['log_loss_before_temperature']:.4f} -> {test['log_loss']:.4f} with the "
        f"temperature {temperature}; predicted the test split in {seconds['test']:.1f} s"
    )


def single_label_reports(
    scored: dict, classes: list[str], test_frame: pd.DataFrame, before_temperature
):
    from bertclf.evaluation import errors_table, write_confusion_png, write_plot_data
    from bertclf.metrics import split_metrics

    metrics = {}
    for split in ("test", "val"):
        y_true, probabilities, long = scored[split]
        metrics[split] = split_metrics(y_true, probabilities, classes, long)
    y_true, probabilities, _ = scored["test"]
    per_class = metrics["test"]["per_class"]
    write_plot_data(PLOTS, y_true, probabilities, classes, per_class, before_temperature)
    write_confusion_png(CONFUSION_PNG, y_true, probabilities, classes)
    return metrics, errors_table(test_frame, y_true, probabilities, classes)


def multi_label_reports(
    scored: dict,
    classes: list[str],
    calibration: dict,
    test_frame: pd.DataFrame,
    before_temperature,
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
    write_multi_label_plot_data(
        PLOTS, y_true, probabilities, decided["test"], classes, per_label, before_temperature
    )
    write_label_counts_png(CONFUSION_PNG, y_true, decided["test"], classes)
    errors = multi_label_errors_table(test_frame, y_true, probabilities, decided["test"], classes)
    return metrics, errors


if __name__ == "__main__":
    main()
