"""The one place that knows the label order: a JSON label map, fitted on train only.

It replaces the seed project's pickled OneHotEncoder.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from bertclf.errors import BertclfError
from bertclf.files import read_json, write_json


@dataclass(frozen=True)
class LabelMap:
    classes: tuple[str, ...]
    counts: tuple[int, ...]

    @classmethod
    def fit(cls, labels: Iterable[str]) -> "LabelMap":
        counts = Counter(labels)  # (not NumPy's str arrays: they drop trailing NUL characters)
        if len(counts) < 2:
            raise BertclfError("the training labels hold fewer than two classes")
        classes = tuple(sorted(counts))
        return cls(classes, tuple(counts[c] for c in classes))

    def encode(self, labels: Iterable[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.classes)}
        ids = []
        for row, label in enumerate(labels):
            if label not in index:
                raise BertclfError(
                    f"row {row + 1}: label {label!r} is not one the model knows "
                    f"({', '.join(self.classes)})"
                )
            ids.append(index[label])
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        return [self.classes[int(i)] for i in ids]

    def class_weights(self) -> dict[int, float]:
        """Balanced weights (n_samples / (n_classes * count)), as scikit-learn computes them."""
        y = np.repeat(np.arange(len(self.classes)), self.counts)
        weights = compute_class_weight("balanced", classes=np.arange(len(self.classes)), y=y)
        return {i: float(w) for i, w in enumerate(weights)}

    def to_json(self) -> dict:
        return {
            "classes": list(self.classes),
            "counts": dict(zip(self.classes, self.counts, strict=True)),
            "class_weights": {self.classes[i]: w for i, w in self.class_weights().items()},
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "LabelMap":
        try:
            data = read_json(path)
            classes = tuple(data["classes"])
            counts = tuple(int(data["counts"][c]) for c in classes)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BertclfError(f"{path}: not a valid label map ({error})") from None
        return cls(classes, counts)
