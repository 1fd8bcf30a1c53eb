"""Which library modules a script's outputs depend on, found by reading its imports.

`dvc.yaml` lists, for every stage, the `src/bertclf/` modules its script imports, directly or
through other modules, so that changing one re-runs exactly the stages it affects; a test
checks the list against this walk, and training checkpoints hash the same files. The walk is
static (the AST, imports inside functions included, since stages import TensorFlow-side
modules inside `main()`), and it does not follow the lazy `__getattr__` of `bertclf/__init__.py`,
which would make every stage depend on everything.
"""

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent
# Modules no stage lists: changing them must not re-run a stage, since they do not decide any
# output. __init__: the version string and environment defaults; config and choices: validating
# params and the words they accept (their values are DVC params); errors: messages; files:
# atomic writes and checksums; paths: where the stages read and write, which dvc.yaml names
# itself (a moved path changes dvc.yaml, and a test keeps the two equal).
NOT_DEPENDENCIES = frozenset({"__init__", "choices", "config", "errors", "files", "paths"})


def imported_modules(path: Path) -> set[str]:
    """The names of the `bertclf` modules that the file imports itself, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("bertclf."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("bertclf."):
                names.add(node.module.split(".")[1])
            elif node.module == "bertclf":  # `from bertclf import x`: x may be a module
                names.update(a.name for a in node.names if (LIBRARY / f"{a.name}.py").is_file())
    return names


def library_modules(script: str | Path) -> list[Path]:
    """The library modules (files) the script's outputs depend on: everything it imports from
    `bertclf`, transitively, less NOT_DEPENDENCIES. Sorted by name."""
    found: set[str] = set()
    to_visit = [Path(script)]
    while to_visit:
        for name in imported_modules(to_visit.pop()) - found - NOT_DEPENDENCIES:
            found.add(name)
            to_visit.append(LIBRARY / f"{name}.py")
    return [LIBRARY / f"{name}.py" for name in sorted(found)]
