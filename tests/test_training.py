"""Bucketed batches across epochs, and prediction order after length sorting."""

import numpy as np
import pytest
from helpers import section

from bertclf.batching import BucketedSequence
from bertclf.prediction import predict_logits

TOKENIZE = section("tokenize", max_length=64, bucket_multiple=16)


def sequences(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.arange(1, rng.integers(2, 65), dtype=np.int32) for _ in range(n)]


def epoch_order(data: BucketedSequence) -> list[int]:
    """One pass over the tf.data view that Keras trains on: one epoch."""
    order = []
    for inputs, labels in data.dataset().as_numpy_iterator():
        assert inputs["input_ids"].shape[1] <= TOKENIZE.max_length  # the cap
        assert inputs["input_ids"].shape[1] % 16 == 0  # a bucket boundary
        assert inputs["input_ids"].shape[0] <= 8
        order.extend(labels.tolist())
    return order


def test_every_example_once_per_epoch_and_reshuffled_from_the_seed():
    texts = sequences(100)
    labels = np.arange(100)  # labels carry the example index
    data = BucketedSequence(texts, labels, 8, TOKENIZE, seed=3)
    first = epoch_order(data)
    second = epoch_order(data)  # the next pass is the next epoch
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != second  # a new order each epoch

    again = BucketedSequence(texts, labels, 8, TOKENIZE, seed=3)
    assert epoch_order(again) == first  # the same seed repeats it
    assert epoch_order(again) == second
    again.start_at(1)  # a resumed run
    assert epoch_order(again) == second


def test_a_repeated_dataset_runs_the_epochs_in_order():
    """Training feeds Keras one repeated dataset (steps_per_epoch): pass k is epoch k."""
    texts, labels = sequences(100), np.arange(100)
    data = BucketedSequence(texts, labels, 8, TOKENIZE, seed=3)
    steps = len(data)
    repeated = [y.tolist() for _, y in data.dataset().repeat().take(3 * steps).as_numpy_iterator()]
    epochs = [sum(repeated[k * steps : (k + 1) * steps], []) for k in range(3)]
    reference = BucketedSequence(texts, labels, 8, TOKENIZE, seed=3)
    assert epochs == [epoch_order(reference) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]


def test_precision_auto_is_mixed_bfloat16_on_a_cpu_with_native_bfloat16(monkeypatch):
    import bertclf.hardware
    from bertclf.training import training_policy

    for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert training_policy(policy) == policy
    for flags, policy in (([], "float32"), (["avx2", "avx512_bf16"], "mixed_bfloat16")):
        monkeypatch.setattr(bertclf.hardware, "cpu", lambda flags=flags: {"flags": flags})
        assert training_policy("auto") == policy


def test_batches_of_every_length_in_one_dataset():
    data = BucketedSequence(sequences(100), np.arange(100), 8, TOKENIZE, seed=0)
    widths = {inputs["input_ids"].shape[1] for inputs, _ in data.dataset().as_numpy_iterator()}
    assert widths == {16, 32, 48, 64}


def test_a_worker_gets_its_share_of_each_global_batch():
    def worker(shard: int, shards: int) -> list[list[int]]:  # each worker: its own process
        data = BucketedSequence(sequences(40), np.arange(40), 8, TOKENIZE, 0, drop_remainder=True)
        parts = data.dataset(shards, range(shard, shard + 1))
        return [labels.tolist() for _, labels in parts.as_numpy_iterator()]

    shares, whole = [worker(0, 2), worker(1, 2)], worker(0, 1)
    assert [a + b for a, b in zip(*shares, strict=True)] == whole
    assert all(len(share) == 4 for share in shares[0] + shares[1])


def test_batches_keep_their_length_and_mask():
    texts = sequences(40)
    data = BucketedSequence(texts, np.arange(40), 8, TOKENIZE, seed=0)
    for i in range(len(data)):
        inputs, labels = data[i]
        for row, index in enumerate(labels):
            length = len(texts[index])
            assert inputs["attention_mask"][row].sum() == length


