"""The encoder (copied once into models/pretrained/) and the classifier built on it.

The encoder is a KerasHub backbone on Keras 3 (TensorFlow backend) of one of `FAMILIES`, named
by `config.json`'s `model_type` and read from a directory in Hugging Face layout (`config.json`
plus `model.safetensors`) by KerasHub's converter for its family; the head is plain Keras.
"""

import contextlib
import importlib
import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from bertclf.choices import ENCODER_FAMILIES
from bertclf.config import HeadConfig, ModelConfig, TokenizeConfig
from bertclf.errors import BertclfError
from bertclf.files import read_json, sha256_file
from bertclf.layout import (
    ALBERT_SENTENCEPIECE,
    BACKBONE_WEIGHTS,
    ENCODER_CONFIG,
    MERGES,
    MODEL_SPEC,
    ROBERTA_VOCAB,
    SAFETENSORS,
    SENTENCEPIECE,
    TF_WEIGHTS,
    TOKENIZER,
    TOKENIZER_FILES,
    VOCAB,
    WEIGHTS,
)

ENCODER_FILES = (ENCODER_CONFIG, SAFETENSORS, TF_WEIGHTS, *TOKENIZER_FILES)


def source_directory(spec: str) -> Path | None:
    """`package:NAME` (a pip-installed model package), a local directory, or None (a hub name)."""
    if spec.startswith("package:"):
        name = spec.removeprefix("package:")
        found = importlib.util.find_spec(name)
        if found is None or not found.submodule_search_locations:
            raise BertclfError(f"model.pretrained: package '{name}' is not installed")
        return Path(next(iter(found.submodule_search_locations))) / "model"
    path = Path(spec)
    if path.is_dir():
        return path
    if spec.startswith((".", "/")) or path.suffix:
        raise BertclfError(f"model.pretrained: directory '{spec}' not found")
    return None


@contextlib.contextmanager
def _from_hub(name: str):
    """A hub that cannot be reached (no network) is one line, not a traceback."""
    try:
        yield
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BertclfError(
            f"model.pretrained: cannot load '{name}' from the model hub ({reason}); "
            "give a local directory or an installed package (package:NAME) instead"
        ) from None


def _download(name: str) -> Path:
    """The encoder's files from the Hugging Face hub (`hf://NAME` or `NAME`), where reachable."""
    from huggingface_hub import snapshot_download

    with _from_hub(name):
        return Path(
            snapshot_download(name.removeprefix("hf://"), allow_patterns=list(ENCODER_FILES))
        )


@dataclass(frozen=True)
class Family:
    """What differs between encoder families: KerasHub's backbone and converter, and the
    checkpoint's and the backbone's shapes."""

    model_type: str  # config.json's
    backbone: str  # the KerasHub class
    key_prefix: str  # what a *ForMaskedLM save puts before a bare *Model save's weight names
    pooler: bool  # a trained pooler layer (head.pooling=pooler)
    segments: bool  # segment (token type) embeddings: a pair's second text gets segment 1
    position_offset: int = 0  # positions the family reserves before the first token's
    # the tokenizer's files when a checkpoint ships no tokenizer.json
    vocabulary_files: tuple[str, ...] = (VOCAB,)
    # the package's SavedModel tokenizes raw text in its graph (`export`), with token ids equal
    # to the Hugging Face tokenizer's; else the package takes token ids only
    raw_text: bool = True
    # the one token type's embedding, which the Hugging Face model adds to every token and
    # KerasHub's converter leaves out: folded into the position embeddings here
    fold_token_type: bool = False

    def check_window(self, encoder_config: dict, max_length: int) -> None:
        """Refuse a window longer than the encoder's position table holds."""
        longest = encoder_config.get("max_position_embeddings", 512) - self.position_offset
        if max_length > longest:
            raise BertclfError(
                f"tokenize.max_length={max_length}: a {self.model_type} encoder of "
                f"max_position_embeddings {longest + self.position_offset} takes at most "
                f"{longest} tokens"
            )


