"""User-facing errors: one line that says what is wrong, and a non-zero exit.

Set BERTCLF_DEBUG=1 to get Python's traceback instead.
"""

import functools
import os
import sys
from collections.abc import Callable

DEBUG_VARIABLE = "BERTCLF_DEBUG"


class BertclfError(Exception):
    """Bad input or configuration. The message names the file, row or key."""


def exits_cleanly(main: Callable[[], None]) -> Callable[[], None]:
    """Wrap an entry point. A BertclfError prints one line to stderr and exits with 2; any
    other exception (a bug, a full disk) prints one line naming its type and exits with 1;
    Ctrl-C exits with 130. BERTCLF_DEBUG=1 lets the traceback through."""

    @functools.wraps(main)
    def wrapper() -> None:
        debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
        try:
            main()
        except BertclfError as error:
            if debug:
                raise
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            if debug:
                raise
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
        except Exception as error:
            if debug:
                raise
            message = " ".join(str(error).split()) or "no message"
            print(
                f"error: {type(error).__name__}: {message} "
                f"(set {DEBUG_VARIABLE}=1 for the traceback)",
                file=sys.stderr,
            )
            sys.exit(1)

    return wrapper
