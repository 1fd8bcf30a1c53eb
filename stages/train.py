"""Fine-tune encoder plus head on the token cache; keep the best weights by validation loss."""

import json
from pathlib import Path

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path

PRETRAINED = Path("models/pretrained")
TOKENIZED = Path("data/tokenized")
LABELS = "models/labels.json"
OUT = Path("models/trained")
LIVE_DIR = "reports/train"


@exits_cleanly
def main() -> None:
    train = load_section("train")
    head = load_section("head")
    tokenize = load_section("tokenize")
    seed = load_section("seed")

    import tf_keras as keras  # TensorFlow loads here, after the params are validated
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from bertclf.labels import LabelMap
    from bertclf.model import build_classifier, save_classifier
    from bertclf.tokenization import read_token_cache
    from bertclf.training import BucketedSequence, compile_for_training, fit

    keras.utils.set_random_seed(seed)
    label_map = LabelMap.load(LABELS)
    train_data = BucketedSequence(
        *read_token_cache(TOKENIZED / "train.parquet"), train.batch_size, tokenize, seed=seed
    )
    val_data = BucketedSequence(
        *read_token_cache(TOKENIZED / "val.parquet"), train.batch_size, tokenize
    )
    encoder_config = json.loads((PRETRAINED / "config.json").read_text())
    model = build_classifier(encoder_config, head, len(label_map.classes), PRETRAINED)
    compile_for_training(model, train, steps_per_epoch=len(train_data))

    live = Live(LIVE_DIR, dvcyaml=None, save_dvc_exp=False)
    class_weight = label_map.class_weights() if train.class_weights else None
    fit(model, train_data, val_data, train, class_weight, [DVCLiveCallback(live=live)])

    with atomic_path(OUT) as tmp:
        save_classifier(model, tmp, encoder_config, head, list(label_map.classes), tokenize)
    print(f"train: saved {OUT}/")


if __name__ == "__main__":
    main()
