"""The learners (src/bertclf/learners.py): auto's choice, the fitted head as the model's own
Dense layer, SetFit's pairs, and the contrastive method through the real `dvc` on the shared
tiny build."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import TINY, read_json, restore, run, section, stages_run

from bertclf.config import HeadConfig
from bertclf.errors import BertclfError
from bertclf.labels import LabelMap
from bertclf.tokenization import TokenCache

ENCODER = {"model_type": "bert", "vocab_size": 120, "hidden_size": 16, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 32}  # fmt: skip


def learner(**values):
    return section("learner", **values)


def test_auto_contrastive_for_few_texts_a_class_finetune_otherwise():
    from bertclf.learners import choose

    few = LabelMap(("a", "b", "c"), (8, 9, 64))
    assert choose(learner(method="auto"), few, pairs=False) == (
        "contrastive",
        "auto: the smallest class has 8 training texts, at most "
        "learner.auto_max_texts_per_class=64",
    )
    many = LabelMap(("a", "b"), (65, 2000))
    assert choose(learner(method="auto"), many, pairs=False)[0] == "finetune"
    assert choose(learner(method="auto"), few, pairs=True) == (
        "finetune",
        "auto: text pairs are fine-tuned",
    )
    multi = LabelMap(("a", "b"), (3, 4), "multi_label", 5)
    assert choose(learner(method="auto"), multi, pairs=False)[0] == "finetune"
    assert choose(learner(method="frozen"), many, pairs=True) == (
        "frozen",
        "learner.method=frozen",
    )


def separable(n: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(size=(classes, 5)) * 3
    return centres[labels] + rng.normal(size=(n, 5)) + 40.0, labels  # far off the origin


@pytest.mark.parametrize("classes", [2, 3])
def test_the_fitted_head_on_raw_vectors_is_scikit_learns_model_on_standardised_ones(classes):
    """The standardisation folded into the Dense layer: the same probabilities."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bertclf.learners import fit_linear_head

    x, y = separable(30, classes)
    label_map = LabelMap(tuple("abc"[:classes]), tuple(np.bincount(y)))
    kernel, bias = fit_linear_head(x, y, label_map, seed=0)
    logits = x @ kernel + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    expected = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=np.logspace(-3, 2, 11),
            l1_ratios=(0.0,),
            cv=5,
            scoring="neg_log_loss",
            max_iter=2000,
            use_legacy_attributes=False,
        ),  # fmt: skip
    ).fit(x, y)
    np.testing.assert_allclose(probabilities, expected.predict_proba(x), atol=1e-4)


def test_multi_label_and_regression_heads():
    from bertclf.learners import fit_linear_head

    x, y = separable(40, 2)
    multi_hot = np.stack([y, 1 - y, np.ones_like(y)], axis=1)  # the third label on every text
    label_map = LabelMap(("a", "b", "c"), (20, 20, 40), "multi_label", 40)
    kernel, bias = fit_linear_head(x, multi_hot, label_map, seed=0)
    logits = x @ kernel + bias
    assert ((logits[:, :2] > 0) == multi_hot[:, :2].astype(bool)).all()
    np.testing.assert_array_equal(kernel[:, 2], 0)  # a constant label keeps its prior
    assert bias[2] == pytest.approx(label_map.prior_logits()[2])

    scores = x[:, 0] * 0.5 - x[:, 1]
    regression = LabelMap(("score",), (40,), "regression", 40, {"mean": 0.0})
    kernel, bias = fit_linear_head(x, scores, regression, seed=0)
    np.testing.assert_allclose(x @ kernel[:, 0] + bias[0], scores, atol=0.05)


def test_frozen_fits_the_models_own_logits_layer_on_its_mean_pooled_vectors():
    import keras

    from bertclf.learners import embed, fit_classifier, linear_head, pooled_encoder
    from bertclf.model import build_classifier

    keras.utils.set_random_seed(0)
    head = linear_head(section("head"))
    assert head.pooling == "mean" and head.hidden_sizes == []
    model = build_classifier(ENCODER, head, 3)
    rng = np.random.default_rng(0)
    labels = np.arange(24) % 3
    # each class's texts draw their tokens from its own part of the vocabulary
    sequences = [
        np.array([101, *rng.integers(3 + 30 * c, 33 + 30 * c, rng.integers(3, 20)), 102])
        for c in labels
    ]
    cache = TokenCache(np.arange(24), sequences, labels)
    tokenize = section("tokenize")
    before = model.get_layer("encoder").get_weights()
    logs = fit_classifier(
        "frozen", model, LabelMap(("a", "b", "c"), (8, 8, 8)), cache, learner(), tokenize, 0
    )
    assert logs == {}
    for old, new in zip(before, model.get_layer("encoder").get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)  # frozen: the encoder as it was
    vectors = embed(pooled_encoder(model), cache, tokenize)
    kernel, bias = model.get_layer("logits").get_weights()
    from bertclf.prediction import predict_logits

    logits = predict_logits(model, sequences, 8, tokenize)
    np.testing.assert_allclose(logits, vectors @ kernel + bias, rtol=1e-4, atol=1e-4)
    assert (logits.argmax(1) == labels).mean() == 1.0  # separable by their tokens

    stats = fit_classifier(
        "contrastive",
        model,
        LabelMap(("a", "b", "c"), (8, 8, 8)),
        cache,
        learner(pair_iterations=2, batch_size=8),
        tokenize,
        0,
    )
    assert np.isfinite(stats["pair_loss"])
    changed = [
        not np.array_equal(old, new)
        for old, new in zip(before, model.get_layer("encoder").get_weights(), strict=True)
    ]
    assert any(changed)  # contrastive: the encoder itself was tuned


