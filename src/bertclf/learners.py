"""How the classifier learns from its labelled rows: params.yaml's `learner` section.

- `finetune`: the encoder and its head trained end to end (`training.train_classifier`).
- `frozen`: the pretrained encoder's mean-pooled vectors, and a linear head fitted on them by
  scikit-learn (logistic regression; ridge for regression) in seconds.
- `contrastive`: SetFit's recipe (Tunstall et al., 2022) on this project's encoder. The
  mean-pooled encoder is first tuned on pairs drawn from the labelled rows (same class: cosine
  1, different classes: 0; multi-label: the label sets' Jaccard similarity) with a squared
  error on the cosine, then a linear head is fitted on the tuned vectors as for `frozen`.
- `auto`: `choose` picks one from the training split, by the rule measured in
  docs/small-data.md, and says why in one line.

Whatever the method, the result is the same model: encoder, pooling, Dense logits. The fitted
head's weights (its standardisation folded in) become the Dense layer's, so the package, its
runtimes, calibration and the server see no difference.
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from bertclf.batching import BucketedSequence, pad_batch
from bertclf.config import HeadConfig, LearnerConfig, TokenizeConfig
from bertclf.errors import BertclfError
from bertclf.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL, LabelMap
from bertclf.tokenization import TokenCache

FINETUNE, FROZEN, CONTRASTIVE = "finetune", "frozen", "contrastive"


def choose(learner: LearnerConfig, label_map: LabelMap, pairs: bool) -> tuple[str, str]:
    """(method, the reason in words). `auto` tunes a single-label table contrastively when its
    smallest class has at most learner.auto_max_texts_per_class training texts, and fine-tunes
    everything else: larger tables, text pairs, multi-label and regression (docs/small-data.md
    has the measurements)."""
    if learner.method != "auto":
        return learner.method, f"learner.method={learner.method}"
    if pairs:
        return FINETUNE, "auto: text pairs are fine-tuned"
    if label_map.task != SINGLE_LABEL:  # not yet measured on small tables: today's method
        return FINETUNE, f"auto: {label_map.task} is fine-tuned"
    smallest = min(label_map.counts)
    limit = learner.auto_max_texts_per_class
    if smallest > limit:
        return FINETUNE, (
            f"auto: the smallest class has {smallest} training texts, more than "
            f"learner.auto_max_texts_per_class={limit}"
        )
    return CONTRASTIVE, (
        f"auto: the smallest class has {smallest} training texts, at most "
        f"learner.auto_max_texts_per_class={limit}"
    )


def linear_head(head: HeadConfig) -> HeadConfig:
    """The head the fitted methods build: mean pooling (a sentence-embedding body's own), no
    hidden layers. One line when the configured head has hidden layers."""
    if head.hidden_sizes:
        raise BertclfError(
            f"learner: head.hidden_sizes={list(head.hidden_sizes)}: the frozen and contrastive "
            "learners fit a linear head; use head=cls or head=mean, or learner=finetune"
        )
    return dataclasses.replace(head, pooling="mean")


def pooled_encoder(model) -> keras.Model:
    """The classifier up to its pooled vector (shares the classifier's encoder weights)."""
    return keras.Model(model.inputs, model.get_layer("mean_pool").output, name="pooled")


def embed(pooled: keras.Model, cache: TokenCache, tokenize: TokenizeConfig, batch_size=64):
    """The pooled vector of every row of `cache`, float32, in the cache's order."""
    sequence = BucketedSequence(cache.sequences, None, batch_size, tokenize)
    vectors = np.zeros((len(cache.sequences), pooled.output.shape[-1]), dtype=np.float32)
    forward = tf.function(lambda inputs: pooled(inputs, training=False), reduce_retracing=True)
    for members in sequence.batches:
        vectors[members] = forward(sequence.batch(members)).numpy()
    return vectors


def fit_linear_head(vectors: np.ndarray, labels: np.ndarray, label_map: LabelMap, seed: int):
    """scikit-learn's linear model on standardised vectors, returned as a Dense layer's
    (kernel, bias) on the raw vectors: logistic regression (multinomial; one per label for
    multi-label) with C chosen by cross-validation where every class has 3 texts, else C=1;
    ridge regression with its alpha chosen by leave-one-out for regression."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(vectors)
    x = scaler.transform(vectors)
    if label_map.task == REGRESSION:
        model = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(x, labels)
        weights, bias = model.coef_.reshape(1, -1), np.atleast_1d(model.intercept_)
    elif label_map.task == MULTI_LABEL:
        weights = np.zeros((labels.shape[1], x.shape[1]))
        bias = np.asarray(label_map.prior_logits(), dtype=np.float64).copy()
        for j in range(labels.shape[1]):
            column = labels[:, j].astype(int)
            if 0 < column.sum() < len(column):  # a label on every text, or none: its prior
                fitted = LogisticRegression(C=1.0, max_iter=1000).fit(x, column)
                weights[j], bias[j] = fitted.coef_[0], fitted.intercept_[0]
    else:
        smallest = int(np.bincount(labels, minlength=len(label_map.classes)).min())
        if smallest >= 3:
            folds = min(5, smallest)
            model = LogisticRegressionCV(
                Cs=np.logspace(-3, 2, 11),
                l1_ratios=(0.0,),
                cv=folds,
                scoring="neg_log_loss",
                max_iter=2000,
                use_legacy_attributes=False,
            ).fit(x, labels)
        else:
            model = LogisticRegression(C=1.0, max_iter=2000).fit(x, labels)
        weights, bias = model.coef_, model.intercept_
        if weights.shape[0] == 1:  # two classes: sklearn's one logit is class 1's against 0
            weights = np.vstack([np.zeros_like(weights), weights])
            bias = np.array([0.0, bias[0]])
    scale = scaler.scale_
    kernel = (weights / scale).T
    bias = bias - (weights * (scaler.mean_ / scale)).sum(axis=1)
    return kernel.astype(np.float32), bias.astype(np.float32)


def draw_pairs(labels: np.ndarray, label_map: LabelMap, iterations: int, max_pairs: int, seed):
    """SetFit's pairs: for each text and iteration, one text sharing its class (target 1) and
    one of another class (target 0); multi-label, two random texts with their label sets'
    Jaccard similarity. At most max_pairs, drawn at random from them; says when it cut.
    Returns (first, second, target)."""
    rng = np.random.default_rng([seed, 7])
    n = len(labels)
    if label_map.task == MULTI_LABEL:
        first = np.tile(np.arange(n), 2 * iterations)
        second = rng.integers(0, n, len(first))
        a, b = labels[first] > 0.5, labels[second] > 0.5
        union = (a | b).sum(axis=1)
        target = np.where(union > 0, (a & b).sum(axis=1) / np.maximum(union, 1), 1.0)
    else:
        members = {c: np.flatnonzero(labels == c) for c in range(len(label_map.classes))}
        lonely = [(label_map.classes[c], len(m)) for c, m in members.items() if len(m) < 2]
        if lonely:
            name, count = lonely[0]
            raise BertclfError(
                f"learner=contrastive: class {name!r} has {count} training text(s); a positive "
                "pair needs 2 (add texts of it, or use learner=frozen)"
            )
        first = np.tile(np.arange(n), iterations)
        positive, negative = np.empty_like(first), np.empty_like(first)
        for c, own in members.items():
            rows = np.flatnonzero(labels[first] == c)
            place = np.searchsorted(own, first[rows])  # each text's place among its class
            pick = rng.integers(0, len(own) - 1, len(rows))
            positive[rows] = own[pick + (pick >= place)]  # any other text of the class
            others = np.flatnonzero(labels != c)
            negative[rows] = others[rng.integers(0, len(others), len(rows))]
        first = np.repeat(first, 2)
        second = np.stack([positive, negative], axis=1).reshape(-1)
        target = np.tile([1.0, 0.0], len(positive))
    if len(first) > max_pairs:
        keep = np.sort(rng.choice(len(first), max_pairs, replace=False))
        print(
            f"learner: drew {max_pairs} of {len(first)} pairs (learner.max_pairs={max_pairs})",
            flush=True,
        )
        first, second, target = first[keep], second[keep], target[keep]
    order = rng.permutation(len(first))
    return first[order], second[order], target[order].astype(np.float32)


def tune_contrastively(
    pooled: keras.Model,
    cache: TokenCache,
    label_map: LabelMap,
    learner: LearnerConfig,
    tokenize: TokenizeConfig,
    seed: int,
) -> list[float]:
    """Tune the pooled encoder on pairs: the squared error between the pair's cosine and its
    target, AdamW with warmup and linear decay. Returns each epoch's mean loss."""
    from bertclf.training import WarmupLinearDecay

    first, second, target = draw_pairs(
        cache.labels, label_map, learner.pair_iterations, learner.max_pairs, seed
    )
    steps = math.ceil(len(first) / learner.batch_size)
    total = steps * learner.epochs
    optimizer = keras.optimizers.AdamW(
        learning_rate=WarmupLinearDecay(learner.learning_rate, int(0.1 * total), total),
        weight_decay=0.01,
    )
    variables = pooled.trainable_variables
    optimizer.build(variables)
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec, spec, spec, tf.TensorSpec([None], tf.float32)])
    def step(ids_a, mask_a, ids_b, mask_b, goal):
        with tf.GradientTape() as tape:
            u = pooled({"input_ids": ids_a, "attention_mask": mask_a}, training=True)
            v = pooled({"input_ids": ids_b, "attention_mask": mask_b}, training=True)
            cosine = tf.reduce_sum(tf.math.l2_normalize(u, 1) * tf.math.l2_normalize(v, 1), 1)
            loss = tf.reduce_mean(tf.square(cosine - goal))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    def padded(rows):
        batch = pad_batch([cache.sequences[i] for i in rows], 8, tokenize.max_length)
        return batch["input_ids"], batch["attention_mask"]

    print(
        f"learner: contrastive tuning on {len(first)} pairs, {learner.epochs} epoch(s) of "
        f"{steps} steps",
        flush=True,
    )
    losses = []
    for epoch in range(learner.epochs):
        keras.utils.set_random_seed(seed * 1_000 + epoch)
        total_loss = 0.0
        for s in range(steps):
            rows = slice(s * learner.batch_size, (s + 1) * learner.batch_size)
            loss = step(*padded(first[rows]), *padded(second[rows]), target[rows])
            total_loss += float(loss)
        losses.append(total_loss / steps)
        print(f"learner: epoch {epoch + 1}/{learner.epochs}: pair loss {losses[-1]:.4f}")
    return losses


