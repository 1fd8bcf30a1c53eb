"""The library's import structure: no module imports, through any chain, the module that
imports it (imports inside functions counted, as the DAG's dependency walk counts them), and
the modules that need no TensorFlow do not load it."""

import re
import subprocess
import sys

from helpers import ROOT

from bertclf.dependencies import LIBRARY, imported_modules


def import_cycles(library) -> list[list[str]]:
    """Every strongly connected group of two or more modules (a cycle), or a module that
    imports itself, in the import graph of `library`'s modules (Tarjan's algorithm)."""
    graph = {path.stem: imported_modules(path) for path in sorted(library.glob("*.py"))}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in graph:
                continue
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_the_library_has_no_import_cycle():
    assert import_cycles(LIBRARY) == []


def test_the_cycle_check_finds_a_circle_that_runs_through_imports_inside_functions(tmp_path):
    (tmp_path / "schema.py").write_text(
        "def check():\n    from bertclf.runtime import NAMES\n    return NAMES\n"
    )
    (tmp_path / "runtime.py").write_text("from bertclf.batching import pad\nNAMES = ()\n")
    (tmp_path / "batching.py").write_text("import bertclf.schema\n\ndef pad():\n    pass\n")
    (tmp_path / "apart.py").write_text("from bertclf.schema import check\n")
    assert import_cycles(tmp_path) == [["batching", "runtime", "schema"]]


def test_modules_without_tensorflow_do_not_import_it():
    """What a user's data is checked with, and the CLI's argument parsing, run before (and
    without) TensorFlow: an error in a table must not wait for TensorFlow to load."""
    code = (
        "import sys\n"
        "import bertclf.tables, bertclf.prepare, bertclf.labels, bertclf.metrics\n"
        "import bertclf.config, bertclf.cleaning, bertclf.tokenization, bertclf.cli\n"
        "import bertclf.package_reader\n"
        "args = ['predict', '--model', 'm', '--input', 'a.csv', '--output', 'b.csv']\n"
        "bertclf.cli.parser().parse_args(args)\n"
        "loaded = sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""


def module_map() -> list[set[str]]:
    """The layers of docs/development.md's module map, top first: the modules each row names."""
    text = (ROOT / "docs/development.md").read_text(encoding="utf-8")
    table = text.split("# The module map")[1].split("Where a change goes")[0]
    rows = [line.split("|")[2] for line in table.splitlines() if line.startswith("| ")][1:]
    return [set(re.findall(r"`(\w+)`", row)) for row in rows]


def test_every_module_imports_only_from_its_layer_or_those_above_it():
    """The module map in docs/development.md is the layout: every module is in it once, and
    none reaches down a layer (imports inside functions count, as DVC's dependency walk
    counts them)."""
    layers = module_map()
    layer = {name: i for i, names in enumerate(layers) for name in names}
    modules = {path.stem for path in LIBRARY.glob("*.py")} - {"__init__"}
    assert sum(len(names) for names in layers) == len(layer), "a module named twice"
    assert set(layer) == modules, set(layer) ^ modules
    downward = [
        f"{path.stem} -> {name}"
        for path in sorted(LIBRARY.glob("*.py"))
        if path.stem != "__init__"
        for name in imported_modules(path)
        if layer[name] > layer[path.stem]
    ]
    assert not downward, downward
