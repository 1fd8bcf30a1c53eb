import numpy as np
import pytest

from bertclf.errors import BertclfError
from bertclf.labels import LabelMap


def test_fit_orders_classes_and_round_trips(tmp_path):
    label_map = LabelMap.fit(["sport", "arts", "sport", "tech"])
    assert label_map.classes == ("arts", "sport", "tech")
    assert label_map.counts == (1, 2, 1)
    label_map.save(tmp_path / "labels.json")
    loaded = LabelMap.load(tmp_path / "labels.json")
    assert loaded == label_map
    ids = loaded.encode(["tech", "arts"])
    assert ids.tolist() == [2, 0]
    assert loaded.decode(ids) == ["tech", "arts"]


def test_unknown_label_is_refused_with_its_row():
    label_map = LabelMap.fit(["a", "b"])
    with pytest.raises(BertclfError, match=r"row 3: label 'c' is not one the model knows \(a, b\)"):
        label_map.encode(["a", "b", "c"])


def test_class_weights_are_balanced():
    weights = LabelMap.fit(["a"] * 3 + ["b"]).class_weights()
    # n / (k * count): 4 / (2 * 3) and 4 / (2 * 1)
    assert np.allclose([weights[0], weights[1]], [4 / 6, 2.0])


def test_saved_map_is_json_not_pickle(tmp_path):
    LabelMap.fit(["a", "b"]).save(tmp_path / "labels.json")
    assert (tmp_path / "labels.json").read_text().lstrip().startswith("{")