def fit_classifier(
    method: str,
    model,
    label_map: LabelMap,
    train_cache: TokenCache,
    learner: LearnerConfig,
    tokenize: TokenizeConfig,
    seed: int,
) -> dict[str, float]:
    """Fit `model` (built with `linear_head`) by the frozen or contrastive method, in place.
    Returns what it measured: the pair loss of each epoch (contrastive), the head's training
    metric."""
    if label_map.task == REGRESSION and method == CONTRASTIVE:
        raise BertclfError(
            "learner=contrastive: regression has no classes to pair; use learner=frozen or "
            "learner=finetune"
        )
    keras.utils.set_random_seed(seed)
    pooled = pooled_encoder(model)
    logs: dict[str, float] = {}
    if method == CONTRASTIVE:
        losses = tune_contrastively(pooled, train_cache, label_map, learner, tokenize, seed)
        logs["pair_loss"] = losses[-1]
    vectors = embed(pooled, train_cache, tokenize)
    kernel, bias = fit_linear_head(vectors, train_cache.labels, label_map, seed)
    model.get_layer("logits").set_weights([kernel, bias])
    return logs


@dataclasses.dataclass
class Learned:
    """What `learn` made: the model, the encoder's config, the head the model was built with,
    the method and why, and what the method measured."""

    model: keras.Model
    encoder_config: dict
    head: HeadConfig
    method: str
    reason: str
    logs: dict[str, float]


