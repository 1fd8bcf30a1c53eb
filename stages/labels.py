"""Fit the label map on the training split only and write it as JSON."""

import pandas as pd

from bertclf.errors import exits_cleanly
from bertclf.labels import LabelMap
from bertclf.paths import LABELS, prepared_split


@exits_cleanly
def main() -> None:
    label_map = LabelMap.fit(pd.read_parquet(prepared_split("train"), columns=["label"])["label"])
    label_map.save(LABELS)
    counts = dict(zip(label_map.classes, label_map.counts, strict=True))
    print(f"labels: {len(label_map.classes)} classes {counts}")


if __name__ == "__main__":
    main()
