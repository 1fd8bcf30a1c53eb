"""The training loop: Keras `fit` over length-bucketed batches, AdamW with warmup and linear
decay, early stopping on task.early_stopping_monitor (validation loss, or micro-F1) with the
best weights kept.

Under MultiWorkerMirroredStrategy, Keras 3.15's `fit` fails (keras-team/keras #20329, #20585):
there a custom loop (`strategy.run`, `strategy.reduce`) drives the same callbacks."""

import dataclasses
import json
import math
import random
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bertclf.batching import BucketedSequence
from bertclf.checkpoint import Checkpoint
from bertclf.config import HeadConfig, TokenizeConfig, TrainConfig
from bertclf.distribution import configure
from bertclf.errors import BertclfError
from bertclf.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL, LabelMap
from bertclf.layout import ENCODER_CONFIG
from bertclf.model import build_classifier, family_of, freeze_lower_layers
from bertclf.tokenization import TokenCache


def weighted_binary_crossentropy(positive_weights: np.ndarray):
    """Binary cross-entropy from logits, averaged over the labels, each label's positive term
    weighted (log-sigmoids: no clipping)."""
    weights = tf.constant(positive_weights, dtype=tf.float32)

    def loss(y_true, logits):
        z = tf.cast(logits, tf.float32)
        y = tf.cast(y_true, tf.float32)
        terms = weights * y * tf.math.log_sigmoid(z) + (1 - y) * tf.math.log_sigmoid(-z)
        return -tf.reduce_mean(terms, axis=-1)

    return loss


def sparse_categorical_crossentropy(y_true, logits):
    """Keras' loss of each text, from logits (the custom loop needs it per text)."""
    return keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)


def binary_crossentropy(y_true, logits):
    """Keras' loss of each text (the mean over its labels), from logits."""
    return keras.losses.binary_crossentropy(y_true, logits, from_logits=True)


def squared_error(y_true, outputs):
    """Regression: each text's squared error (float32, whatever the compute dtype)."""
    score = tf.reshape(tf.cast(outputs, tf.float32), [-1])
    return tf.square(score - tf.reshape(tf.cast(y_true, tf.float32), [-1]))