def learn(
    pretrained,
    label_map: LabelMap,
    train_cache: TokenCache,
    val_cache: TokenCache,
    train,
    head: HeadConfig,
    tokenize: TokenizeConfig,
    learner: LearnerConfig,
    seed: int,
    **finetune_options,
) -> Learned:
    """Choose the method (`choose`, said in one line) and fit the classifier by it. Shared by
    the `train` stage and the cross-validation folds. `finetune_options` (callbacks,
    checkpoint, monitor) go to `training.train_classifier`."""
    import json

    from bertclf.distribution import configure
    from bertclf.layout import ENCODER_CONFIG
    from bertclf.model import build_classifier, family_of
    from bertclf.training import train_classifier, training_of, training_policy

    method, reason = choose(learner, label_map, train_cache.pair_separator_id is not None)
    print(f"learner: {method} ({reason})", flush=True)
    if method == FINETUNE:
        model, encoder_config = train_classifier(
            pretrained,
            label_map,
            train_cache,
            val_cache,
            train,
            head,
            tokenize,
            seed,
            **finetune_options,
        )
        return Learned(model, encoder_config, head, method, reason, {})
    head = linear_head(head)
    configure("one_device" if train.distribution == "auto" else train.distribution, train.threads)
    encoder_config = json.loads((pretrained / ENCODER_CONFIG).read_text())
    family_of(encoder_config).check_window(encoder_config, tokenize.max_length)
    keras.mixed_precision.set_global_policy(training_policy(train.precision))
    try:
        model = build_classifier(
            encoder_config,
            head,
            len(label_map.classes),
            pretrained,
            output_bias=training_of(label_map).output_bias(label_map),
            pair_separator_id=train_cache.pair_separator_id,
        )
        logs = fit_classifier(method, model, label_map, train_cache, learner, tokenize, seed)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return Learned(model, encoder_config, head, method, reason, logs)


def log_fitted(live, learned: Learned, label_map: LabelMap, caches: dict, train, tokenize):
    """Log a fitted (not fine-tuned) model's figures to DVCLive as one step, under the names
    its Keras callback gives an epoch's (`train/loss`, `eval/accuracy`...; `caches` maps those
    prefixes to splits), with what the method measured (`train/pair_loss`). Returns them."""
    logs = fitted_logs(learned.model, label_map, caches, train, tokenize)
    logs.update({f"train/{name}": value for name, value in learned.logs.items()})
    for name, value in logs.items():
        live.log_metric(name, value)
    return logs


def fitted_logs(model, label_map: LabelMap, caches: dict[str, TokenCache], train, tokenize):
    """The fitted model's loss and task metric on each split, named as DVCLive's Keras callback
    names an epoch's (`train/loss`, `eval/accuracy`...), for the methods that have no epochs:
    `caches` maps those prefixes to splits."""
    from bertclf.training import compile_for_training

    compile_for_training(model, train, 1, label_map)
    logs = {}
    for prefix, cache in caches.items():
        data = BucketedSequence(cache.sequences, cache.labels, train.batch_size, tokenize)
        values = model.evaluate(data.dataset(), steps=len(data), verbose=0, return_dict=True)
        logs.update({f"{prefix}/{name}": float(value) for name, value in values.items()})
    return logs
