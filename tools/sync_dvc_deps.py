"""Rewrite the `src/bertclf/` deps of every stage in dvc.yaml from what its script imports
(`bertclf.dependencies.library_modules`); tests/test_dependencies.py fails until they agree.

    PYTHONPATH=src python tools/sync_dvc_deps.py
"""

import re
from pathlib import Path

from bertclf.dependencies import library_modules

DVC_YAML = Path(__file__).resolve().parents[1] / "dvc.yaml"


def main() -> None:
    lines, out = DVC_YAML.read_text().splitlines(keepends=True), []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        script = re.match(r"^(\s+)- (stages/\S+\.py)\s*$", lines[i])
        i += 1
        if script:
            while i < len(lines) and re.match(r"^\s+- src/bertclf/", lines[i]):
                i += 1  # the old list
            indent, path = script.groups()
            out += [
                f"{indent}- src/bertclf/{m.name}\n" for m in library_modules(DVC_YAML.parent / path)
            ]
    DVC_YAML.write_text("".join(out))


if __name__ == "__main__":
    main()
