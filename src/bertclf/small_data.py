"""How many texts a figure needs to mean much, and the words that say when it has fewer: one
text of 30 is 3.3 points of accuracy. prepare, calibrate and package say so in their lines.
Its own module, importing nothing, so that these stages do not depend on the metrics."""

FEW_TEST_TEXTS = 30
FEW_FIT_TEXTS = 100  # a temperature, or the package's check against training


def few_texts(n: int, needed: int = FEW_FIT_TEXTS) -> str:
    """ " (only 6 texts: fewer than the 100 this needs to mean much)", or "" when enough."""
    return (
        f" (only {n} texts: fewer than the {needed} this needs to mean much)" if n < needed else ""
    )