class EchoModel:
    """Stands in for Keras: 'probabilities' that encode each row's first and last real token."""

    def predict_on_batch(self, inputs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        last = ids[np.arange(len(ids)), mask.sum(axis=1) - 1]
        return np.stack([ids[:, 1], last], axis=1).astype(np.float32)


def test_prediction_order_is_restored_after_sorting():
    rng = np.random.default_rng(1)
    texts = [
        np.array([101, i, *rng.integers(1000, 2000, rng.integers(0, 60)), 5000 + i])
        for i in range(37)
    ]
    out = predict_logits(
        EchoModel(), texts, 4, section("tokenize", max_length=64, bucket_multiple=16)
    )
    assert out[:, 0].tolist() == list(range(37))
    assert out[:, 1].tolist() == [5000 + i for i in range(37)]


TINY_ENCODER = {
    "vocab_size": 100,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "hidden_size": 8,
    "intermediate_size": 16,
    "hidden_dropout_prob": 0.0,
}


def trained_twice(class_weight):
    """One epoch of Keras `fit` and one of `custom_fit` (the multi-worker loop, here under the
    default strategy) from the same initial weights on the same batches."""
    import keras
    import tensorflow as tf

    from bertclf.config import HeadConfig
    from bertclf.model import build_classifier
    from bertclf.training import compile_for_training, custom_fit

    rng = np.random.default_rng(0)
    texts = [rng.integers(1, 100, rng.integers(3, 40)).astype(np.int32) for _ in range(48)]
    labels = rng.integers(0, 3, 48)
    train = section("train", epochs=2, batch_size=8, learning_rate=1e-2)
    results = []
    for loop in ("fit", "custom"):
        keras.utils.set_random_seed(0)
        model = build_classifier(TINY_ENCODER, HeadConfig("mean", [], 0.0), 3)
        compile_for_training(model, train, 6)
        data = BucketedSequence(texts[:40], labels[:40], 8, TOKENIZE, seed=0, drop_remainder=True)
        val = BucketedSequence(texts[40:], labels[40:], 8, TOKENIZE, drop_remainder=True)
        if loop == "fit":
            history = model.fit(
                data.dataset(),
                validation_data=val.dataset(),
                epochs=2,
                verbose=0,
                class_weight=class_weight,
                shuffle=False,
            )
        else:
            strategy = tf.distribute.get_strategy()
            history = custom_fit(model, strategy, data, val, 2, class_weight, [])
        results.append((history.history, model.get_weights()))
    return results


@pytest.mark.parametrize("class_weight", [None, {0: 0.5, 1: 2.0, 2: 1.0}])
def test_the_multi_worker_loop_trains_and_logs_as_fit_does(class_weight):
    (fit_logs, fit_weights), (loop_logs, loop_weights) = trained_twice(class_weight)
    assert sorted(loop_logs) == sorted(fit_logs) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for key in fit_logs:
        np.testing.assert_allclose(loop_logs[key], fit_logs[key], rtol=1e-4, atol=1e-6)
    for ours, theirs in zip(loop_weights, fit_weights, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_weight_decay_skips_layer_norms_and_biases_and_decays_the_rest():
    """Keras 3 matches AdamW's exclusions against short variable names: a zero-gradient step
    (warmup off, so the first step has the full rate) changes exactly the decayed variables."""
    import keras

    from bertclf.config import HeadConfig
    from bertclf.model import build_classifier
    from bertclf.training import optimizer_for

    keras.utils.set_random_seed(0)
    model = build_classifier(TINY_ENCODER, HeadConfig("mean", [4], 0.0), 3)
    train = section("train", epochs=1, learning_rate=0.1, weight_decay=0.5, warmup_fraction=0.0)
    optimizer = optimizer_for(train, steps_per_epoch=10)
    variables = model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in variables])
    changed = {v.path for v, old in zip(variables, before, strict=True) if (v.numpy() != old).any()}
    skipped = {v.path for v in variables if v.name in ("gamma", "beta", "bias")}
    assert skipped and changed == {v.path for v in variables} - skipped
    assert any("embeddings" in path for path in changed)  # embeddings decay, as in BERT


def test_a_non_finite_loss_stops_training_in_one_line_naming_the_step():
    """An infinite learning rate (the schema refuses one in params.yaml; the loop must not
    rely on it) makes the weights NaN after the first step: training stops there with one
    line, instead of finishing on NaN and being saved."""
    import keras

    from bertclf.config import HeadConfig
    from bertclf.errors import BertclfError
    from bertclf.model import build_classifier
    from bertclf.training import compile_for_training, fit

    rng = np.random.default_rng(0)
    texts = [rng.integers(1, 100, rng.integers(3, 40)).astype(np.int32) for _ in range(48)]
    labels = rng.integers(0, 3, 48)
    train = section("train", epochs=2, batch_size=8, warmup_fraction=0.0)
    train.learning_rate = float("inf")
    keras.utils.set_random_seed(0)
    model = build_classifier(TINY_ENCODER, HeadConfig("mean", [], 0.0), 3)
    compile_for_training(model, train, 5)
    data = BucketedSequence(texts[:40], labels[:40], 8, TOKENIZE, seed=0)
    val = BucketedSequence(texts[40:], labels[40:], 8, TOKENIZE)
    with pytest.raises(BertclfError, match=r"the loss became nan at epoch 1, step 2; nothing"):
        fit(model, data, val, train, None, [], seed=0)