class MicroF1(keras.metrics.Metric):
    """Micro-averaged F1 of `probability >= 0.5` (a logit >= 0) over every (text, label) pair.
    (Keras' F1Score needs the label count in the targets' static shape, which a Sequence's
    batches lack.)"""

    def __init__(self, name: str = "micro_f1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.counts = {
            kind: self.add_variable(shape=(), initializer="zeros", name=kind)
            for kind in ("tp", "fp", "fn")
        }

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = tf.cast(y_true, tf.float32) > 0.5
        predicted = tf.cast(y_pred, tf.float32) >= 0.0  # logits
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


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate rises linearly from 0 to `peak` over `warmup_steps`, then falls
    linearly to 0 at `total_steps` (BERT's schedule)."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = self.peak * step / max(self.warmup_steps, 1)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        decay = self.peak * keras.ops.maximum(1.0 - (step - self.warmup_steps) / decay_steps, 0.0)
        return keras.ops.where(step < self.warmup_steps, warmup, decay)

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


# Weight decay skips LayerNorm's scale and offset and every bias. Keras 3 matches the short
# variable names (Keras 2's transformers code matched "LayerNorm", "layer_norm" and "bias"),
# and on TensorFlow the underlying variable's, which is the whole path with ":0"
# ("embeddings_layer_norm/gamma:0").
NO_WEIGHT_DECAY = (r"(^|/)(gamma|beta|bias)(:\d+)?$",)


def optimizer_for(train: TrainConfig, steps_per_epoch: int) -> keras.optimizers.AdamW:
    """AdamW with warmup and linear decay over the whole run."""
    total_steps = steps_per_epoch * train.epochs
    optimizer = keras.optimizers.AdamW(
        learning_rate=WarmupLinearDecay(
            train.learning_rate, int(train.warmup_fraction * total_steps), total_steps
        ),
        weight_decay=train.weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
    )
    optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    return optimizer


class SingleLabelTraining:
    """What training does for a single-label task: a softmax over the classes, sparse
    categorical cross-entropy, class weights (train.class_weights), accuracy."""

    metric = "accuracy"

    def output_bias(self, label_map: LabelMap) -> None:
        return None

    def loss_and_metric(self, label_map: LabelMap | None, train: TrainConfig):
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        return sparse_categorical_crossentropy, accuracy

    def class_weight(self, label_map: LabelMap, train: TrainConfig) -> dict[int, float] | None:
        return label_map.class_weights() if train.class_weights else None

    def metric_counts(self, labels, logits) -> list:
        """What the metric sums over texts (`custom_fit`): the correct predictions."""
        predicted = tf.cast(tf.argmax(logits, axis=1), tf.int64)
        return [tf.reduce_sum(tf.cast(predicted == tf.cast(labels, tf.int64), tf.float32))]

    def metric_value(self, counts, texts: int) -> dict[str, float]:
        return {"accuracy": float(counts[0] / max(texts, 1))}


class MultiLabelTraining:
    """For a multi-label task: a sigmoid per label, its bias starting at the label's prior,
    binary cross-entropy (its positives weighted with train.class_weights), micro-F1 at 0.5."""

    metric = "micro_f1"

    def output_bias(self, label_map: LabelMap) -> np.ndarray:
        return label_map.prior_logits()

    def loss_and_metric(self, label_map: LabelMap, train: TrainConfig):
        if train.class_weights:
            return weighted_binary_crossentropy(label_map.positive_weights()), MicroF1()
        return binary_crossentropy, MicroF1()

    def class_weight(self, label_map: LabelMap, train: TrainConfig) -> None:
        return None  # weighed in the loss

    def metric_counts(self, labels, logits) -> list:
        """True positives, false positives and misses at probability 0.5, a logit of 0."""
        truth = tf.cast(labels, tf.float32) > 0.5
        predicted = tf.cast(logits, tf.float32) >= 0.0
        return [
            tf.reduce_sum(tf.cast(hits, tf.float32))
            for hits in (truth & predicted, ~truth & predicted, truth & ~predicted)
        ]

    def metric_value(self, counts, texts: int) -> dict[str, float]:
        tp, fp, fn = counts
        return {"micro_f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0}


class RegressionTraining:
    """For a regression task: one output, its bias starting at the training scores' mean,
    mean squared error, and the root of it as the metric."""

    metric = "rmse"

    def output_bias(self, label_map: LabelMap) -> np.ndarray:
        return np.asarray([label_map.scores["mean"]], dtype=np.float32)

    def loss_and_metric(self, label_map: LabelMap, train: TrainConfig):
        return squared_error, keras.metrics.RootMeanSquaredError(name="rmse")

    def class_weight(self, label_map: LabelMap, train: TrainConfig) -> None:
        return None

    def metric_counts(self, labels, outputs) -> list:
        """The summed squared error."""
        return [tf.reduce_sum(squared_error(labels, outputs))]

    def metric_value(self, counts, texts: int) -> dict[str, float]:
        return {"rmse": float(np.sqrt(counts[0] / max(texts, 1)))}


TASK_TRAINING = {
    SINGLE_LABEL: SingleLabelTraining(),
    MULTI_LABEL: MultiLabelTraining(),
    REGRESSION: RegressionTraining(),
}


def training_of(label_map: LabelMap | None):
    """The training of the task labels.json names (without a label map, single-label)."""
    return TASK_TRAINING[label_map.task if label_map is not None else SINGLE_LABEL]


def compile_for_training(
    model,
    train: TrainConfig,
    steps_per_epoch: int,
    label_map: LabelMap | None = None,
) -> None:
    """AdamW with warmup and linear decay, the task's loss and metric; XLA as
    train.jit_compile says (Keras 3's "auto" would turn it on wherever a GPU is present)."""
    loss, metric = training_of(label_map).loss_and_metric(label_map, train)
    model.compile(
        optimizer=optimizer_for(train, steps_per_epoch),
        loss=loss,
        metrics=[metric],
        jit_compile=bool(train.jit_compile),
    )


class FailOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training with one line when the loss is not finite: a NaN run must not be saved,
    locked in dvc.lock, and found out by the stage after it. (Keras' TerminateOnNaN stops
    quietly, and the stage would save the model.)"""

    # Keras runs it off the training thread, so that a step need not wait for the previous
    # one's loss; its error reaches `fit` at the next step or the epoch's end, before any
    # other callback's on_epoch_end (a checkpoint) sees the NaN epoch.
    async_safe = True

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._check((logs or {}).get("loss"), f"epoch {self.epoch + 1}, step {batch + 1}")

    def on_epoch_end(self, epoch: int, logs=None) -> None:  # the custom loop's only logs
        for key in ("loss", "val_loss"):
            self._check((logs or {}).get(key), f"epoch {epoch + 1} ({key})")

    @staticmethod
    def _check(loss, where: str) -> None:
        if loss is not None and not np.isfinite(float(np.asarray(loss))):
            raise BertclfError(
                f"train: the loss became {float(np.asarray(loss))} at {where}; nothing was "
                "saved (lower train.learning_rate, or check the data)"
            )


class EpochSeeds(keras.callbacks.Callback):
    """Reseed every random generator from (seed, epoch) at each epoch start, so that dropout's
    masks in epoch e depend on (seed, e) alone: a run resumed at epoch e draws what an
    uninterrupted run draws there. Keras 3 gives each dropout layer a seed-generator state
    (`[seed, counter]`, counted up every step) that no checkpoint holds and
    `set_random_seed` does not touch: each gets its own seed for the epoch and counter 0."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        reseed(self.model, self.seed, epoch)


def reseed(model, seed: int, epoch: int) -> None:
    """Set Python's and NumPy's global seeds and every seed-generator state of `model` from
    (seed, epoch). Not TensorFlow's global seed: setting it clears TensorFlow's kernel caches,
    so the next step re-instantiates the whole traced training step (4-10 s for MiniLM, every
    epoch: most of a small table's epoch), and no op of the step draws from it (dropout draws
    from the states set here; the data order is the plan's own)."""
    random.seed(seed * 1_000 + epoch)
    np.random.seed(seed * 1_000 + epoch)
    states = [v for v in model.non_trainable_variables if "seed_generator_state" in v.path]
    for i, state in enumerate(states):
        (value,) = np.random.SeedSequence([seed, epoch, i]).generate_state(1)
        state.assign(np.array([value % 2**31, 0], dtype=state.dtype))


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
        state = {
            "wait": int(self.wait),
            "stopped_epoch": int(self.stopped_epoch),
            "best": None if self.best is None else float(self.best),  # None: no epoch yet
            "best_epoch": int(self.best_epoch),
        }
        return {**state, "best_weights": self.best_weights}


class EpochCheckpoint(keras.callbacks.Callback):
    """Save the training state after an epoch (after the other callbacks have logged it) once
    `every_seconds` have passed since training began or since the last save; 0: after every
    epoch. Any epoch's end is a point to resume from exactly (the next epoch's data order and
    dropout come from (seed, epoch)), so the cadence changes only how much a kill loses. A
    saved state is the model and its optimizer moments (3x the weights: 270 MB, about 2 s,
    for MiniLM), which would double a small table's 1-second epochs."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        early_stopping: ResumableEarlyStopping,
        every_seconds: float,
    ):
        super().__init__()
        self.checkpoint = checkpoint
        self.early_stopping = early_stopping
        self.every_seconds = every_seconds
        self.last_save = time.monotonic()

    def on_train_begin(self, logs=None) -> None:
        self.last_save = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if time.monotonic() - self.last_save < self.every_seconds:
            return
        state = self.early_stopping.state()
        state["stopped"] = bool(self.model.stop_training)
        self.checkpoint.save(epoch + 1, self.model, state)
        self.last_save = time.monotonic()


def training_policy(precision: str) -> str:
    """The Keras dtype policy train.precision names. `auto`: mixed bfloat16 when training runs on
    a CPU with native bfloat16 (avx512_bf16, amx_bf16: the rule the runtime's `auto` follows for
    prediction), float32 elsewhere (no GPU is assumed to have it)."""
    if precision != "auto":
        return precision
    from bertclf.hardware import cpu, native_bfloat16

    on_cpu = not tf.config.list_physical_devices("GPU")
    return "mixed_bfloat16" if on_cpu and native_bfloat16(cpu()["flags"]) else "float32"


def training_epochs(train: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs to run, the first epoch early stopping watches, from 0): train.epochs, raised
    so that the run takes at least train.min_steps optimizer steps, and not stopped early
    before them."""
    needed = math.ceil(train.min_steps / max(steps_per_epoch, 1))
    return max(train.epochs, needed), max(needed - 1, 0)


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
    strategy=None,
    task=None,
) -> keras.callbacks.History:
    """Keras `fit` with early stopping on `monitor` (best weights kept). With a checkpoint,
    the state is saved after every epoch and a saved state is resumed from. Under
    MultiWorkerMirroredStrategy, `custom_fit` instead."""
    early_stopping = ResumableEarlyStopping(
        monitor=monitor,
        mode="min" if monitor == "val_loss" else "max",
        patience=train.early_stopping_patience,
        restore_best_weights=True,
        verbose=1,
        start_from_epoch=training_epochs(train, len(train_data))[1],
    )
    callbacks = [FailOnNonFiniteLoss(), EpochSeeds(seed), early_stopping, *callbacks]
    initial_epoch = 0
    if checkpoint is not None:
        if checkpoint.state:
            state, best_weights = checkpoint.load_into(model)
            early_stopping.resume_state = (state, best_weights)
            initial_epoch = train.epochs if state["stopped"] else checkpoint.next_epoch
            train_data.start_at(checkpoint.next_epoch)
            print(f"resuming from {checkpoint.directory} after epoch {checkpoint.next_epoch}")
        callbacks.append(
            EpochCheckpoint(checkpoint, early_stopping, train.checkpoint_every_seconds)
        )
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return custom_fit(
            model, strategy, train_data, val_data, train.epochs, class_weight, callbacks, task
        )
    # One iterator over repeated passes, not a new one each epoch: a fresh iterator over the
    # generator stalled the epoch's first step by up to 20 s, in about half the runs (the
    # iterator of a pass with `steps_per_epoch` carries over; docs/speed.md).
    return model.fit(
        train_data.dataset().repeat(),
        steps_per_epoch=len(train_data),
        validation_data=val_data.dataset().repeat(),
        validation_steps=len(val_data),
        epochs=train.epochs,
        initial_epoch=initial_epoch,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=2,
        shuffle=False,  # the batches' order is the dataset's own, from (seed, epoch)
    )


def custom_fit(
    model,
    strategy: tf.distribute.Strategy,
    train_data: BucketedSequence,
    val_data: BucketedSequence,
    epochs: int,
    class_weight: dict[int, float] | None,
    callbacks: list,
    task=None,
) -> keras.callbacks.History:
    """What `fit` does, as TensorFlow's custom training loop: each replica takes its share of
    every global batch, `strategy.run` computes the gradients (the optimizer sums them across
    replicas), and `strategy.reduce` sums the loss and the metric's counts, so the logs that
    the callbacks (DVCLive, early stopping) see are those of the whole batch, as under `fit`.
    The loss is the compiled one; the metric is the task's (`training_of`; single-label without
    one)."""
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*callbacks, history], model=model, epochs=epochs, steps=len(train_data), verbose=0
    )
    task = task or training_of(None)
    weights = None
    if class_weight is not None:
        weights = tf.constant([class_weight[i] for i in range(len(class_weight))], tf.float32)

    def step(inputs, labels, global_size, training):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=training)
            per_text = model.loss(labels, logits)
            if weights is not None and training:  # as fit: class weights in training only
                per_text *= tf.gather(weights, tf.cast(labels, tf.int32))
            total = tf.reduce_sum(per_text)
            scaled = total / tf.cast(global_size, tf.float32)  # the mean over the global batch
        if training:
            variables = model.trainable_variables
            gradients = tape.gradient(scaled, variables)
            model.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return tf.concat([[total], task.metric_counts(labels, logits)], axis=0)

    @tf.function(reduce_retracing=True)
    def run(inputs, labels, global_size, training):
        sums = strategy.run(step, args=(inputs, labels, global_size, training))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

    def epoch_pass(data: BucketedSequence, training: bool) -> dict[str, float]:
        batches = iter(strategy.distribute_datasets_from_function(data.replica_dataset))
        sums, texts = 0.0, 0
        for index in range(len(data)):
            if training:
                callback_list.on_train_batch_begin(index)
            inputs, labels = next(batches)
            size = len(data.batches[index])
            sums += run(inputs, labels, size, training).numpy()  # a trace per value of training
            texts += size
            if training:
                callback_list.on_train_batch_end(index)
        return {"loss": sums[0] / max(texts, 1), **task.metric_value(sums[1:], texts)}

    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        logs = epoch_pass(train_data, training=True)
        logs.update({f"val_{k}": v for k, v in epoch_pass(val_data, training=False).items()})
        callback_list.on_epoch_end(epoch, logs)
        print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()))
        if model.stop_training:
            break
    callback_list.on_train_end()
    return history


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
    policy = training_policy(train.precision)
    print(
        f"training: {train.distribution}, {replicas} replica(s) ({name}), {policy} "
        f"(train.precision={train.precision})",
        flush=True,
    )
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(policy)
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
    epochs, _ = training_epochs(train, len(train_data))
    if epochs > train.epochs:
        print(
            f"training: {len(train_data)} steps an epoch; {epochs} epochs instead of "
            f"{train.epochs}, to take train.min_steps={train.min_steps} steps",
            flush=True,
        )
        train = dataclasses.replace(train, epochs=epochs)  # the schedule spans them all
    encoder_config = json.loads((pretrained / ENCODER_CONFIG).read_text())
    family_of(encoder_config).check_window(encoder_config, tokenize.max_length)
    task = training_of(label_map)
    with strategy.scope():
        model = build_classifier(
            encoder_config,
            head,
            len(label_map.classes),
            pretrained,
            output_bias=task.output_bias(label_map),
            pair_separator_id=train_cache.pair_separator_id,
        )
        freeze_lower_layers(model, train.frozen_layers)
        compile_for_training(model, train, len(train_data), label_map)
    class_weight = task.class_weight(label_map, train)
    if monitor != "val_loss":  # the task's metric (a single-label run's micro-F1 is accuracy)
        monitor = f"val_{task.metric}"
    fit(
        model,
        train_data,
        val_data,
        train,
        class_weight,
        callbacks or [],
        seed,
        checkpoint,
        monitor,
        strategy,
        task,
    )
    keras.mixed_precision.set_global_policy("float32")  # the weights are float32 either way
    return model, encoder_config