FAMILIES = {
    family.model_type: family
    for family in (
        Family("bert", "BertBackbone", "bert.", pooler=True, segments=True),
        Family("distilbert", "DistilBertBackbone", "distilbert.", pooler=False, segments=False),
        # byte-level BPE: KerasHub's in-graph BytePairTokenizer drops a text's rest after a NUL
        # and a lone "\u096c" (its own space marker), so no raw-text SavedModel (docs/encoders.md)
        Family(
            "roberta",
            "RobertaBackbone",
            "roberta.",
            pooler=False,  # KerasHub's RoBERTa has none (the Hugging Face pooler is untrained)
            segments=False,
            position_offset=2,
            vocabulary_files=(ROBERTA_VOCAB, MERGES),
            raw_text=False,
            fold_token_type=True,
        ),
        # SentencePiece (unigram): tensorflow-text's in-graph SentencePiece parts from the
        # Hugging Face tokenizer on trailing whitespace, typed special tokens and controls
        Family(
            "xlm-roberta",
            "XLMRobertaBackbone",
            "roberta.",
            pooler=False,
            segments=False,
            position_offset=2,
            vocabulary_files=(SENTENCEPIECE,),
            raw_text=False,
        ),
        # SentencePiece after lowercasing and accent stripping, BERT's [CLS] and [SEP] and two
        # segments; one set of layer weights shared by every layer (`num_hidden_groups` 1)
        Family(
            "albert",
            "AlbertBackbone",
            "albert.",
            pooler=True,
            segments=True,
            vocabulary_files=(ALBERT_SENTENCEPIECE,),
            raw_text=False,
        ),
    )
}


assert tuple(FAMILIES) == ENCODER_FAMILIES, "choices.ENCODER_FAMILIES names FAMILIES' keys"


def family_of(encoder_config: dict, where: Path | str = ENCODER_CONFIG) -> Family:
    """The encoder's family, by config.json's `model_type` (`where` names the file)."""
    model_type = encoder_config.get("model_type", "bert")  # BERT's first configs name none
    if model_type not in FAMILIES:
        raise BertclfError(
            f"{where}: model_type {model_type!r} is not supported; supported: {', '.join(FAMILIES)}"
        )
    return FAMILIES[model_type]


def _converter(family: Family):
    """KerasHub's converter of Hugging Face checkpoints of the family (its
    `convert_backbone_config` and `convert_weights`)."""
    module = family.model_type.replace("-", "_")
    return importlib.import_module(f"keras_hub.src.utils.transformers.convert_{module}")


def backbone_arguments(encoder_config: dict) -> dict:
    """The backbone's arguments from a Hugging Face config.json: KerasHub's converter's, with
    BERT's dropout and segment count read where the converter leaves its defaults. KerasHub's
    BERT has one dropout rate for hidden states and attention: the hidden one."""
    family = family_of(encoder_config)
    try:
        # transformers' default for both families where a config.json leaves it out
        defaults = {"max_position_embeddings": 512}
        arguments = _converter(family).convert_backbone_config({**defaults, **encoder_config})
    except KeyError as error:
        raise BertclfError(
            f"{ENCODER_CONFIG}: lacks {error} (a {family.model_type} encoder's)"
        ) from None
    if family.model_type == "bert":
        arguments["dropout"] = encoder_config.get("hidden_dropout_prob", 0.1)
        arguments["num_segments"] = encoder_config.get("type_vocab_size", 2)
    return arguments


def random_encoder_config(cfg: ModelConfig, vocab_size: int) -> dict:
    """A Hugging Face BERT config.json for a randomly initialised encoder."""
    return {
        "model_type": "bert",
        "vocab_size": vocab_size,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        **vars(cfg.random_init),
    }


