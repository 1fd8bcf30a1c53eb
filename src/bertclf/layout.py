"""The names of the files in a model directory (models/pretrained, models/trained) and in a
package (models/package), written once."""

# models/pretrained: the encoder (Hugging Face layout) and its tokenizer
ENCODER_CONFIG = "config.json"
SAFETENSORS = "model.safetensors"  # Hugging Face weights, read by KerasHub
TF_WEIGHTS = "tf_model.h5"  # weights written by transformers' TFBertModel (mapped on load)
BACKBONE_WEIGHTS = "backbone.weights.h5"  # a randomly initialised encoder (model.random_init)
SOURCE = "source.json"  # where the encoder came from
TOKENIZER = "tokenizer.json"
VOCAB = "vocab.txt"  # WordPiece (BERT, DistilBERT)
ROBERTA_VOCAB = "vocab.json"  # byte-level BPE (RoBERTa): the vocabulary and its merges
MERGES = "merges.txt"
SENTENCEPIECE = "sentencepiece.bpe.model"  # a SentencePiece model (XLM-RoBERTa)
ALBERT_SENTENCEPIECE = "spiece.model"  # ALBERT's
TOKENIZER_FILES = (
    TOKENIZER,
    VOCAB,
    ROBERTA_VOCAB,
    MERGES,
    SENTENCEPIECE,
    ALBERT_SENTENCEPIECE,
    "tokenizer_config.json",
    "special_tokens_map.json",
)

# models/trained, and a package
MODEL_SPEC = "model.json"  # encoder config, head, classes, tokenize, task
WEIGHTS = "model.weights.h5"  # models/trained (Keras 3)

# a package
SAVED_MODEL = "saved_model"
LABELS = "labels.json"
MODEL_CARD = "MODEL_CARD.md"
MODEL_CARD_JSON = "model_card.json"
MANIFEST = "manifest.json"
CALIBRATION = "calibration.json"  # the decision rule (multi-label: thresholds); format 3 on
OPENVINO_DIR = "openvino"  # the OpenVINO models (format 5 on)
CHECKS = "checks.json"  # in openvino/: each precision's check against TensorFlow, and the CPU
