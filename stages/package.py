"""Bundle the trained model, tokenizer, label map, a model card and a checksum manifest."""

from pathlib import Path

from bertclf.config import load_params
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, read_json, sha256_file
from bertclf.model_card import model_card
from bertclf.package import copy_files, write_manifest
from bertclf.tokenization import TOKENIZER_FILE

TRAINED = Path("models/trained")
PRETRAINED = Path("models/pretrained")
LABELS = Path("models/labels.json")
PREPARED = Path("data/prepared")
METRICS = "reports/metrics.json"
OUT = Path("models/package")
MODEL_PARAMS = ("data", "model", "head", "train", "tokenize", "seed")


@exits_cleanly
def main() -> None:
    # the sections that define the model (as listed for this stage in dvc.yaml)
    params = {key: load_params()[key] for key in MODEL_PARAMS}
    data_hashes = {p.name: sha256_file(p) for p in sorted(PREPARED.glob("*.parquet"))}
    card = model_card(
        params, read_json(METRICS), read_json(PRETRAINED / "source.json"), data_hashes
    )

    with atomic_path(OUT) as tmp:
        tmp.mkdir()
        copy_files(
            [*TRAINED.iterdir(), LABELS, PRETRAINED / TOKENIZER_FILE, PRETRAINED / "vocab.txt"], tmp
        )
        (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        write_manifest(tmp)
    print(f"package: wrote {OUT}/")


if __name__ == "__main__":
    main()
