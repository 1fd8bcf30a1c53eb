"""Train TF-IDF plus logistic regression on the prepared splits; write metrics like the model's."""

import pandas as pd

from bertclf.baseline import baseline_probabilities, fit_baseline
from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import write_json
from bertclf.labels import LabelMap
from bertclf.metrics import split_metrics
from bertclf.paths import BASELINE, LABELS, PREPARED, TOKENIZED
from bertclf.tokenization import read_token_cache


@exits_cleanly
def main() -> None:
    baseline = load_section("baseline")
    seed = load_section("seed")
    tokenize = load_section("tokenize")

    label_map = LabelMap.load(LABELS)
    pipeline = fit_baseline(
        pd.read_parquet(PREPARED / "train.parquet"), label_map, baseline.C, seed
    )
    metrics = {}
    for split in ("test", "val"):
        frame = pd.read_parquet(PREPARED / f"{split}.parquet")
        probabilities = baseline_probabilities(pipeline, frame["text"], len(label_map.classes))
        y_true, classes = label_map.encode(frame["label"]), list(label_map.classes)
        # split by the encoder's window, like the model's metrics, to compare on long texts
        texts = read_token_cache(TOKENIZED / f"{split}.parquet").texts()
        long = pd.Series(texts.text_lengths, index=texts.ids).loc[frame["id"]].to_numpy()
        long = long > tokenize.max_length
        metrics[split] = split_metrics(y_true, probabilities, classes, long)
    write_json(BASELINE, metrics)
    print(
        f"baseline: test accuracy {metrics['test']['accuracy']:.4f}, "
        f"macro F1 {metrics['test']['macro_f1']:.4f}"
    )


if __name__ == "__main__":
    main()
