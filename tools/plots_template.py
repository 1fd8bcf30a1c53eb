"""Write the HTML template `dvc plots show` uses here (.dvc/config: plots.html_template), with
Vega, Vega-Lite and vega-embed inline, so that the page draws with no network: DVC's own page
loads them from a CDN, and offline every chart is blank.

The three come from the npm registry at the versions DVC's page asks for, each checked against
its pinned sha512 before anything is read from it. `make install` runs this; the template is
generated, not committed (it holds other projects' code).

    python tools/plots_template.py .dvc/plots/offline.html
"""

import base64
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# name: (version, the tarball's sha512 as npm's `dist.integrity` gives it, the built script)
PINS = {
    "vega": (
        "5.20.2",
        "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
        "package/build/vega.min.js",
    ),
    "vega-lite": (
        "5.2.0",
        "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
        "package/build/vega-lite.min.js",
    ),
    "vega-embed": (
        "6.18.2",
        "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
        "package/build/vega-embed.min.js",
    ),
}

# DVC fills {plot_divs} with the charts (and {refresh_tag} for --open's refresh); the scripts
# are ours, so its {scripts} placeholder (the CDN's) is left out.
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>bertclf plots</title>
<!-- Vega, Vega-Lite and vega-embed inline (tools/plots_template.py): no network needed -->
SCRIPTS
<style>table { border-spacing: 15px; }</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(folder: Path) -> dict[str, Path]:
    """`npm pack` each pinned package into `folder`; refuse any whose hash is not the pin."""
    specs = [f"{name}@{version}" for name, (version, _, _) in PINS.items()]
    subprocess.run(
        ["npm", "pack", "--silent", "--pack-destination", str(folder), *specs],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tarballs = {}
    for name, (version, expected, _) in PINS.items():
        tarballs[name] = check(folder / f"{name}-{version}.tgz", expected)
    return tarballs


def check(tarball: Path, expected: str) -> Path:
    if integrity(tarball) != expected:
        sys.exit(f"error: {tarball.name}: sha512 is not the pinned one; not used")
    return tarball


def page(tarballs: dict[str, Path]) -> str:
    scripts = []
    for name, tarball in tarballs.items():
        member = PINS[name][2]
        with tarfile.open(tarball) as archive:
            code = archive.extractfile(member).read().decode("utf-8")
        if "</script" in code.lower():  # it would end the inline script early
            sys.exit(f"error: {tarball.name}: {member} cannot be inlined")
        scripts.append(f"<script>/* {name} {PINS[name][0]} */\n{code}\n</script>")
    return PAGE.replace("SCRIPTS", "\n".join(scripts))


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTPUT.html")
    output = Path(sys.argv[1])
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        html = page(fetch(Path(folder)))
    scratch = output.with_suffix(".html.tmp")
    scratch.write_text(html, encoding="utf-8")
    scratch.replace(output)
    print(f"wrote {output} (Vega, Vega-Lite and vega-embed inline, {len(html) // 1024:,} KB)")


if __name__ == "__main__":
    main()