def test_pairs_are_setfits_and_a_budget_says_what_it_cut(capsys):
    from bertclf.learners import draw_pairs

    labels = np.array([0, 0, 1, 1, 1, 2, 2])
    label_map = LabelMap(("a", "b", "c"), (2, 3, 2))
    first, second, target = draw_pairs(labels, label_map, 3, 10_000, seed=0)
    assert len(first) == 2 * 3 * len(labels)
    assert (first != second).all()
    same = labels[first] == labels[second]
    np.testing.assert_array_equal(target, same.astype(np.float32))
    assert target.mean() == 0.5
    assert capsys.readouterr().out == ""

    first, _, _ = draw_pairs(labels, label_map, 3, 10, seed=0)
    assert len(first) == 10
    assert capsys.readouterr().out == "learner: drew 10 of 42 pairs (learner.max_pairs=10)\n"

    lonely = LabelMap(("a", "b", "c"), (2, 4, 1))
    with pytest.raises(BertclfError) as caught:
        draw_pairs(np.array([0, 0, 1, 1, 1, 1, 2]), lonely, 3, 100, seed=0)
    assert str(caught.value) == (
        "learner=contrastive: class 'c' has 1 training text(s); a positive pair needs 2 "
        "(add texts of it, or use learner=frozen)"
    )

    sets = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    multi = LabelMap(("a", "b"), (2, 2), "multi_label", 4)
    first, second, target = draw_pairs(sets, multi, 2, 100, seed=0)
    for i, j, t in zip(first, second, target, strict=True):
        a, b = sets[i].astype(bool), sets[j].astype(bool)
        assert t == pytest.approx((a & b).sum() / (a | b).sum() if (a | b).any() else 1.0)


def test_a_head_with_hidden_layers_is_refused_in_one_line():
    from bertclf.learners import linear_head

    with pytest.raises(BertclfError) as caught:
        linear_head(HeadConfig(pooling="pooler", hidden_sizes=[50], dropout=0.2))
    assert str(caught.value) == (
        "learner: head.hidden_sizes=[50]: the frozen and contrastive learners fit a linear "
        "head; use head=cls or head=mean, or learner=finetune"
    )


@pytest.mark.e2e
def test_contrastive_experiment_reruns_training_and_ships_the_same_package(dag_repo):
    """`dvc exp run -S learner=contrastive` on the shared build: training and what follows it
    re-run, not the data stages; the model is encoder, mean pooling and the fitted Dense; the
    package (checked against TensorFlow by its own stage) predicts from the CLI."""
    try:
        before = read_json(dag_repo, "reports/train_time.json")
        assert before["learner"] == "finetune"  # the default data: auto fine-tunes
        assert before["learner_reason"].startswith("auto: the smallest class has")
        overrides = [*TINY, "learner=contrastive", "learner.max_pairs=64"]
        out = run(["dvc", "exp", "run", *[f"-S{o}" for o in overrides]], dag_repo)
        ran = stages_run(out.stdout)
        assert {"train", "evaluate", "package"} <= ran, out.stdout
        assert not {"prepare", "tokenize", "pretrained", "labels"} & ran, out.stdout
        assert "learner: contrastive (learner.method=contrastive)" in out.stdout
        assert "learner: drew 64 of " in out.stdout
        timing = read_json(dag_repo, "reports/train_time.json")
        assert timing["learner"] == "contrastive"
        spec = json.loads((dag_repo / "models/trained/model.json").read_text())
        assert spec["head"]["pooling"] == "mean" and spec["head"]["hidden_sizes"] == []
        logged = read_json(dag_repo, "reports/train/metrics.json")
        assert set(logged) == {"step", "train", "eval"}
        assert {"pair_loss", "loss", "accuracy"} == set(logged["train"])
        assert {"loss", "accuracy"} == set(logged["eval"])
        assert (dag_repo / "reports/training_curves.png").is_file()
        assert "test" in read_json(dag_repo, "reports/metrics.json")
        card = (dag_repo / "models/package/MODEL_CARD.md").read_text()
        assert "tuned contrastively on pairs of training texts (SetFit's recipe)" in card

        test = pd.read_parquet(dag_repo / "data/prepared/test.parquet").head(5)
        test[["text"]].to_csv(dag_repo / "five.csv", index=False)
        args = ["--model", "models/package", "--input", "five.csv", "--output", "five_out.csv"]
        run(["bertclf", "predict", *args], dag_repo)
        answers = pd.read_csv(dag_repo / "five_out.csv")
        assert len(answers) == 5
        classes = json.loads((dag_repo / "models/labels.json").read_text())["classes"]
        assert set(answers["label"]) <= set(classes)
    finally:
        (dag_repo / "five.csv").unlink(missing_ok=True)
        (dag_repo / "five_out.csv").unlink(missing_ok=True)
        restore(dag_repo)
