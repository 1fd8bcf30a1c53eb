"""Train TF-IDF plus logistic regression on the prepared splits; write metrics like the model's."""

from pathlib import Path

import pandas as pd

from bertclf.baseline import baseline_probabilities, fit_baseline
from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import write_json
from bertclf.labels import LabelMap
from bertclf.metrics import classification_metrics

PREPARED = Path("data/prepared")
LABELS = "models/labels.json"
OUT = "reports/baseline.json"


@exits_cleanly
def main() -> None:
    baseline = load_section("baseline")
    seed = load_section("seed")

    label_map = LabelMap.load(LABELS)
    pipeline = fit_baseline(
        pd.read_parquet(PREPARED / "train.parquet"), label_map, baseline.C, seed
    )
    metrics = {}
    for split in ("test", "val"):
        frame = pd.read_parquet(PREPARED / f"{split}.parquet")
        probabilities = baseline_probabilities(pipeline, frame["text"], len(label_map.classes))
        metrics[split] = classification_metrics(
            label_map.encode(frame["label"]), probabilities, list(label_map.classes)
        )
    write_json(OUT, metrics)
    print(
        f"baseline: test accuracy {metrics['test']['accuracy']:.4f}, "
        f"macro F1 {metrics['test']['macro_f1']:.4f}"
    )


if __name__ == "__main__":
    main()