def _write_tokenizer_json(out_dir: Path, family: Family) -> None:
    """A tokenizer.json from the family's vocabulary files, for encoders that ship only those:
    BERT's WordPiece rules (`vocab.txt`), RoBERTa's byte-level BPE (`vocab.json` and
    `merges.txt`), or XLM-RoBERTa's or ALBERT's SentencePiece model; RoBERTa's and
    XLM-RoBERTa's pair template is `<s> A </s></s> B </s>`."""
    options = {}
    if (out_dir / "tokenizer_config.json").is_file():
        options = json.loads((out_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    if family.vocabulary_files == (VOCAB,):
        from tokenizers import BertWordPieceTokenizer

        lowercase = bool(options.get("do_lower_case", True))
        tokenizer = BertWordPieceTokenizer(
            str(out_dir / VOCAB), lowercase=lowercase, strip_accents=lowercase or None
        )
    elif family.vocabulary_files == (SENTENCEPIECE,):
        tokenizer = _xlm_roberta_tokenizer(out_dir / SENTENCEPIECE)
    elif family.vocabulary_files == (ALBERT_SENTENCEPIECE,):
        tokenizer = _albert_tokenizer(out_dir / ALBERT_SENTENCEPIECE, options)
    else:
        from tokenizers import ByteLevelBPETokenizer
        from tokenizers.processors import RobertaProcessing

        prefix_space = bool(options.get("add_prefix_space", False))
        tokenizer = ByteLevelBPETokenizer(
            str(out_dir / ROBERTA_VOCAB),
            str(out_dir / MERGES),
            add_prefix_space=prefix_space,
            trim_offsets=True,
        )
        special = [tokenizer.token_to_id(token) for token in ("</s>", "<s>")]
        if None in special:
            raise BertclfError(f"{out_dir / ROBERTA_VOCAB}: holds no <s> or no </s>")
        tokenizer.post_processor = RobertaProcessing(
            ("</s>", special[0]), ("<s>", special[1]), add_prefix_space=prefix_space
        )
    tokenizer.save(str(out_dir / TOKENIZER))


def _sentencepiece_model(path: Path):
    """A SentencePiece unigram model's protobuf (its pieces, scores and character map)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception:  # protobuf's DecodeError: not a SentencePiece model
        raise BertclfError(f"{path}: not a SentencePiece model") from None
    if proto.trainer_spec.model_type != proto.trainer_spec.UNIGRAM or len(proto.pieces) < 4:
        raise BertclfError(f"{path}: not a SentencePiece unigram model")
    return proto


def _sentencepiece_tokenizer(proto, vocabulary, unk_id: int, before: list, template: dict):
    """A Hugging Face unigram tokenizer as the hub's SentencePiece families hold it: the
    `before` normalizers, the model's own character map (`Precompiled`), runs of spaces made
    one, `▁` before each word, and the family's template."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.processors import TemplateProcessing

    tokenizer = Tokenizer(Unigram(vocabulary, unk_id=unk_id))
    charsmap = proto.normalizer_spec.precompiled_charsmap  # empty: the identity
    steps = [*before, *([normalizers.Precompiled(charsmap)] if charsmap else [])]
    tokenizer.normalizer = normalizers.Sequence([*steps, normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = TemplateProcessing(**template)
    return tokenizer


# XLM-RoBERTa's ids are fairseq's: four special tokens first, then the SentencePiece model's
# pieces from its fourth (its first three are <unk>, <s> and </s>), then <mask>
FAIRSEQ_SPECIAL = ("<s>", "<pad>", "</s>", "<unk>")


def _xlm_roberta_tokenizer(path: Path):
    """XLM-RoBERTa's tokenizer from its SentencePiece model: fairseq's ids, <s> A </s></s> B
    </s>."""
    proto = _sentencepiece_model(path)
    pieces = [(piece.piece, piece.score) for piece in proto.pieces]
    vocabulary = [(token, 0.0) for token in FAIRSEQ_SPECIAL] + pieces[3:] + [("<mask>", 0.0)]
    template = {
        "single": "<s> $A </s>",
        "pair": "<s> $A </s> </s> $B </s>",
        "special_tokens": [("<s>", 0), ("</s>", 2)],
    }
    return _sentencepiece_tokenizer(proto, vocabulary, FAIRSEQ_SPECIAL.index("<unk>"), [], template)


def _albert_tokenizer(path: Path, options: dict):
    """ALBERT's tokenizer from its SentencePiece model (the model's own ids): `` and '' made ",
    accents stripped and text lowercased unless tokenizer_config.json says otherwise, a piece
    of a digit and a comma scored down as ALBERT's tokenizer splits it, BERT's template."""
    from tokenizers import normalizers

    proto = _sentencepiece_model(path)

    def score(piece) -> float:  # "3," is "3" and ",": such pieces are never chosen
        digit_comma = len(piece.piece) > 1 and piece.piece[-1] == "," and piece.piece[-2].isdigit()
        return piece.score - 100 if digit_comma else piece.score

    vocabulary = [(piece.piece, score(piece)) for piece in proto.pieces]
    ids = {piece: i for i, (piece, _) in enumerate(vocabulary)}
    missing = [token for token in ("[CLS]", "[SEP]", "<unk>") if token not in ids]
    if missing:
        raise BertclfError(f"{path}: holds no {' or '.join(missing)} (ALBERT's special tokens)")
    before = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
    if not options.get("keep_accents", False):
        before += [normalizers.NFKD(), normalizers.StripAccents()]
    if options.get("do_lower_case", True):
        before.append(normalizers.Lowercase())
    template = {
        "single": "[CLS]:0 $A:0 [SEP]:0",
        "pair": "[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        "special_tokens": [("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    }
    return _sentencepiece_tokenizer(proto, vocabulary, ids["<unk>"], before, template)


def resolve_pretrained(cfg: ModelConfig, out_dir: Path, seed: int) -> dict:
    """Copy the encoder's files (config.json, weights, tokenizer) into out_dir, check that they
    load, and record their sha256. A random encoder (`model.random_init`) gets its config and
    its initial weights written instead, from `seed`."""
    source = source_directory(cfg.pretrained)
    if source is None:
        source = _download(cfg.pretrained)
        origin = f"hub: {cfg.pretrained}"
    else:
        origin = cfg.pretrained  # as configured: no path of this machine
    family = FAMILIES["bert"]  # a random encoder's (`random_encoder_config`)
    if cfg.random_init is None and (source / ENCODER_CONFIG).is_file():  # before any copying
        family = family_of(read_json(source / ENCODER_CONFIG), source / ENCODER_CONFIG)
    out_dir.mkdir(parents=True, exist_ok=True)
    copied = [n for n in ENCODER_FILES if (source / n).is_file()]
    if cfg.random_init is not None:
        copied = [n for n in copied if n in TOKENIZER_FILES]
    for name in copied:
        shutil.copy(source / name, out_dir / name)
    if family.raw_text and not (out_dir / VOCAB).is_file():  # the in-graph WordPiece's
        raise BertclfError(f"{source}: holds no {VOCAB} (the encoder's WordPiece vocabulary)")
    if not (out_dir / TOKENIZER).is_file():
        missing = [name for name in family.vocabulary_files if not (out_dir / name).is_file()]
        if missing:
            raise BertclfError(
                f"{source}: holds neither {TOKENIZER} nor {' and '.join(missing)} (the "
                f"{family.model_type} tokenizer's files)"
            )
        try:
            _write_tokenizer_json(out_dir, family)
        except BertclfError as error:  # named as the user's file, not the stage's copy
            raise BertclfError(str(error).replace(str(out_dir), str(source))) from None
    if family.segments:
        _check_typed_separator(out_dir, source)

    if cfg.random_init is not None:
        keras.utils.set_random_seed(seed)
        vocab_size = len((out_dir / VOCAB).read_text(encoding="utf-8").splitlines())
        config = random_encoder_config(cfg, vocab_size)
        (out_dir / ENCODER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        backbone = build_backbone(config)
        backbone.save_weights(str(out_dir / BACKBONE_WEIGHTS))
        origin = "random initialisation"
    elif not (out_dir / ENCODER_CONFIG).is_file():
        raise BertclfError(f"{source}: holds no {ENCODER_CONFIG}")
    elif not (out_dir / SAFETENSORS).is_file() and not (out_dir / TF_WEIGHTS).is_file():
        raise BertclfError(f"{source}: holds neither {SAFETENSORS} nor {TF_WEIGHTS}")
    else:
        backbone = load_backbone(out_dir)  # the check: the files make an encoder
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    return {
        "name": cfg.name,
        "family": family_of(read_json(out_dir / ENCODER_CONFIG)).model_type,
        "source": cfg.pretrained,
        "origin": origin,
        "parameters": int(backbone.count_params()),
        "sha256": {name: sha256_file(out_dir / name) for name in files},
    }


def _check_typed_separator(out_dir: Path, source: Path) -> None:
    """Refuse a tokenizer that reads a typed separator as the separator: a family with segments
    gives a pair's second text segment 1 after the first separator (`PairSegments`), so a text
    must not end early. WordPiece splits `[SEP]` into pieces, and ALBERT's lowercasing makes
    it no piece; a SentencePiece model read with its case kept may hold it whole."""
    from bertclf.tokenization import load_tokenizer, pair_separator

    tokenizer = load_tokenizer(out_dir)
    separator = pair_separator(tokenizer)
    typed = tokenizer.id_to_token(separator)
    if separator in tokenizer.encode(f"a {typed} b", add_special_tokens=False).ids:
        raise BertclfError(
            f"{source}: its tokenizer gives a text holding {typed!r} the separator's id, so a "
            "pair's second text would start early; this tokenizer cannot be used"
        )


def build_backbone(encoder_config: dict):
    """A randomly initialised backbone of the config's family and shape."""
    import keras_hub

    backbone = getattr(keras_hub.models, family_of(encoder_config).backbone)
    return backbone(**backbone_arguments(encoder_config), name="encoder")


def load_backbone(directory: Path, encoder_config: dict | None = None):
    """The encoder of a models/pretrained-like directory: `model.safetensors` (Hugging Face
    layout, read by KerasHub's converter), `backbone.weights.h5` (a random initialisation
    written by `resolve_pretrained`) or `tf_model.h5` (written by transformers' TFBertModel)."""
    if encoder_config is None:
        encoder_config = json.loads((directory / ENCODER_CONFIG).read_text(encoding="utf-8"))
    backbone = build_backbone(encoder_config)
    if (directory / SAFETENSORS).is_file():
        _convert_checkpoint(backbone, directory, encoder_config)
    elif (directory / BACKBONE_WEIGHTS).is_file():
        backbone.load_weights(str(directory / BACKBONE_WEIGHTS))
    elif (directory / TF_WEIGHTS).is_file() and family_of(encoder_config).model_type == "bert":
        load_tf_bert_weights(backbone, directory / TF_WEIGHTS)
    else:
        raise BertclfError(f"{directory}: holds no encoder weights")
    return backbone


def _convert_checkpoint(backbone, directory: Path, encoder_config: dict) -> None:
    """The checkpoint's weights into the backbone, by KerasHub's converter of its family.
    They are found by their Hugging Face names under the family's prefix (`*ForMaskedLM`
    saves) or without it (`*Model` and sentence-transformers saves): some converters name the
    weights with the prefix, and KerasHub's reader finds a name with a prefix added, never
    with one removed."""
    from keras_hub.src.utils.transformers.safetensor_utils import SafetensorLoader

    family = family_of(encoder_config)

    class CheckpointKeys(SafetensorLoader):
        def get_prefixed_key(self, hf_weight_key, dict_like):
            found = super().get_prefixed_key(hf_weight_key, dict_like)
            keys = dict_like.keys()  # a safetensors file has keys(), not `in`
            if found not in keys and hf_weight_key.startswith(family.key_prefix):
                bare = hf_weight_key.removeprefix(family.key_prefix)
                return super().get_prefixed_key(bare, dict_like)
            return found

    with CheckpointKeys(str(directory)) as loader:
        _converter(family).convert_weights(backbone, loader, encoder_config)
        if family.fold_token_type:
            token_type = loader.get_tensor(
                f"{family.key_prefix}embeddings.token_type_embeddings.weight"
            )
            positions = backbone.embeddings.position_embedding.position_embeddings
            positions.assign(positions + token_type[0])


def build_classifier(
    encoder_config: dict,
    head: HeadConfig,
    num_classes: int,
    encoder_weights: Path | None = None,
    output_bias=None,
    pair_separator_id: int | None = None,
):
    """Encoder plus head, Keras functional API. Inputs: input_ids, attention_mask (int32).
    The output is logits, one per class: a softmax (multi-label: a sigmoid per label) makes
    them probabilities (`prediction`), so the model is the same for every task.
    `encoder_weights` is a directory that `load_backbone` reads (else a random encoder);
    `output_bias` initialises the output layer's bias (else zeros). A pair model
    (`pair_separator_id`, the token ending the first text) gives the encoder segment ids 1
    after that token's first place (`pair_segments`), every other model all zeros; a family
    without segment embeddings (DistilBERT) reads a pair from its ids alone. `head.pooling`
    `pooler` needs a family with a pooler."""
    family = family_of(encoder_config)
    if head.pooling == "pooler" and not family.pooler:
        raise BertclfError(
            f"head.pooling=pooler: a {family.model_type} encoder has no pooler; use cls or mean"
        )
    if encoder_weights is not None:
        backbone = load_backbone(encoder_weights, encoder_config)
    else:
        backbone = build_backbone(encoder_config)
    if family.pooler and head.pooling != "pooler":
        backbone.get_layer("pooled_dense").trainable = False  # unused: no gradients flow to it
    input_ids = keras.Input(shape=(None,), dtype="int32", name="input_ids")
    attention_mask = keras.Input(shape=(None,), dtype="int32", name="attention_mask")
    inputs = {"token_ids": input_ids, "padding_mask": attention_mask}
    if family.segments:
        inputs["segment_ids"] = (
            keras.ops.zeros_like(input_ids)
            if pair_separator_id is None
            else PairSegments(pair_separator_id, name="pair_segments")(input_ids)
        )
    outputs = backbone(inputs)
    if head.pooling == "pooler":
        x = outputs["pooled_output"]
    else:
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        x = (
            sequence[:, 0, :]
            if head.pooling == "cls"
            else MeanPool(name="mean_pool")(sequence, attention_mask)
        )
    for i, size in enumerate(head.hidden_sizes):
        x = keras.layers.Dropout(head.dropout, name=f"head_dropout_{i}")(x)
        x = keras.layers.Dense(size, activation="relu", name=f"head_dense_{i}")(x)
    x = keras.layers.Dropout(head.dropout, name="head_dropout_out")(x)
    # float32 logits even under a mixed-precision policy; the losses take them from_logits
    logits = keras.layers.Dense(
        num_classes,
        bias_initializer="zeros"
        if output_bias is None
        else keras.initializers.Constant(output_bias),
        dtype="float32",
        name="logits",
    )(x)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    return keras.Model(inputs, logits, name="bertclf")


def logits_from_token_embeddings(model, pooling: str, token_embeddings, input_ids, attention_mask):
    """The classifier's logits (inference: no dropout) with the encoder's token embeddings
    given instead of looked up from `input_ids`: what token attributions differentiate. The
    rest is the classifier's own layers, in `build_classifier`'s order; the ids still give the
    positions and a pair model's segments. `tests/test_attributions.py` checks it against the
    model on the embeddings of the ids, for each pooling."""
    encoder = model.get_layer("encoder")  # the family's KerasHub backbone
    if hasattr(encoder, "segment_embedding"):  # BERT, ALBERT: token, position and segment
        if any(layer.name == "pair_segments" for layer in model.layers):
            segments = model.get_layer("pair_segments")(input_ids)
        else:
            segments = keras.ops.zeros_like(input_ids)
        x = encoder.embeddings_add(
            (
                token_embeddings,
                encoder.position_embedding(token_embeddings),
                encoder.segment_embedding(segments),
            )
        )
    else:  # DistilBERT, RoBERTa, XLM-RoBERTa: token and position embeddings
        x = token_embeddings + encoder.embeddings.position_embedding(token_embeddings)
    x = encoder.embeddings_layer_norm(x)
    if hasattr(encoder, "embeddings_projection"):  # ALBERT: embedding size to hidden size
        x = encoder.embeddings_projection(x)
    for layer in transformer_calls(encoder):
        x = layer(x, padding_mask=attention_mask, training=False)
    if pooling == "pooler":
        x = encoder.pooled_dense(x[:, 0, :])
    elif pooling == "cls":
        x = x[:, 0, :]
    else:
        x = model.get_layer("mean_pool")(x, attention_mask)
    dense = sorted(
        (layer for layer in model.layers if layer.name.startswith("head_dense_")),
        key=lambda layer: int(layer.name.rsplit("_", 1)[1]),
    )
    for layer in dense:
        x = layer(x)
    return model.get_layer("logits")(x)


def _grouped_layers(encoder) -> bool:
    """Whether the encoder's layers come in groups of shared weights (ALBERT)."""
    return bool(encoder.transformer_layers) and isinstance(encoder.transformer_layers[0], list)


def transformer_calls(encoder) -> list:
    """The encoder's transformer layers in the order its forward pass calls them: ALBERT's
    groups of shared layers, each called num_layers / num_groups times."""
    if _grouped_layers(encoder):
        calls = encoder.num_layers // encoder.num_groups
        return [
            layer for group in encoder.transformer_layers for _ in range(calls) for layer in group
        ]
    return list(encoder.transformer_layers)


def freeze_lower_layers(model, count: int) -> None:
    """Keep the encoder's embeddings and its `count` lowest transformer layers as the checkpoint
    has them (train.frozen_layers; 0 trains all). No gradient is computed below the lowest
    trained layer, so the backward pass shrinks with `count`."""
    if count == 0:
        return
    encoder = model.get_layer("encoder")
    if _grouped_layers(encoder):
        raise BertclfError(
            f"train.frozen_layers={count}: an albert encoder's layers share their weights; "
            "freeze none (0)"
        )
    layers = [layer for layer in encoder.layers if layer.name.startswith("transformer_layer_")]
    if count > len(layers):
        raise BertclfError(f"train.frozen_layers={count}: the encoder has {len(layers)} layers")
    for layer in encoder.layers:
        if layer.name.endswith("_embedding") or layer.name == "embeddings_layer_norm":
            layer.trainable = False
    for layer in layers[:count]:
        layer.trainable = False


class PairSegments(keras.layers.Layer):
    """The segment ids of [CLS] first [SEP] second [SEP]: 0 up to and with the first
    separator, 1 after it. A separator typed in a text is text to the tokenizers
    (`tokenization.load_tokenizer`), so the first one in the ids is the pair template's; the
    ids alone say where the second text starts, and no caller can pass ids and segments that
    disagree."""

    def __init__(self, separator_id: int, **kwargs):
        super().__init__(**kwargs)
        self.separator_id = separator_id

    def call(self, input_ids):
        separators = keras.ops.cast(keras.ops.equal(input_ids, self.separator_id), "int32")
        before = keras.ops.cumsum(separators, axis=1) - separators  # separators before each
        return keras.ops.minimum(before, 1)

    def get_config(self):
        return {**super().get_config(), "separator_id": self.separator_id}


class MeanPool(keras.layers.Layer):
    """Mean of the token vectors over the attention mask, summed in float32 (a bfloat16 sum
    over hundreds of tokens loses digits)."""

    def call(self, hidden, attention_mask):
        hidden = keras.ops.cast(hidden, "float32")
        weights = keras.ops.cast(attention_mask, "float32")[:, :, None]
        total = keras.ops.sum(hidden * weights, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)


def save_classifier(
    model,
    out_dir: Path,
    encoder_config: dict,
    head: HeadConfig,
    classes: list[str],
    tokenize: TokenizeConfig,
    pair_separator_id: int | None = None,
    training_precision: str = "float32",
    learner: str = "finetune",
) -> None:
    """model.weights.h5 (HDF5, no pickle) plus model.json, enough to rebuild the model (the
    task is labels.json's, stored there only), and the dtype policy it was trained in."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(out_dir / WEIGHTS))
    spec = {
        "encoder": encoder_config,
        "head": vars(head),
        "classes": classes,
        "tokenize": vars(tokenize),
        "pair_separator_id": pair_separator_id,  # None: one text per example
        "training_precision": training_precision,  # the weights are float32 either way
        "learner": learner,  # learner.method, as auto resolved it
    }
    (out_dir / MODEL_SPEC).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def load_classifier(model_dir: Path):
    """Rebuild the classifier from model.json and model.weights.h5. Returns (model, spec)."""
    spec = json.loads((model_dir / MODEL_SPEC).read_text(encoding="utf-8"))
    head = HeadConfig(**spec["head"])
    model = build_classifier(
        spec["encoder"],
        head,
        len(spec["classes"]),
        pair_separator_id=spec.get("pair_separator_id"),
    )
    if not (model_dir / WEIGHTS).is_file():
        raise BertclfError(f"{model_dir}: holds no {WEIGHTS}")
    model.load_weights(str(model_dir / WEIGHTS))
    return model, spec


# transformers' TFBertModel names (after ".../bert/") -> BertBackbone's layer and variable
_TF_BERT_NAMES = {
    "embeddings/word_embeddings/weight": "token_embedding/embeddings",
    "embeddings/position_embeddings/embeddings": "position_embedding/embeddings",
    "embeddings/token_type_embeddings/embeddings": "segment_embedding/embeddings",
    "embeddings/LayerNorm/gamma": "embeddings_layer_norm/gamma",
    "embeddings/LayerNorm/beta": "embeddings_layer_norm/beta",
    "pooler/dense/kernel": "pooled_dense/kernel",
    "pooler/dense/bias": "pooled_dense/bias",
}
_TF_BERT_LAYER_NAMES = {
    "attention/self/query": "self_attention_layer/query",
    "attention/self/key": "self_attention_layer/key",
    "attention/self/value": "self_attention_layer/value",
    "attention/output/dense": "self_attention_layer/attention_output",
    "attention/output/LayerNorm": "self_attention_layer_norm",
    "intermediate/dense": "feedforward_intermediate_dense",
    "output/dense": "feedforward_output_dense",
    "output/LayerNorm": "feedforward_layer_norm",
}


def _backbone_path(tf_name: str) -> str | None:
    """BertBackbone's variable path for a TFBertModel variable name, or None (not the encoder)."""
    if "/bert/" not in tf_name:
        return None
    name = tf_name.split("/bert/", 1)[1].removesuffix(":0")
    if name in _TF_BERT_NAMES:
        return _TF_BERT_NAMES[name]
    if not name.startswith("encoder/layer_._"):
        raise BertclfError(f"unknown TFBertModel variable {tf_name}")
    index, rest = name.removeprefix("encoder/layer_._").split("/", 1)
    layer, variable = rest.rsplit("/", 1)
    return f"transformer_layer_{index}/{_TF_BERT_LAYER_NAMES[layer]}/{variable}"


def load_tf_bert_weights(backbone, h5_path: Path) -> None:
    """Load an HDF5 weights file written by transformers' TFBertModel (tf_model.h5) into
    `backbone`. Attention kernels change shape only: (hidden, hidden) -> (hidden, heads, head
    size) and back for the output projection."""
    import h5py

    targets = {v.path.removeprefix(f"{backbone.name}/"): v for v in backbone.weights}
    loaded = set()
    with h5py.File(h5_path, "r") as weights:
        arrays = {}
        weights.visititems(
            lambda name, item: (
                arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
    for name, array in arrays.items():
        path = _backbone_path(name)
        if path is None or path not in targets:
            raise BertclfError(f"{h5_path}: variable {name} has no place in the encoder")
        target = targets[path]
        target.assign(np.reshape(array, target.shape))
        loaded.add(path)
    missing = sorted(set(targets) - loaded)
    if missing:
        raise BertclfError(f"{h5_path}: weights missing for {missing[:5]}")
