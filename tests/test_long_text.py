"""A model trained with chunks is evaluated and used with chunks: the strategy travels in the
package. Real `dvc exp run` on the tiny model's shared build."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from helpers import TINY, restore, run

from bertclf.batching import pad_batch
from bertclf.tokenization import encode

pytestmark = [pytest.mark.e2e, pytest.mark.retrains]
CHUNKS = ["tokenize.max_length=64", "tokenize.long_text=chunks", "tokenize.chunk_stride=16"]


def test_a_model_trained_with_chunks_predicts_with_chunks(dag_repo, tmp_path):
    import tensorflow as tf

    from bertclf import Classifier
    from bertclf.export import load_saved_model

    try:
        run(["dvc", "exp", "run", *[f"-S{o}" for o in [*TINY, *CHUNKS]]], dag_repo, timeout=900)
        report = json.loads((dag_repo / "reports/tokenize.json").read_text())
        assert report["test"]["sequences"] > report["test"]["texts"] == 1000
        metrics = json.loads((dag_repo / "reports/metrics.json").read_text())["test"]
        parts = metrics["by_length"]
        assert parts["long"]["n"] == report["test"]["long_texts"] > 0
        assert parts["fits"]["n"] + parts["long"]["n"] == 1000

        classifier = Classifier.load(dag_repo / "models/package")
        assert classifier.tokenize.long_text == "chunks"
        test = pd.read_parquet(dag_repo / "data/prepared/test.parquet")
        encoded = encode(classifier.tokenizer, test["text"].tolist(), classifier.tokenize)
        texts = test["text"][encoded.long(64)].head(8).tolist()
        # by hand: every window through the model (its logits), log-probabilities averaged per
        # text
        by_hand = []
        for text in texts:
            windows = encode(classifier.tokenizer, [text], classifier.tokenize).sequences
            assert len(windows) > 1
            z = np.stack(
                [classifier.model.predict_on_batch(pad_batch([w], 1, 64))[0] for w in windows]
            ).astype(np.float64)
            log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            mean = np.exp(log_p.mean(axis=0))
            by_hand.append(mean / mean.sum())
        predicted = classifier.predict_proba(texts)
        np.testing.assert_allclose(predicted, np.array(by_hand), atol=1e-5)
        # the TensorFlow runtime loads it too (its graph pools with LogSoftmax, an op the
        # allowlist lacked until format 10) and answers the same
        on_tensorflow = Classifier.load(dag_repo / "models/package", runtime="tensorflow")
        np.testing.assert_allclose(on_tensorflow.predict_proba(texts), predicted, atol=1e-5)
        # the SavedModel cuts and pools in its graph the same way, checked by the package stage
        # on every test text and here on the long ones
        parity = json.loads((dag_repo / "reports/package.json").read_text())
        assert parity["token_ids_identical"] == 1.0
        assert parity["max_probability_difference"] <= 1e-4
        serve = load_saved_model(dag_repo / "models/package/saved_model")
        exported = serve(text=tf.constant(texts))["probabilities"].numpy()
        np.testing.assert_allclose(exported, predicted, atol=1e-4)
        # attributions follow the chunks: every token of the text, its windows pooled into
        # one answer, and they add up to that answer's change
        for text, row, result in zip(texts[:2], predicted, classifier.explain(texts[:2], steps=64),
                                     strict=False):  # fmt: skip
            whole = classifier.tokenizer.encode(text, add_special_tokens=False)
            assert [(t["start"], t["end"]) for t in result["tokens"]] == whole.offsets
            (answer,) = result["explained"]
            assert answer["value"] == pytest.approx(row.max(), abs=1e-5)
            change = answer["value"] - answer["baseline_value"]
            assert sum(answer["attributions"]) == pytest.approx(change, rel=0.05, abs=1e-5)
        # reading the same texts by their head gives other numbers: the strategy matters
        head = dataclasses.replace(classifier.tokenize, long_text="head")
        classifier.preprocessor = dataclasses.replace(classifier.preprocessor, tokenize=head)
        assert np.abs(classifier.predict_proba(texts) - predicted).max() > 1e-4

        out = tmp_path / "metrics.json"
        package, prepared = "models/package", "data/prepared/test.parquet"
        run(
            ["bertclf", "evaluate", "--model", package, "--input", prepared, "--output", str(out)],
            dag_repo,
        )
        scored = json.loads(out.read_text())
        assert scored["log_loss"] == pytest.approx(metrics["log_loss"], abs=1e-4)
        assert scored["by_length"]["long"]["n"] == parts["long"]["n"]
    finally:
        restore(dag_repo)
