"""The names of the files in a model directory (models/pretrained, models/trained) and in a
package (models/package), written once."""

# models/pretrained: the encoder (Hugging Face layout) and its tokenizer
ENCODER_CONFIG = "config.json"
SOURCE = "source.json"  # where the encoder came from
TOKENIZER = "tokenizer.json"
VOCAB = "vocab.txt"
TOKENIZER_FILES = (TOKENIZER, VOCAB, "tokenizer_config.json", "special_tokens_map.json")

# models/trained, and a package
MODEL_SPEC = "model.json"  # encoder config, head, classes, tokenize, task
WEIGHTS = "weights.h5"  # models/trained, and packages of format 1

# a package
SAVED_MODEL = "saved_model"
LABELS = "labels.json"
MODEL_CARD = "MODEL_CARD.md"
MODEL_CARD_JSON = "model_card.json"
MANIFEST = "manifest.json"
CALIBRATION = "calibration.json"  # the decision rule (multi-label: thresholds); format 3 on
