from pathlib import Path

import pytest
from helpers import ROOT

from bertclf.config import compose_params, load_section
from bertclf.errors import BertclfError


def test_committed_params_equal_composition_of_conf(tmp_path):
    composed = tmp_path / "params.yaml"
    compose_params(composed, [], ROOT / "conf")
    assert (ROOT / "params.yaml").read_text() == composed.read_text(), (
        "params.yaml is stale: run `make params` (change defaults in conf/, not params.yaml)"
    )


@pytest.mark.parametrize("group", ["data", "model", "head", "train", "cv"])
def test_every_option_of_a_group_defines_the_same_keys(group):
    options = sorted((ROOT / "conf" / group).glob("*.yaml"))
    import yaml

    keys = {path.name: set(yaml.safe_load(path.read_text())) for path in options}
    assert len(set(map(frozenset, keys.values()))) == 1, keys


def test_every_option_validates(tmp_path):
    for group in ("data", "model", "head", "train", "cv"):
        for option in sorted((ROOT / "conf" / group).glob("*.yaml")):
            out = tmp_path / f"{group}-{option.stem}.yaml"
            overrides = [f"{group}={option.stem}"]
            if option.stem in ("news_sample", "table"):
                overrides.append("data.path=data/raw/news.xlsx")
            compose_params(out, overrides, ROOT / "conf")
            assert load_section(group, out) is not None


def test_bad_value_names_the_key(tmp_path):
    out = tmp_path / "params.yaml"
    compose_params(out, ["train.epochs=zero"], ROOT / "conf")
    with pytest.raises(BertclfError, match=r"train\.epochs"):
        load_section("train", out)


def test_out_of_range_value_names_the_key(tmp_path):
    out = tmp_path / "params.yaml"
    compose_params(out, ["data.val_fraction=1.5"], ROOT / "conf")
    with pytest.raises(BertclfError, match=r"data\.val_fraction"):
        load_section("data", out)


def test_missing_mandatory_value_says_how_to_set_it(tmp_path):
    out = tmp_path / "params.yaml"
    compose_params(out, ["data=news_sample"], ROOT / "conf")
    with pytest.raises(BertclfError, match=r"data\.path is required; set it with -S data\.path="):
        load_section("data", out)


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(BertclfError, match="params.yaml: not found"):
        load_section("data", Path(tmp_path) / "params.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("cv=kfold7", r"Could not find 'cv/kfold7' Available options in 'cv': kfold10 kfold3"),
        ("train.epochz=3", r"Could not override 'train.epochz'"),
    ],
)
def test_bad_override_is_one_line_and_writes_nothing(tmp_path, override, message):
    out = tmp_path / "params.yaml"
    with pytest.raises(BertclfError, match=message) as caught:
        compose_params(out, [override], ROOT / "conf")
    assert "\n" not in str(caught.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []
