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
    task = TASKS[task_type].fit(train)
    task.label_map.save(LABELS)
    print(f"labels: {task.describe()}")


if __name__ == "__main__":
    main()
