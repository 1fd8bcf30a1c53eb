"""Encoder families beyond BERT (DistilBERT): the family read from config.json's `model_type`,
its checkpoint read by KerasHub's converter with the weight names prefixed or bare, its head
rules, and one tiny build of the whole DAG on a DistilBERT checkpoint written here (the hub is
out of reach; docs/encoders.md has the check of the wiring against transformers)."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import (
    TINY,
    build_repo,
    check_explained_mistakes,
    command_env,
    copy_project,
    free_port,
    read_json,
    request,
    run,
    start_server,
    stop_server,
    write_tiny_checkpoint,
)

from bertclf.config import HeadConfig, ModelConfig
from bertclf.errors import BertclfError

IDS = np.array([[101, 7592, 2088, 1010, 2129, 2024, 102, 0], [101, 2023, 2003, 102, 0, 0, 0, 0]])
MASK = (IDS != 0).astype("int32")


def sequence_output(backbone) -> np.ndarray:
    return np.asarray(backbone({"token_ids": IDS.astype("int32"), "padding_mask": MASK}))


def test_prefixed_and_bare_distilbert_checkpoints_load_the_same_weights(tmp_path):
    """A `DistilBertForMaskedLM` save names its weights `distilbert.…`, a `DistilBertModel` or
    sentence-transformers save without the prefix; both load, into the same encoder."""
    from safetensors.numpy import load_file

    from bertclf.model import load_backbone

    prefixed = write_tiny_checkpoint(tmp_path / "prefixed", "distilbert", prefixed=True)
    bare = write_tiny_checkpoint(tmp_path / "bare", "distilbert", prefixed=False)
    assert all(k.startswith("distilbert.") for k in load_file(prefixed / "model.safetensors"))
    assert not any(k.startswith("distilbert.") for k in load_file(bare / "model.safetensors"))
    one, other = load_backbone(prefixed), load_backbone(bare)
    assert type(one).__name__ == "DistilBertBackbone"
    np.testing.assert_array_equal(sequence_output(one), sequence_output(other))
    written = load_file(bare / "model.safetensors")
    for layer in ("token_embedding", "position_embedding"):
        name = "word_embeddings" if layer == "token_embedding" else "position_embeddings"
        variable = getattr(one.get_layer("token_and_position_embedding"), layer).weights[0]
        np.testing.assert_array_equal(np.asarray(variable), written[f"embeddings.{name}.weight"])
    norm = one.transformer_layers[1]._feedforward_layer_norm.gamma
    np.testing.assert_array_equal(
        np.asarray(norm), written["transformer.layer.1.output_layer_norm.weight"]
    )


def test_an_unsupported_family_and_a_pooler_without_one_are_one_line(tmp_path):
    from bertclf.model import build_classifier, family_of, resolve_pretrained

    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", "distilbert", prefixed=True)
    config = json.loads((checkpoint / "config.json").read_text())
    head = HeadConfig(pooling="pooler", hidden_sizes=[], dropout=0.1)
    with pytest.raises(BertclfError) as refused:
        build_classifier(config, head, 2)
    assert str(refused.value) == (
        "head.pooling=pooler: a distilbert encoder has no pooler; use cls or mean"
    )
    with pytest.raises(BertclfError) as refused:
        family_of(config).check_window(config, 600)
    assert str(refused.value) == (
        "tokenize.max_length=600: a distilbert encoder of max_position_embeddings 512 takes at "
        "most 512 tokens"
    )
    (checkpoint / "config.json").write_text(json.dumps({**config, "model_type": "deberta-v2"}))
    with pytest.raises(BertclfError) as refused:
        resolve_pretrained(ModelConfig("x", str(checkpoint), None), tmp_path / "out", 0)
    assert not (tmp_path / "out").exists()  # refused before anything was copied
    assert str(refused.value) == (
        f"{checkpoint / 'config.json'}: model_type 'deberta-v2' is not supported; supported: "
        "bert, distilbert"
    )


@pytest.mark.parametrize("pair", [False, True])
def test_a_distilbert_pair_model_reads_its_pair_from_the_ids_alone(pair):
    """DistilBERT has no segment embeddings: a pair model gets no segment layer, and the
    attributions' embeddings-to-logits path is the model's."""
    import keras

    from bertclf.model import build_classifier, logits_from_token_embeddings

    config = {"model_type": "distilbert", "vocab_size": 120, "dim": 8, "n_layers": 2,
              "n_heads": 2, "hidden_dim": 16, "max_position_embeddings": 64}  # fmt: skip
    config["dropout"] = 0.1
    keras.utils.set_random_seed(0)
    head = HeadConfig(pooling="mean", hidden_sizes=[4], dropout=0.1)
    model = build_classifier(config, head, 3, pair_separator_id=102 if pair else None)
    assert not any(layer.name == "pair_segments" for layer in model.layers)
    ids = np.random.default_rng(0).integers(1, 100, size=(3, 10)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    expected = model({"input_ids": ids, "attention_mask": mask}, training=False)
    embeddings = model.get_layer("encoder").token_embedding(ids)
    got = logits_from_token_embeddings(model, "mean", embeddings, ids, mask)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


@pytest.mark.e2e
def test_the_dag_builds_packages_and_serves_a_distilbert_checkpoint(tmp_path):
    """The whole DAG on a tiny DistilBERT checkpoint (prefixed names, as the hub's
    `distilbert-base-uncased`): train, evaluate, report, package (its SavedModel tokenizes in
    the graph, checked against the training path on the test split), predict and serve."""
    from bertclf import Classifier

    checkpoint = write_tiny_checkpoint(tmp_path / "checkpoint", "distilbert", prefixed=True)
    repo = copy_project(tmp_path / "project")
    overrides = [*TINY, f"model.pretrained={checkpoint}", "model.random_init=null"]
    build_repo(repo, [*overrides, "model.name=tiny_distilbert"], "tiny DistilBERT")
    spec = read_json(repo, "models/trained/model.json")
    assert spec["encoder"]["model_type"] == "distilbert"
    assert read_json(repo, "models/pretrained/source.json")["family"] == "distilbert"
    package = repo / "models/package"
    assert read_json(repo, "models/package/manifest.json")["format_version"] == 11
    checks = read_json(repo, "reports/package.json")  # the test split and the stress texts
    assert checks["token_ids_identical"] == 1.0 and checks["texts_with_other_ids"] == 0
    check_explained_mistakes(repo)
    assert "distilbert" in (package / "MODEL_CARD.md").read_text()

    classifier = Classifier.load(package)
    texts = ["Great coffee, would buy again.", "Stale and overpriced."]
    expected = classifier.predict_proba(texts)
    on_tensorflow = Classifier.load(package, runtime="tensorflow").predict_proba(texts)
    np.testing.assert_allclose(expected, on_tensorflow, atol=1e-5)
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.csv"
    run(["bertclf", "predict", "--model", str(package), "--input", str(tmp_path / "in.csv"),
         "--output", str(out)], repo)  # fmt: skip
    written = pd.read_csv(out)
    assert written["label"].tolist() == classifier.predict(texts).tolist()
    port = free_port()
    server = start_server(package, port, tmp_path / "serve.log", env=command_env())
    try:
        status, about = request(port, "GET", "/v1/metadata")
        assert status == 200 and about["encoder_family"] == "distilbert"
        status, answer = request(port, "POST", "/v1/predict", json.dumps({"texts": texts}).encode())
        assert status == 200
        got = [p["probabilities"] for p in answer["predictions"]]
        classes = classifier.classes_.tolist()
        np.testing.assert_allclose([[row[c] for c in classes] for row in got], expected, atol=1e-5)
    finally:
        stop_server(server)
