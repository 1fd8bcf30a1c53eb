"""Fit the label map on the training split only and write it as JSON, with the task
params.yaml names (task.type): from here on, labels.json alone says which task a run is."""

import pandas as pd

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.paths import LABELS, prepared_split
from bertclf.tasks import TASKS


@exits_cleanly
def main() -> None:
    task_type = load_section("task").type
    train = pd.read_parquet(prepared_split("train"))
    label_map = TASKS[task_type].fit(train).label_map
    label_map.save(LABELS)
    counts = dict(zip(label_map.classes, label_map.counts, strict=True))
    kind = "labels (multi-label)" if label_map.multi_label else "classes"
    print(f"labels: {len(label_map.classes)} {kind} {counts}")


if __name__ == "__main__":
    main()
