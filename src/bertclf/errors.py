"""User-facing errors: one line that says what is wrong, and a non-zero exit."""

import functools
import sys
from collections.abc import Callable


class BertclfError(Exception):
    """Bad input or configuration. The message names the file, row or key."""


def exits_cleanly(main: Callable[[], None]) -> Callable[[], None]:
    """Wrap an entry point: a BertclfError prints one line to stderr and exits with 2."""

    @functools.wraps(main)
    def wrapper() -> None:
        try:
            main()
        except BertclfError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapper
