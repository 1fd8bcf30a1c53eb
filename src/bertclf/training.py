"""The training loop: Keras `fit` over length-bucketed batches, AdamW with warmup and linear
decay, early stopping on validation loss with the best weights kept."""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from bertclf.batching import BucketedSequence
from bertclf.checkpoint import Checkpoint
from bertclf.config import HeadConfig, TokenizeConfig, TrainConfig
from bertclf.distribution import configure
from bertclf.labels import LabelMap
from bertclf.layout import ENCODER_CONFIG
from bertclf.model import build_classifier
from bertclf.tokenization import TokenCache


def weighted_binary_crossentropy(positive_weights: np.ndarray):
    """Binary cross-entropy averaged over the labels, each label's positive term weighted."""
    weights = tf.constant(positive_weights, dtype=tf.float32)

    def loss(y_true, probabilities):
        p = tf.clip_by_value(probabilities, keras.backend.epsilon(), 1 - keras.backend.epsilon())
        y = tf.cast(y_true, p.dtype)
        terms = weights * y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p)
        return -tf.reduce_mean(terms, axis=-1)

    return loss


class MicroF1(keras.metrics.Metric):
    """Micro-averaged F1 of `probability >= 0.5` over every (text, label) pair. (Keras' F1Score
    needs the label count in the targets' static shape, which a Sequence's batches lack.)"""

    def __init__(self, name: str = "micro_f1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.counts = {
            kind: self.add_weight(name=kind, initializer="zeros") for kind in ("tp", "fp", "fn")
        }

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = tf.cast(y_true, tf.float32) > 0.5
        predicted = tf.cast(y_pred, tf.float32) >= 0.5
        for kind, hits in (
            ("tp", truth & predicted),
            ("fp", ~truth & predicted),
            ("fn", truth & ~predicted),
        ):
            self.counts[kind].assign_add(tf.reduce_sum(tf.cast(hits, tf.float32)))

    def result(self):
        tp, fp, fn = (self.counts[kind] for kind in ("tp", "fp", "fn"))
        return tf.math.divide_no_nan(2 * tp, 2 * tp + fp + fn)

    def reset_state(self):
        for variable in self.counts.values():
            variable.assign(0.0)


def compile_for_training(
    model,
    train: TrainConfig,
    steps_per_epoch: int,
    label_map: LabelMap | None = None,
) -> None:
    """AdamW with warmup and linear decay. Single-label: sparse categorical cross-entropy and
    accuracy; multi-label: binary cross-entropy (positive weights with train.class_weights)
    and micro-F1 at 0.5."""
    from transformers import create_optimizer

    total_steps = steps_per_epoch * train.epochs
    optimizer, _ = create_optimizer(
        init_lr=train.learning_rate,
        num_train_steps=total_steps,
        num_warmup_steps=int(train.warmup_fraction * total_steps),
        weight_decay_rate=train.weight_decay,
    )
    if label_map is not None and label_map.multi_label:
        loss = (
            weighted_binary_crossentropy(label_map.positive_weights())
            if train.class_weights
            else "binary_crossentropy"
        )
        metrics = [MicroF1(name="micro_f1")]
    else:
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=train.jit_compile)


class EpochSeeds(keras.callbacks.Callback):
    """Reseed every random generator from (seed, epoch) and retrace the training step at each
    epoch start, so that dropout's masks in epoch e depend on (seed, e) alone: a run resumed
    at epoch e draws what an uninterrupted run draws there."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        keras.utils.set_random_seed(self.seed * 1_000 + epoch)
        self.model.train_function = self.model.make_train_function(force=True)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose counter, best value and best weights can be saved and restored
    (Keras' BackupAndRestore keeps none of them)."""

    FIELDS = ("wait", "stopped_epoch", "best", "best_epoch")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.resume_state: tuple[dict, list | None] | None = None

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        if self.resume_state is not None:
            state, self.best_weights = self.resume_state
            for name in self.FIELDS:
                setattr(self, name, state[name])

    def state(self) -> dict:
        state = {name: float(getattr(self, name)) for name in self.FIELDS}
        state["wait"], state["stopped_epoch"] = int(self.wait), int(self.stopped_epoch)
        state["best_epoch"] = int(self.best_epoch)
        return {**state, "best_weights": self.best_weights}


