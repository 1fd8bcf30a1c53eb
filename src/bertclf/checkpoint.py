"""Training that survives a kill: the whole training state after an epoch (once
train.checkpoint_every_seconds have passed since the last save), kept outside the stage's DVC
outputs (DVC deletes those before it re-runs a stage) and removed on success.

A checkpoint lives in `.checkpoints/<stage>-<key>/epoch-NNNN/`, where the key hashes the stage's
params, its input files and the training code, so a changed run never resumes from a stale state.
It holds, all written together (a kill while saving leaves the previous epoch's checkpoint):

- `state.index`, `state.data-*`: model weights and optimizer state (Adam moments, step count,
  hence the learning-rate schedule), TensorFlow's checkpoint format;
- `best_weights.npz`: EarlyStopping's best weights so far (plain arrays, no pickle);
- `state.json`: the next epoch, whether EarlyStopping stopped, its counter and best value, and
  the sha256 of every other file, so that a damaged one (a disk error, a partial copy) is found
  before TensorFlow reads it;
- copies of directories the stage keeps appending to (DVCLive's logs).

The data order and dropout's random masks of epoch e are derived from (seed, e) alone (see
`training.EpochSeeds`), so nothing else is needed for a resumed run to repeat an uninterrupted one.
"""

import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np

from bertclf.dependencies import library_modules
from bertclf.errors import BertclfError
from bertclf.files import atomic_path, sha256_file

ROOT = Path(".checkpoints")
UNREADABLE = ROOT / "unreadable"  # states that could not be read, kept for a look


def _plain(value):
    return asdict(value) if is_dataclass(value) else value


def run_key(params: dict, inputs: list[str | Path]) -> str:
    """A hash of params, input files (directories walked) and the code: for an input that is
    a script, the library modules it imports (the ones `dvc.yaml` lists for its stage)."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=_plain).encode())
    scripts = [Path(p) for p in inputs if str(p).endswith(".py")]
    code = sorted({module for script in scripts for module in library_modules(script)})
    for root in map(Path, inputs):
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update(f"{path}\0{sha256_file(path) if path.exists() else '-'}\0".encode())
    for module in code:  # by name: the key stays where the project is copied (queued runs)
        digest.update(f"{module.name}\0{sha256_file(module)}\0".encode())
    return digest.hexdigest()[:16]


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != "state.json"
    }


def _check_digests(saved: Path, expected) -> None:
    if not isinstance(expected, dict) or not expected:
        raise ValueError("state.json lists no file digests")
    for name, digest in expected.items():
        path = saved / name
        if not path.is_file():
            raise ValueError(f"{name} is missing")
        if sha256_file(path) != digest:
            raise ValueError(f"{name} is damaged (its sha256 differs from the one saved)")


class Checkpoint:
    """The saved states of one run: `DIRECTORY/epoch-NNNN/`, one per epoch saved. A new epoch's
    state is written whole beside the previous one, which is removed only after it, so a valid
    state exists at every moment; one that cannot be read is set aside and not resumed from."""

    def __init__(self, directory: Path, snapshots: list[Path] | None = None):
        self.directory = Path(directory)
        self.snapshots = [Path(p) for p in snapshots or []]
        self.saved, self.state = self._latest_readable()

    def _latest_readable(self) -> tuple[Path | None, dict | None]:
        for saved in sorted(self.directory.glob("epoch-*"), reverse=True):
            try:
                state = json.loads((saved / "state.json").read_text(encoding="utf-8"))
                if not isinstance(state.get("next_epoch"), int) or "early_stopping" not in state:
                    raise ValueError("state.json lacks next_epoch or early_stopping")
                if not (saved / "state.index").is_file():
                    raise ValueError("state.index is missing")
                _check_digests(saved, state.get("files"))
            except (OSError, ValueError, AttributeError) as error:
                self._set_aside(saved, error)
                continue
            return saved, state
        return None, None

    def _set_aside(self, saved: Path, error: Exception) -> None:
        aside = UNREADABLE / f"{self.directory.name}-{saved.name}-{int(time.time())}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(saved, aside)
        reason = " ".join(str(error).split()) or type(error).__name__
        print(
            f"warning: {saved}: checkpoint cannot be read ({reason}); moved to {aside}, "
            "not resumed from",
            file=sys.stderr,
        )

    @classmethod
    def for_run(
        cls, stage: str, params: dict, inputs: list[str | Path], snapshots=None
    ) -> "Checkpoint":
        directory = ROOT / f"{stage}-{run_key(params, inputs)}"
        for stale in ROOT.glob(f"{stage}-*"):  # a changed run's state can never be resumed
            if stale != directory:
                shutil.rmtree(stale, ignore_errors=True)
        return cls(directory, snapshots)

    @property
    def next_epoch(self) -> int:
        return self.state["next_epoch"] if self.state else 0

    def restore_snapshots(self) -> None:
        """Put the saved copies of the snapshot directories back in the workspace."""
        if not self.state:
            return
        for i, path in enumerate(self.snapshots):
            saved = self.saved / f"snapshot_{i}"
            shutil.rmtree(path, ignore_errors=True)
            if saved.is_dir():
                shutil.copytree(saved, path)

    def save(self, next_epoch: int, model, early_stopping: dict) -> None:
        """`early_stopping` is EarlyStopping's state, its best weights under "best_weights"."""
        import tensorflow as tf

        saved = self.directory / f"epoch-{next_epoch:04d}"
        with atomic_path(saved, replace_directory=True) as tmp:
            tmp.mkdir()
            tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(str(tmp / "state"))
            best = early_stopping.pop("best_weights")
            if best is not None:
                np.savez(tmp / "best_weights.npz", *best)
            for i, path in enumerate(self.snapshots):
                if path.is_dir():
                    shutil.copytree(path, tmp / f"snapshot_{i}")
            state = {
                "next_epoch": next_epoch,
                "early_stopping": early_stopping,
                "files": _digests(tmp),
            }
            (tmp / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        for older in self.directory.glob("epoch-*"):  # only now: the new state is on disk
            if older.name < saved.name:
                shutil.rmtree(older, ignore_errors=True)
        self.saved, self.state = saved, state

    def load_into(self, model) -> tuple[dict, list[np.ndarray] | None]:
        """Restore weights and optimizer state into a compiled model. Returns EarlyStopping's
        saved state and its best weights. A state that passed its digests and still cannot
        be restored is set aside, and the run stops in one line: the next starts over."""
        import tensorflow as tf

        model.optimizer.build(model.trainable_variables)  # its slots exist before the read
        try:
            tf.train.Checkpoint(model=model, optimizer=model.optimizer).read(
                str(self.saved / "state")
            ).assert_existing_objects_matched()
            best_file = self.saved / "best_weights.npz"
            best = None
            if best_file.is_file():
                with np.load(best_file, allow_pickle=False) as arrays:
                    best = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        except Exception as error:  # TensorFlow's and numpy's errors alike
            saved = self.saved
            self._set_aside(saved, error)
            raise BertclfError(
                f"{saved}: the checkpoint could not be restored and was set aside; run the "
                "stage again to train from the start"
            ) from None
        return self.state["early_stopping"], best

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
