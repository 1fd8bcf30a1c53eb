"""Train TF-IDF plus logistic regression on the prepared splits; write metrics like the model's.

Multi-label: one regression per label, its thresholds chosen on validation as `calibrate`
chooses the model's (task.threshold, task.min_val_positives, task.at_least_one).
"""

import pandas as pd

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import write_json
from bertclf.labels import LabelMap
from bertclf.paths import BASELINE, LABELS, PREPARED, TOKENIZED
from bertclf.tokenization import read_token_cache


@exits_cleanly
def main() -> None:
    baseline = load_section("baseline")
    seed = load_section("seed")
    tokenize = load_section("tokenize")
    task = load_section("task")

    label_map = LabelMap.load(LABELS)
    train = pd.read_parquet(PREPARED / "train.parquet")
    frames, long = {}, {}
    for split in ("test", "val"):
        frames[split] = pd.read_parquet(PREPARED / f"{split}.parquet")
        # split by the encoder's window, like the model's metrics, to compare on long texts
        texts = read_token_cache(TOKENIZED / f"{split}.parquet").texts()
        lengths = pd.Series(texts.text_lengths, index=texts.ids).loc[frames[split]["id"]]
        long[split] = lengths.to_numpy() > tokenize.max_length
    if label_map.multi_label:
        metrics = multi_label_baseline(train, frames, long, label_map, baseline, task, seed)
    else:
        metrics = single_label_baseline(train, frames, long, label_map, baseline, seed)
    write_json(BASELINE, metrics)
    headline = "micro_f1" if label_map.multi_label else "accuracy"
    print(
        f"baseline: test {headline} {metrics['test'][headline]:.4f}, "
        f"macro F1 {metrics['test']['macro_f1']:.4f}"
    )


def single_label_baseline(train, frames, long, label_map, baseline, seed) -> dict:
    from bertclf.baseline import baseline_probabilities, fit_baseline
    from bertclf.metrics import split_metrics

    pipeline = fit_baseline(train, label_map, baseline.C, seed)
    metrics = {}
    for split, frame in frames.items():
        probabilities = baseline_probabilities(pipeline, frame["text"], len(label_map.classes))
        y_true = label_map.encode(frame["label"])
        metrics[split] = split_metrics(y_true, probabilities, list(label_map.classes), long[split])
    return metrics


def multi_label_baseline(train, frames, long, label_map, baseline, task, seed) -> dict:
    from bertclf.baseline import fit_multi_label_baseline
    from bertclf.metrics import multi_label_split_metrics
    from bertclf.thresholds import decide, tune

    classes = list(label_map.classes)
    pipeline = fit_multi_label_baseline(train, label_map, baseline.C, seed)
    truth = {split: label_map.encode_sets(frame["labels"]) for split, frame in frames.items()}
    scores = {split: pipeline.predict_proba(frame["text"]) for split, frame in frames.items()}
    rule = tune(truth["val"], scores["val"], classes, task)
    thresholds = rule.vector(classes)
    metrics = {}
    for split in ("test", "val"):
        decided = decide(scores[split], thresholds, rule.at_least_one)
        metrics[split] = multi_label_split_metrics(
            truth[split], scores[split], decided, classes, thresholds, long[split]
        )
    return metrics


if __name__ == "__main__":
    main()