@pytest.mark.parametrize(("every_seconds", "saved"), [(0, ["epoch-0003"]), (3600, [])])
def test_the_training_state_is_saved_once_its_interval_has_passed(tmp_path, every_seconds, saved):
    """train.checkpoint_every_seconds: 0 saves after every epoch (the last one kept); a longer
    interval than the run saves nothing, so a small table's short epochs don't each pay for
    writing the weights and optimizer moments."""
    import keras

    from bertclf.checkpoint import Checkpoint
    from bertclf.config import HeadConfig
    from bertclf.model import build_classifier
    from bertclf.training import compile_for_training, fit

    rng = np.random.default_rng(0)
    texts = [rng.integers(1, 100, rng.integers(3, 40)).astype(np.int32) for _ in range(24)]
    labels = rng.integers(0, 3, 24)
    train = section(
        "train",
        epochs=3,
        min_steps=0,
        batch_size=8,
        early_stopping_patience=3,
        checkpoint_every_seconds=every_seconds,
    )
    keras.utils.set_random_seed(0)
    model = build_classifier(TINY_ENCODER, HeadConfig("mean", [], 0.0), 3)
    compile_for_training(model, train, 2)
    data = BucketedSequence(texts[:16], labels[:16], 8, TOKENIZE, seed=0)
    val = BucketedSequence(texts[16:], labels[16:], 8, TOKENIZE)
    checkpoint = Checkpoint(tmp_path / "train-key")
    fit(model, data, val, train, None, [], seed=0, checkpoint=checkpoint)
    assert sorted(p.name for p in (tmp_path / "train-key").glob("epoch-*")) == saved


def test_min_steps_raises_the_epochs_of_a_small_table_only():
    """The seed's sheet trains 18 texts in 2 steps an epoch: 2 epochs are 4 steps. With
    min_steps 100 it runs 50 epochs, and early stopping watches from the 50th (index 49); the
    default data's 250 steps an epoch are left at their 2 epochs."""
    from bertclf.training import training_epochs

    train = section("train", epochs=2, min_steps=100)
    assert training_epochs(train, 2) == (50, 49)
    assert training_epochs(train, 3) == (34, 33)
    assert training_epochs(train, 250) == (2, 0)
    assert training_epochs(section("train", epochs=2, min_steps=0), 2) == (2, 0)


def test_frozen_layers_keep_the_embeddings_and_lowest_layers_as_they_were():
    """train.frozen_layers=1 of the tiny encoder's 2: an epoch of `fit` changes the upper layer
    and the head and leaves the embeddings and the lower layer bit for bit; more than the
    encoder has is one line."""
    import keras

    from bertclf.config import HeadConfig
    from bertclf.errors import BertclfError
    from bertclf.model import build_classifier, freeze_lower_layers
    from bertclf.training import compile_for_training

    rng = np.random.default_rng(0)
    texts = [rng.integers(1, 100, rng.integers(3, 40)).astype(np.int32) for _ in range(40)]
    labels = rng.integers(0, 3, 40)
    train = section("train", epochs=1, batch_size=8, learning_rate=1e-2, warmup_fraction=0.0)
    keras.utils.set_random_seed(0)
    encoder = {**TINY_ENCODER, "num_hidden_layers": 2}
    model = build_classifier(encoder, HeadConfig("mean", [], 0.0), 3)
    with pytest.raises(BertclfError, match=r"train.frozen_layers=3: the encoder has 2 layers"):
        freeze_lower_layers(model, 3)
    freeze_lower_layers(model, 1)
    compile_for_training(model, train, 5)
    before = {v.path: v.numpy().copy() for v in model.weights}
    model.fit(BucketedSequence(texts, labels, 8, TOKENIZE, seed=0).dataset(), epochs=1, verbose=0)
    changed = {v.path for v in model.weights if (v.numpy() != before[v.path]).any()}
    frozen = [p for p in before if "embedding" in p or "transformer_layer_0" in p]
    assert frozen and not changed & set(frozen)
    assert any("transformer_layer_1" in p for p in changed)
    assert any(p.startswith("logits") for p in changed)
