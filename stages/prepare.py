"""Read and validate the raw table(s), clean the texts, drop duplicates, write stratified splits."""

import sys
from dataclasses import asdict

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, write_json
from bertclf.paths import PREPARE_REPORT, PREPARED, SPLITS
from bertclf.prepare import prepare_splits, write_split


@exits_cleanly
def main() -> None:
    data = load_section("data")
    seed = load_section("seed")
    task = load_section("task")

    splits, report = prepare_splits(data, seed, task)

    with atomic_path(PREPARED, replace_directory=True) as tmp:
        tmp.mkdir()
        for name in SPLITS:
            write_split(splits[name], tmp / f"{name}.parquet")
    write_json(PREPARE_REPORT, {k: v for k, v in asdict(report).items() if v is not None})
    for line in report.rows_read_lines():
        print(f"prepare: {line}")
    for warning in report.small_splits:
        print(f"warning: prepare: {warning}", file=sys.stderr)
    print(
        f"prepare: {report.split_sizes} (dropped {report.empty_texts_dropped} empty, "
        f"{report.duplicates_dropped} duplicate, {report.conflicting_labels_dropped} "
        f"conflicting, {report.train_texts_in_test_dropped} also in test)"
    )


if __name__ == "__main__":
    main()
