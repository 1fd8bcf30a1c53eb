"""Atomic, durable writes and checksums: an output exists whole or not at all."""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertclf.errors import BertclfError


@contextlib.contextmanager
def atomic_path(path: str | Path, replace_directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    Works for files and directories alike. What was written is flushed to disk before the
    rename and the rename after it, so an output that appears is whole after a power loss too.
    An existing file is replaced. An existing directory is replaced only with
    `replace_directory`, for a stage's own outputs (DVC owns those); a path a user names is
    never a directory this removes.
    """
    path = Path(path)
    if path.is_dir() and not replace_directory:
        raise BertclfError(f"{path}: is a directory; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temporaries(path)
    prefix = f".{path.name}.{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        fsync_tree(target)
        if path.is_dir() and not path.is_symlink():
            os.replace(path, tmp / "replaced")  # out of the way; removed with the scratch
        os.replace(target, path)
        fsync_directory(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_abandoned_temporaries(path: Path) -> None:
    """Remove the scratch directories of earlier writes of `path` whose process is gone (a
    killed write). A live writer's scratch stays. Names are matched literally:
    `.NAME.PID.RANDOM.tmp`, where RANDOM (from mkdtemp) holds no dot."""
    prefix, suffix = f".{path.name}.", ".tmp"
    for entry in path.parent.iterdir():
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        pid, dot, rest = name[len(prefix) : -len(suffix)].partition(".")
        if pid.isdigit() and dot and rest and "." not in rest and not process_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def fsync_tree(path: Path) -> None:
    """Flush a file, or every file and directory below a directory, to disk."""
    if path.is_dir() and not path.is_symlink():
        for root, _, files in os.walk(path):
            for name in files:
                _fsync_file(Path(root) / name)
            fsync_directory(Path(root))
    elif path.is_file() and not path.is_symlink():
        _fsync_file(path)
    fsync_directory(path.parent)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries (a rename in it) to disk, where the system allows it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(descriptor)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (through links, case-insensitive file systems...)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
