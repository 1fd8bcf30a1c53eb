"""Train on the training split without fold K; score the held-out fold K.

Early stopping watches the validation split, as in `train`; fold K is seen only when scored.
"""

import argparse

from bertclf.config import load_section
from bertclf.errors import BertclfError, exits_cleanly
from bertclf.files import atomic_path, write_json
from bertclf.paths import FOLDS, LABELS, PRETRAINED, TOKENIZED, fold_metrics, held_out_predictions


@exits_cleanly
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("fold", type=int)
    fold = parser.parse_args().fold
    train = load_section("train")
    head = load_section("head")
    learner = load_section("learner")
    tokenize = load_section("tokenize")
    seed = load_section("seed")
    task_config = load_section("task")
    if train.distribution == "multi_worker":
        raise BertclfError(
            "train_fold: train.distribution=multi_worker is for the train stage; "
            "spread folds over machines as separate experiments (dvc exp run --queue)"
        )

    import pandas as pd  # noqa: I001  (TensorFlow loads below, after the params are validated)

    from bertclf.checkpoint import Checkpoint
    from bertclf.label_issues import fold_predictions
    from bertclf.labels import LabelMap
    from bertclf.tasks import task_of
    from bertclf.metrics import metrics_of
    from bertclf.thresholds import fit_rule
    from bertclf.tokenization import read_token_cache
    from bertclf.prediction import predict_texts
    from bertclf.preprocessor import Preprocessor
    from bertclf.learners import learn

    label_map = LabelMap.load(LABELS)
    cache = read_token_cache(TOKENIZED / "train.parquet")
    folds = pd.read_parquet(FOLDS).set_index("id")["fold"]
    held_out = folds.reindex(cache.ids).to_numpy() == fold
    params = {
        "train": train,
        "head": head,
        "learner": learner,
        "tokenize": tokenize,
        "seed": seed,
        "fold": fold,
    }
    params["monitor"] = task_config.early_stopping_monitor
    checkpoint = Checkpoint.for_run(
        f"train_fold_{fold}", params, [PRETRAINED, LABELS, TOKENIZED, FOLDS, __file__]
    )
    val = read_token_cache(TOKENIZED / "val.parquet")
    model = learn(  # the method the whole training split chooses (labels.json's counts)
        PRETRAINED,
        label_map,
        cache.subset(~held_out),
        val,
        train,
        head,
        tokenize,
        learner,
        seed,
        checkpoint=checkpoint,
        monitor=task_config.early_stopping_monitor,
    ).model
    task = task_of(label_map)
    classes = list(label_map.classes)
    answers = Preprocessor(None, tokenize, task=task.name)
    texts, probabilities = predict_texts(model, cache.subset(held_out), train.batch_size, answers)

    def validation():
        val_texts, val_probabilities = predict_texts(model, val, train.batch_size, answers)
        return val_texts.labels, val_probabilities

    # the decision rule chosen on validation, as the calibrate stage chooses it
    rule = fit_rule(task.name, classes, task_config, validation)
    answers = answers.with_rule(rule, classes)
    long = texts.text_lengths > tokenize.max_length
    decided = answers.decide(probabilities)
    metrics = metrics_of(task.name).split(
        texts.labels, probabilities, decided, classes, long, answers.thresholds
    )
    write_json(fold_metrics(fold), metrics)
    held_out_rows = fold_predictions(texts.ids, probabilities, task.labels(decided), fold)
    with atomic_path(held_out_predictions(fold)) as tmp:
        held_out_rows.to_parquet(tmp, index=False)
    checkpoint.remove()
    key = task.headline_metric
    print(f"train_fold {fold}: {key} {metrics[key]:.4f} on {metrics['n']} held-out texts")


if __name__ == "__main__":
    main()