class EpochCheckpoint(keras.callbacks.Callback):
    """Save the training state after every epoch (after the other callbacks have logged it)."""

    def __init__(self, checkpoint: Checkpoint, early_stopping: ResumableEarlyStopping):
        super().__init__()
        self.checkpoint = checkpoint
        self.early_stopping = early_stopping

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        state = self.early_stopping.state()
        state["stopped"] = bool(self.model.stop_training)
        self.checkpoint.save(epoch + 1, self.model, state)


def fit(
    model,
    train_data: BucketedSequence,
    val_data: BucketedSequence,
    train: TrainConfig,
    class_weight: dict[int, float] | None,
    callbacks: list,
    seed: int,
    checkpoint: Checkpoint | None = None,
    monitor: str = "val_loss",
) -> keras.callbacks.History:
    """Keras `fit` with early stopping on `monitor` (best weights kept). With a checkpoint,
    the state is saved after every epoch and a saved state is resumed from."""
    early_stopping = ResumableEarlyStopping(
        monitor=monitor,
        mode="min" if monitor == "val_loss" else "max",
        patience=train.early_stopping_patience,
        restore_best_weights=True,
        verbose=1,
    )
    callbacks = [EpochSeeds(seed), early_stopping, *callbacks]
    initial_epoch = 0
    if checkpoint is not None:
        if checkpoint.state:
            state, best_weights = checkpoint.load_into(model)
            early_stopping.resume_state = (state, best_weights)
            initial_epoch = train.epochs if state["stopped"] else checkpoint.next_epoch
            train_data.start_at(checkpoint.next_epoch)
            print(f"resuming from {checkpoint.directory} after epoch {checkpoint.next_epoch}")
        callbacks.append(EpochCheckpoint(checkpoint, early_stopping))
    return model.fit(
        train_data,
        validation_data=val_data,
        epochs=train.epochs,
        initial_epoch=initial_epoch,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=2,
        shuffle=False,
    )


def train_classifier(
    pretrained: Path,
    label_map: LabelMap,
    train_cache: TokenCache,
    val_cache: TokenCache,
    train: TrainConfig,
    head: HeadConfig,
    tokenize: TokenizeConfig,
    seed: int,
    callbacks: list | None = None,
    checkpoint: Checkpoint | None = None,
    monitor: str = "val_loss",
):
    """Build encoder plus head from `pretrained` and fine-tune it. Returns (model, encoder config).

    Shared by the `train` stage and the cross-validation folds. The model and its optimizer
    are built in the scope of the strategy `train.distribution` names; `train.batch_size` is
    the global batch, which TensorFlow splits across the replicas."""
    strategy = configure(train.distribution, train.threads)
    replicas = strategy.num_replicas_in_sync
    name = type(strategy).__name__
    print(f"training: {train.distribution}, {replicas} replica(s) ({name})", flush=True)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(train.precision)
    multi_worker = train.distribution == "multi_worker"
    train_data = BucketedSequence(
        train_cache.sequences,
        train_cache.labels,
        train.batch_size,
        tokenize,
        seed=seed,
        drop_remainder=multi_worker,
    )
    val_data = BucketedSequence(
        val_cache.sequences,
        val_cache.labels,
        train.batch_size,
        tokenize,
        drop_remainder=multi_worker,
    )
    encoder_config = json.loads((pretrained / ENCODER_CONFIG).read_text())
    with strategy.scope():
        model = build_classifier(
            encoder_config,
            head,
            len(label_map.classes),
            pretrained,
            label_map.multi_label,
            output_bias=label_map.prior_logits() if label_map.multi_label else None,
        )
        compile_for_training(model, train, len(train_data), label_map)
    # multi-label weighs positives in its loss; single-label's micro-F1 is its accuracy
    class_weight = None
    if train.class_weights and not label_map.multi_label:
        class_weight = label_map.class_weights()
    if monitor == "val_micro_f1" and not label_map.multi_label:
        monitor = "val_accuracy"
    fit(
        model, train_data, val_data, train, class_weight, callbacks or [], seed, checkpoint, monitor
    )
    keras.mixed_precision.set_global_policy("float32")  # the weights are float32 either way
    return model, encoder_config
