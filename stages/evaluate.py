"""Metrics on the test and validation splits, plot data, the confusion matrix, the errors and
the token attributions of the first errors (what the report shows of them).

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
    EXPLAINED_MISTAKES,
    LABELS,
    METRICS,
    PLOTS,
    PREPARED,
    PRETRAINED,
    TOKENIZED,
    TRAINED,
)
from bertclf.tasks import task_of

FIRST_MISTAKES = 5  # the errors whose tokens are explained for the report


@exits_cleanly
def main() -> None:
    evaluate = load_section("evaluate")
    clean = load_section("data").clean
    calibration = read_json(CALIBRATION)
    task = task_of(LabelMap.load(LABELS))  # the task, as labels.json alone says

    from bertclf.attributions import explain_texts
    from bertclf.config import TokenizeConfig
    from bertclf.evaluation import tables_of
    from bertclf.export import keras_explainer
    from bertclf.metrics import metrics_of
    from bertclf.model import load_classifier
    from bertclf.prediction import predict_logits
    from bertclf.preprocessor import Preprocessor
    from bertclf.thresholds import read_rule
    from bertclf.tokenization import load_tokenizer, read_token_cache

    model, spec = load_classifier(TRAINED)
    classes, tokenize = spec["classes"], TokenizeConfig(**spec["tokenize"])
    temperature = calibration.get("temperature")
    rule = read_rule(task.name, calibration, str(CALIBRATION))
    pairs = spec.get("pair_separator_id") is not None
    tokenizer = load_tokenizer(PRETRAINED)
    answers = Preprocessor(tokenizer, tokenize, clean, task.name, temperature, pairs)
    answers = answers.with_rule(rule, classes)
    scoring, metrics, scored, seconds = metrics_of(task.name), {}, {}, {}
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
        probabilities = answers.answer(rows, *windows)
        before = answers.with_temperature(None).answer(rows, *windows)
        decided = answers.decide(probabilities)
        scored[split] = (texts.labels, probabilities, decided, before)
        metrics[split] = scoring.split(
            texts.labels, probabilities, decided, classes, long, answers.thresholds
        )
        own = scoring.probability_scores(texts.labels, before)
        metrics[split].update({f"{key}_before_temperature": value for key, value in own.items()})
    y_true, probabilities, decided, before = scored["test"]
    tables = tables_of(task.name)
    tables.write(PLOTS, CONFUSION_PNG, y_true, probabilities, decided, classes, metrics, before)
    test_frame = pd.read_parquet(PREPARED / "test.parquet")
    errors = tables.errors(test_frame, y_true, probabilities, decided, classes)
    with atomic_path(ERRORS) as tmp:
        errors.to_csv(tmp, index=False)
    # what the package's explain() answers for them, from the same functions of the same model
    mistakes = errors.head(FIRST_MISTAKES)
    explainer = keras_explainer(model, spec["head"]["pooling"], answers)
    mistake_pairs = mistakes["text_pair"].tolist() if pairs else None
    explained = explain_texts(explainer, answers, classes, mistakes["text"].tolist(), mistake_pairs)
    ids = mistakes["id"].astype(str)
    write_json(EXPLAINED_MISTAKES, [{"id": i, **e} for i, e in zip(ids, explained, strict=True)])
    write_json(METRICS, metrics)
    print(
        f"evaluate: test {scoring.summary(metrics['test'])} with the temperature {temperature}; "
        f"predicted the test split in {seconds['test']:.1f} s"
    )


if __name__ == "__main__":
    main()
