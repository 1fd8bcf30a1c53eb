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
from bertclf.tasks import task_of
from bertclf.tokenization import read_token_cache


@exits_cleanly
def main() -> None:
    baseline = load_section("baseline")
    seed = load_section("seed")
    tokenize = load_section("tokenize")
    task_config = load_section("task")

    from bertclf.baseline import baseline_inputs, baseline_probabilities, fit_baseline
    from bertclf.metrics import metrics_of
    from bertclf.thresholds import fit_rule

    task = task_of(LabelMap.load(LABELS))
    classes = task.classes.tolist()
    train = pd.read_parquet(PREPARED / "train.parquet")
    pipeline = fit_baseline(
        baseline_inputs(train), task.targets(train), baseline.C, seed, task.name
    )
    truth, scores, long = {}, {}, {}
    for split in ("test", "val"):
        frame = pd.read_parquet(PREPARED / f"{split}.parquet")
        truth[split] = task.targets(frame)
        scores[split] = baseline_probabilities(pipeline, baseline_inputs(frame), len(classes))
        # split by the encoder's window, like the model's metrics, to compare on long texts
        texts = read_token_cache(TOKENIZED / f"{split}.parquet").texts()
        lengths = pd.Series(texts.text_lengths, index=texts.ids).loc[frame["id"]]
        long[split] = lengths.to_numpy() > tokenize.max_length
    # decided as the model is (a multi-label baseline's thresholds chosen on validation)
    rule = fit_rule(task.name, classes, task_config, lambda: (truth["val"], scores["val"]))
    scoring, metrics = metrics_of(task.name), {}
    for split in ("test", "val"):
        decided = rule.decide(scores[split], classes)
        metrics[split] = scoring.split(
            truth[split], scores[split], decided, classes, long[split], rule.vector(classes)
        )
    write_json(BASELINE, metrics)
    test = metrics["test"]
    print(f"baseline: test {scoring.summary(test)}")


if __name__ == "__main__":
    main()
