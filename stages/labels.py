"""Fit the label map on the training split only and write it as JSON."""

import pandas as pd

from bertclf.errors import exits_cleanly
from bertclf.labels import LabelMap
from bertclf.paths import LABELS, prepared_split


@exits_cleanly
def main() -> None:
    train = pd.read_parquet(prepared_split("train"))
    if "labels" in train.columns:  # a multi-label run's splits
        label_map = LabelMap.fit_sets(train["labels"])
    else:
        label_map = LabelMap.fit(train["label"])
    label_map.save(LABELS)
    counts = dict(zip(label_map.classes, label_map.counts, strict=True))
    kind = "labels (multi-label)" if label_map.multi_label else "classes"
    print(f"labels: {len(label_map.classes)} {kind} {counts}")


if __name__ == "__main__":
    main()
