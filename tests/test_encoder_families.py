"""Encoder families beyond BERT (DistilBERT, RoBERTa): the family read from config.json's
`model_type`, its checkpoint read by KerasHub's converter with the weight names prefixed or
bare, its tokenizer and pair template, its head rules, and one tiny build of the whole DAG per
family on a checkpoint written here (the hub is out of reach; docs/encoders.md has the check
of the wiring against transformers)."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import (
    MULTILINGUAL,
    TINY,
    TINY_FAMILIES,
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

# ids within every tiny vocabulary (RoBERTa's has 1,200 tokens), padded after 7 and 4 tokens
IDS = np.array([[101, 759, 208, 1010, 219, 224, 102, 0], [101, 203, 300, 102, 0, 0, 0, 0]])
MASK = (np.arange(8) < np.array([[7], [4]])).astype("int32")


def sequence_output(backbone) -> np.ndarray:
    inputs = {"token_ids": IDS.astype("int32"), "padding_mask": MASK}
    if "segment_ids" in backbone.input:
        inputs["segment_ids"] = np.zeros_like(MASK)
    outputs = backbone(inputs)
    return np.asarray(outputs["sequence_output"] if isinstance(outputs, dict) else outputs)


# the backbone KerasHub builds, and the checkpoint's name of its last layer's output norm
LAST_NORM = {
    "distilbert": ("DistilBertBackbone", "transformer.layer.1.output_layer_norm.weight"),
    "roberta": ("RobertaBackbone", "encoder.layer.1.output.LayerNorm.weight"),
    "xlm-roberta": ("XLMRobertaBackbone", "encoder.layer.1.output.LayerNorm.weight"),
    "albert": (
        "AlbertBackbone",
        "encoder.albert_layer_groups.0.albert_layers.0.full_layer_layer_norm.weight",
    ),
}
PREFIXES = {"distilbert": "distilbert.", "albert": "albert."}  # else "roberta."


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_prefixed_and_bare_checkpoints_load_the_same_weights(tmp_path, family):
    """A `*ForMaskedLM` save names its weights `<family>.…`, a `*Model` or sentence-transformers
    save without the prefix; both load, into the same encoder. RoBERTa's and XLM-RoBERTa's
    position tables lose their two reserved rows (`Family.position_offset`) and take in the
    one token type's embedding, which the Hugging Face model adds to every token (KerasHub's
    RoBERTa converter leaves it out: the reference check in docs/encoders.md found it)."""
    from safetensors.numpy import load_file

    from bertclf.model import load_backbone

    prefixed = write_tiny_checkpoint(tmp_path / "prefixed", family, prefixed=True)
    bare = write_tiny_checkpoint(tmp_path / "bare", family, prefixed=False)
    prefix = PREFIXES.get(family, "roberta.")
    assert all(k.startswith(prefix) for k in load_file(prefixed / "model.safetensors"))
    assert not any(k.startswith(prefix) for k in load_file(bare / "model.safetensors"))
    one, other = load_backbone(prefixed), load_backbone(bare)
    backbone, last_norm = LAST_NORM[family]
    assert type(one).__name__ == backbone
    np.testing.assert_array_equal(sequence_output(one), sequence_output(other))
    written = load_file(bare / "model.safetensors")
    np.testing.assert_array_equal(
        np.asarray(one.token_embedding.embeddings), written["embeddings.word_embeddings.weight"]
    )
    expected = written["embeddings.position_embeddings.weight"]
    if family in ("roberta", "xlm-roberta"):
        expected = expected[2:] + written["embeddings.token_type_embeddings.weight"][0]
    embeddings = one if family == "albert" else one.embeddings
    positions = embeddings.position_embedding.position_embeddings
    np.testing.assert_allclose(np.asarray(positions), expected, atol=1e-7)
    last = one.transformer_layers[-1]
    norm = (last[-1] if isinstance(last, list) else last)._feedforward_layer_norm.gamma
    np.testing.assert_array_equal(np.asarray(norm), written[last_norm])


def test_a_roberta_checkpoint_without_tokenizer_json_gets_its_byte_level_bpe(tmp_path):
    """From `vocab.json` and `merges.txt`, RoBERTa's template: <s> A </s> for a text,
    <s> A </s></s> B </s> for a pair, whose length counts four special tokens; typed special
    tokens are text. The attributions' windows follow the same template."""
    from bertclf.attributions import token_windows
    from bertclf.config import TokenizeConfig
    from bertclf.model import resolve_pretrained
    from bertclf.tokenization import encode_pairs, load_tokenizer

    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", "roberta", prefixed=False)
    assert not (checkpoint / "tokenizer.json").exists()
    source = resolve_pretrained(ModelConfig("x", str(checkpoint), None), tmp_path / "out", 0)
    assert source["family"] == "roberta"
    tokenizer = load_tokenizer(tmp_path / "out")
    start, end = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    assert (start, end, tokenizer.token_to_id("<pad>")) == (0, 2, 1)
    first = tokenizer.encode("Oil prices rose", add_special_tokens=False).ids
    second = tokenizer.encode("Stocks fell </s>", add_special_tokens=False).ids
    assert tokenizer.encode("Oil prices rose").ids == [start, *first, end]
    assert end not in second  # "</s>" typed in a text is text
    window = {"bucket_multiple": 8, "long_text": "head", "head_fraction": 0.25,
              "chunk_stride": 2, "chunk_pooling": "mean"}  # fmt: skip
    tokenize = TokenizeConfig(max_length=64, **window)
    encoded = encode_pairs(tokenizer, ["Oil prices rose"], ["Stocks fell </s>"], tokenize)
    assert encoded.sequences[0].tolist() == [start, *first, end, end, *second, end]
    assert encoded.lengths.tolist() == [len(first) + len(second) + 4]
    short = TokenizeConfig(max_length=len(first) + 4 + 2, **window)  # two of the second text
    cut = encode_pairs(tokenizer, ["Oil prices rose"], ["Stocks fell </s>"], short)
    assert len(cut.sequences[0]) == short.max_length
    windows = token_windows(tokenizer, "Oil prices rose", tokenize, "Stocks fell </s>")
    assert windows.ids[0].tolist() == encoded.sequences[0].tolist()
    specials = [i for i, index in enumerate(windows.token_of[0]) if index < 0]
    assert specials == [0, len(first) + 1, len(first) + 2, len(windows.ids[0]) - 1]
    assert [t["side"] for t in windows.tokens] == [0] * len(first) + [1] * len(second)
    assert "".join(t["token"] for t in windows.tokens if t["side"] == 0).replace(" ", "") == (
        "Oilpricesrose"
    )


