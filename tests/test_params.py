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


@pytest.mark.parametrize("group", ["data", "model", "head", "train", "cv", "label_issues"])
def test_every_option_of_a_group_defines_the_same_keys(group):
    options = sorted((ROOT / "conf" / group).glob("*.yaml"))
    import yaml

    keys = {path.name: set(yaml.safe_load(path.read_text())) for path in options}
    assert len(set(map(frozenset, keys.values()))) == 1, keys


def test_every_option_validates(tmp_path):
    for group in ("data", "model", "head", "train", "cv", "label_issues"):
        for option in sorted((ROOT / "conf" / group).glob("*.yaml")):
            out = tmp_path / f"{group}-{option.stem}.yaml"
            overrides = [f"{group}={option.stem}"]
            if option.stem in ("news_sample", "table"):
                overrides.append("data.path=data/raw/news.xlsx")
            compose_params(out, overrides, ROOT / "conf")
            assert load_section(group, out) is not None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=zero", r"train\.epochs: Value 'zero' of type 'str' could not be converted"),
        ("train.epochs=0", r"train\.epochs must be at least 1$"),
        ("data.val_fraction=1.5", r"data\.val_fraction must be between 0 and 1"),
        ("train.learning_rate=inf", r"train\.learning_rate must be a finite number, not inf"),
        ("baseline.C=nan", r"baseline\.C must be"),
        ("seed=-1", r"seed must be a whole number from 0 to 4294967295, not -1"),
        ("seed=abc", r"seed must be a whole number from 0 to 4294967295, not 'abc'"),
        ("package.precisions=[fp64]", r"package\.precisions lists 'fp64'"),
        ("+train.epochz=3", r"train\.epochz: Key 'epochz' not in 'TrainConfig' \(the keys of "),
        ("data=news_sample", r"data\.path is required; set it with -S data\.path="),
        ("label_issues.filter_by=guess", r"label_issues\.filter_by must be one of prune_by_"),
        ("label_issues.frac_noise=0", r"label_issues\.frac_noise must be in \(0, 1\]"),
    ],
)
def test_a_bad_value_fails_composition_in_one_line_naming_the_key(tmp_path, override, message):
    """Every section is checked when params are composed, whichever stage reads it: a bad
    package key must not wait for hours of training to be found."""
    out = tmp_path / "params.yaml"
    with pytest.raises(BertclfError, match=message) as caught:
        compose_params(out, [override], ROOT / "conf")
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_every_stage_checks_every_section(tmp_path):
    """`dvc exp run -S` composes params.yaml itself: the first stage to run (whatever it
    reads) refuses a bad value of any section, before any work."""
    import yaml

    out = tmp_path / "params.yaml"
    compose_params(out, [], ROOT / "conf")
    params = yaml.safe_load(out.read_text())
    params["package"]["precisions"] = ["f32", "fp64"]
    out.write_text(yaml.safe_dump(params))
    with pytest.raises(BertclfError, match=r"package\.precisions lists 'fp64'"):
        load_section("model", out)
    params["package"]["precisions"] = ["f32"]
    params["train"]["learning_rate"] = float("inf")
    out.write_text(yaml.safe_dump(params))
    with pytest.raises(BertclfError, match=r"train\.learning_rate must be a finite number"):
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
