"""The packaged model: a self-contained, versioned bundle with a manifest of checksums.

Loading needs neither training code nor pickle: weights are HDF5, everything else JSON/text.
"""

import platform
import shutil
from pathlib import Path

from bertclf import __version__
from bertclf.errors import BertclfError
from bertclf.files import read_json, sha256_file, write_json

# 1: weights.h5 and model.json. 2: saved_model/ (raw text in, in-graph tokenization; and
# token ids in, which the Python API calls) and model.json.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ["tensorflow", "tensorflow-text", "tf-keras", "transformers", "tokenizers", "numpy"]
    return {
        "python": platform.python_version(),
        "bertclf": __version__,
        **{name: version(name) for name in names},
    }


def write_manifest(bundle: Path) -> None:
    files = sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != MANIFEST)
    write_json(
        bundle / MANIFEST,
        {
            "format_version": FORMAT_VERSION,
            "files": {p.relative_to(bundle).as_posix(): sha256_file(p) for p in files},
            "libraries": library_versions(),
        },
    )


def verify_bundle(bundle: Path) -> dict:
    """Refuse a bundle whose files were changed, added or removed, naming the file."""
    manifest_path = bundle / MANIFEST
    if not manifest_path.is_file():
        raise BertclfError(f"{bundle}: not a bertclf package (no {MANIFEST})")
    manifest = read_json(manifest_path)
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise BertclfError(
            f"{manifest_path}: format_version {manifest.get('format_version')!r} is not one this "
            f"bertclf ({__version__}) reads ({', '.join(map(str, READABLE_VERSIONS))})"
        )
    expected = manifest["files"]
    present = {
        p.relative_to(bundle).as_posix()
        for p in bundle.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    for name in sorted(present - set(expected)):
        raise BertclfError(f"{bundle / name}: file not in the manifest (added after packaging)")
    for name, digest in sorted(expected.items()):
        if name not in present:
            raise BertclfError(f"{bundle / name}: file listed in the manifest is missing")
        if sha256_file(bundle / name) != digest:
            raise BertclfError(f"{bundle / name}: checksum does not match the manifest (changed)")
    return manifest


def copy_files(sources: list[Path], bundle: Path) -> None:
    for source in sources:
        shutil.copy(source, bundle / source.name)