def test_an_xlm_roberta_sentencepiece_model_gets_fairseqs_ids(tmp_path):
    """From `sentencepiece.bpe.model` alone, the Hugging Face tokenizer as XLM-RoBERTa's hub
    tokenizer.json holds it: on English, German, CJK and Devanagari texts its pieces are
    SentencePiece's own, and its ids fairseq's (the piece's id plus one; SentencePiece's
    <unk> is 3), with none unknown; <s> A </s></s> B </s> for a pair."""
    import sentencepiece

    from bertclf.model import resolve_pretrained
    from bertclf.tokenization import load_tokenizer

    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", "xlm-roberta", prefixed=False)
    assert not (checkpoint / "tokenizer.json").exists()
    source = resolve_pretrained(ModelConfig("x", str(checkpoint), None), tmp_path / "out", 0)
    assert source["family"] == "xlm-roberta"
    tokenizer = load_tokenizer(tmp_path / "out")
    pieces = sentencepiece.SentencePieceProcessor(
        model_file=str(checkpoint / "sentencepiece.bpe.model")
    )
    texts = [*MULTILINGUAL, "Oil prices rose 3.5 pct in Tokyo, traders said."]
    for text in texts:
        ours = tokenizer.encode(text, add_special_tokens=False)
        theirs = pieces.encode(text)
        assert ours.tokens == [pieces.id_to_piece(i) for i in theirs], text
        assert ours.ids == [3 if i == 0 else i + 1 for i in theirs], text
        assert 3 not in ours.ids, text  # the scripts are the model's: nothing unknown
    hindi = tokenizer.encode("भारत में चाय", add_special_tokens=False).tokens
    assert "".join(hindi).replace("▁", " ").strip() == "भारत में चाय"
    assert [tokenizer.token_to_id(t) for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert tokenizer.token_to_id("<mask>") == tokenizer.get_vocab_size() - 1
    first = tokenizer.encode("東京", add_special_tokens=False).ids
    second = tokenizer.encode("भारत", add_special_tokens=False).ids
    assert tokenizer.encode("東京", "भारत").ids == [0, *first, 2, 2, *second, 2]


def test_an_albert_sentencepiece_model_lowercases_and_strips_accents(tmp_path):
    """From `spiece.model` alone, ALBERT's Hugging Face tokenizer: `` and '' made ", accents
    stripped (NFKD) and text lowercased before SentencePiece, whose own ids and pieces it then
    gives; [CLS] A [SEP] B [SEP] with segments; a typed [SEP] is text (lowercased, it is no
    piece), and a cased tokenizer that reads it whole is refused. Layers that share their
    weights cannot be frozen one by one."""
    import unicodedata

    import sentencepiece

    from bertclf.model import build_classifier, freeze_lower_layers, resolve_pretrained
    from bertclf.tokenization import load_tokenizer

    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", "albert", prefixed=False)
    resolve_pretrained(ModelConfig("x", str(checkpoint), None), tmp_path / "out", 0)
    tokenizer = load_tokenizer(tmp_path / "out")
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(checkpoint / "spiece.model"))

    def albert_text(text: str) -> str:  # the Hugging Face ALBERT's, before SentencePiece
        text = text.replace("``", '"').replace("''", '"')
        text = unicodedata.normalize("NFKD", text)  # StripAccents drops every mark (M*)
        return "".join(c for c in text if not unicodedata.category(c).startswith("M")).lower()

    texts = ["Der Ölpreis stieg, sagte ``Müller''.", "CAFÉ Crème in Paris", *MULTILINGUAL[2:6]]
    for text in texts:
        ours = tokenizer.encode(text, add_special_tokens=False)
        theirs = pieces.encode(albert_text(text))
        assert ours.ids == theirs, text
        assert ours.tokens == [pieces.id_to_piece(i) for i in theirs], text
    assert "".join(tokenizer.encode("CAFÉ", add_special_tokens=False).tokens) == "▁cafe"
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    assert (tokenizer.token_to_id("<pad>"), cls, sep) == (0, 2, 3)
    pair = tokenizer.encode("oil [SEP] rose", "stocks")
    assert pair.ids.count(sep) == 2 and pair.ids[0] == cls
    assert pair.type_ids == [0] * pair.ids.index(sep) + [0] + [1] * (
        len(pair.ids) - pair.ids.index(sep) - 1
    )
    (checkpoint / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    with pytest.raises(BertclfError) as refused:  # "[SEP]" cased is a whole piece
        resolve_pretrained(ModelConfig("x", str(checkpoint), None), tmp_path / "cased", 0)
    assert str(refused.value) == (
        f"{checkpoint}: its tokenizer gives a text holding '[SEP]' the separator's id, so a "
        "pair's second text would start early; this tokenizer cannot be used"
    )
    (checkpoint / "spiece.model").write_bytes(b"not a model \x00\x01")  # named as the user's
    with pytest.raises(BertclfError) as refused:
        resolve_pretrained(ModelConfig("x", str(checkpoint), None), tmp_path / "bad", 0)
    assert str(refused.value) == f"{checkpoint / 'spiece.model'}: not a SentencePiece model"
    config = json.loads((checkpoint / "config.json").read_text())
    model = build_classifier(config, HeadConfig(pooling="pooler", hidden_sizes=[], dropout=0.1), 2)
    with pytest.raises(BertclfError) as refused:
        freeze_lower_layers(model, 1)
    assert str(refused.value) == (
        "train.frozen_layers=1: an albert encoder's layers share their weights; freeze none (0)"
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
        "bert, distilbert, roberta, xlm-roberta, albert"
    )


SMALL_CONFIGS = {
    "distilbert": {"model_type": "distilbert", "vocab_size": 120, "dim": 8, "n_layers": 2,
                   "n_heads": 2, "hidden_dim": 16, "max_position_embeddings": 64,
                   "dropout": 0.1},
    "roberta": {"model_type": "roberta", "vocab_size": 120, "hidden_size": 8,
                "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
                "max_position_embeddings": 66, "hidden_dropout_prob": 0.1},
}  # fmt: skip
SMALL_CONFIGS["xlm-roberta"] = {**SMALL_CONFIGS["roberta"], "model_type": "xlm-roberta"}
SMALL_CONFIGS["albert"] = {
    **SMALL_CONFIGS["roberta"],
    **{"model_type": "albert", "embedding_size": 4, "num_hidden_groups": 1, "inner_group_num": 1,
       "type_vocab_size": 2, "max_position_embeddings": 64, "attention_probs_dropout_prob": 0.1},
}  # fmt: skip


@pytest.mark.parametrize("family", TINY_FAMILIES)
@pytest.mark.parametrize("pair", [False, True])
def test_each_familys_pair_model_and_its_attribution_path(family, pair):
    """DistilBERT, RoBERTa and XLM-RoBERTa have no segment embeddings: a pair model gets no
    segment layer and reads its pair from the ids alone; ALBERT's, as BERT's, gives the second
    text segment 1. The attributions' embeddings-to-logits path is the model's (ALBERT's:
    the embedding projection and the shared layer called per layer)."""
    import keras

    from bertclf.model import build_classifier, logits_from_token_embeddings

    config = SMALL_CONFIGS[family]
    keras.utils.set_random_seed(0)
    head = HeadConfig(pooling="mean", hidden_sizes=[4], dropout=0.1)
    model = build_classifier(config, head, 3, pair_separator_id=102 if pair else None)
    segments = any(layer.name == "pair_segments" for layer in model.layers)
    assert segments is (pair and family == "albert")
    ids = np.random.default_rng(0).integers(1, 100, size=(3, 10)).astype("int32")
    ids[:, 4] = 102  # a pair's first text ends here
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    expected = model({"input_ids": ids, "attention_mask": mask}, training=False)
    embeddings = model.get_layer("encoder").token_embedding(ids)
    got = logits_from_token_embeddings(model, "mean", embeddings, ids, mask)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


# a build costs about 90 s: RoBERTa's is left to XLM-RoBERTa's, whose KerasHub backbone is a
# RobertaBackbone with the same package path (token ids only); RoBERTa's own parts (its
# tokenizer, pair template, token type fold) have their unit tests above, and
# benchmarks/family_packages.py builds it whole
DAG_FAMILIES = ("distilbert", "xlm-roberta", "albert")


@pytest.mark.e2e
@pytest.mark.parametrize("family", DAG_FAMILIES)
def test_the_dag_builds_packages_and_serves_each_family(tmp_path, family):
    """The whole DAG on a tiny checkpoint of each family (prefixed names, as the hub's
    `distilbert-base-uncased`, `xlm-roberta-base` and `albert-base-v2`): train,
    evaluate, report, package, predict and serve. A DistilBERT SavedModel tokenizes raw text in
    its graph, checked against the training path on the test split; the others take token ids
    only (no in-graph tokenizer gives equal ids), which the card and /v1/metadata say, and
    every front door tokenizes with tokenizer.json."""
    from bertclf import Classifier

    checkpoint = write_tiny_checkpoint(tmp_path / "checkpoint", family, prefixed=True)
    repo = copy_project(tmp_path / "project")
    overrides = [*TINY, f"model.pretrained={checkpoint}", "model.random_init=null"]
    build_repo(repo, [*overrides, f"model.name=tiny_{family}"], f"tiny {family}")
    spec = read_json(repo, "models/trained/model.json")
    assert spec["encoder"]["model_type"] == family
    assert read_json(repo, "models/pretrained/source.json")["family"] == family
    package = repo / "models/package"
    assert read_json(repo, "models/package/manifest.json")["format_version"] == 11
    raw_text = family == "distilbert"  # docs/encoders.md: why not the others
    assert read_json(repo, "models/package/model.json")["raw_text_serving"] is raw_text
    checks = read_json(repo, "reports/package.json")  # the test split and the stress texts
    assert checks["raw_text_serving"] is raw_text and checks["texts_with_other_ids"] == 0
    assert checks["token_ids_identical"] == (1.0 if raw_text else None)
    assert checks["max_probability_difference"] <= 1e-4
    check_explained_mistakes(repo)
    card = (package / "MODEL_CARD.md").read_text()
    assert family in card
    assert ("Raw-text serving is not offered" in card) is not raw_text
    import tensorflow as tf

    # the default signature takes raw text, or (Keras' default: the first endpoint) token ids
    signatures = tf.saved_model.load(str(package / "saved_model")).signatures
    inputs = set(signatures["serving_default"].structured_input_signature[1])
    assert inputs == ({"text"} if raw_text else {"input_ids", "attention_mask"})

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
        assert status == 200 and about["encoder_family"] == family
        assert about["raw_text_serving"] is raw_text
        status, answer = request(port, "POST", "/v1/predict", json.dumps({"texts": texts}).encode())
        assert status == 200
        got = [p["probabilities"] for p in answer["predictions"]]
        classes = classifier.classes_.tolist()
        np.testing.assert_allclose([[row[c] for c in classes] for row in got], expected, atol=1e-5)
    finally:
        stop_server(server)
