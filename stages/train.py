"""Fine-tune encoder plus head on the token cache; keep the best weights by validation loss."""

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

    from dvclive import Live  # TensorFlow loads from here on, after the params are validated
    from dvclive.keras import DVCLiveCallback

    from bertclf.labels import LabelMap
    from bertclf.model import save_classifier
    from bertclf.tokenization import read_token_cache
    from bertclf.training import train_classifier

    label_map = LabelMap.load(LABELS)
    live = Live(LIVE_DIR, dvcyaml=None, save_dvc_exp=False)
    model, encoder_config = train_classifier(
        PRETRAINED,
        label_map,
        read_token_cache(TOKENIZED / "train.parquet"),
        read_token_cache(TOKENIZED / "val.parquet"),
        train,
        head,
        tokenize,
        seed,
        callbacks=[DVCLiveCallback(live=live)],
    )

    with atomic_path(OUT) as tmp:
        save_classifier(model, tmp, encoder_config, head, list(label_map.classes), tokenize)
    print(f"train: saved {OUT}/")


if __name__ == "__main__":
    main()
