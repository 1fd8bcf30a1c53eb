"""Bundle the trained model as a SavedModel (raw text in; token ids in for a family without an
in-graph tokenizer, `Family.raw_text`) and OpenVINO models (package.precisions), with the
model's spec, tokenizer, label map, a model card and a checksum manifest; check the SavedModel
and each OpenVINO precision against the training path on the test split."""

import pandas as pd

from bertclf.config import load_params, load_section
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, read_json, sha256_file, write_json
from bertclf.labels import LabelMap
from bertclf.layout import MODEL_CARD, MODEL_CARD_JSON, MODEL_SPEC, SOURCE, TOKENIZER, VOCAB
from bertclf.model import family_of
from bertclf.model_card import model_card, model_card_fields
from bertclf.openvino_build import describe_check
from bertclf.package import copy_files, write_manifest
from bertclf.paths import (
    CALIBRATION,
    LABELS,
    METRICS,
    PACKAGE,
    PACKAGE_REPORT,
    PREPARED,
    PRETRAINED,
    TOKENIZED,
    TRAINED,
)
from bertclf.small_data import few_texts
from bertclf.tasks import task_of
from bertclf.tokenization import load_tokenizer

MODEL_PARAMS = ("data", "model", "head", "train", "tokenize", "seed", "task")


@exits_cleanly
def main() -> None:
    # the sections that define the model (as listed for this stage in dvc.yaml)
    params = {key: load_params()[key] for key in MODEL_PARAMS}
    package = load_section("package")
    clean = load_section("data").clean
    batch_size = load_section("evaluate").batch_size
    data_hashes = {p.name: sha256_file(p) for p in sorted(PREPARED.glob("*.parquet"))}
    calibration = read_json(CALIBRATION)
    task = task_of(LabelMap.load(LABELS))  # the task, as labels.json alone says
    # the encoder, and the dtype policy it was fine-tuned in (train.precision, resolved)
    trained = read_json(TRAINED / MODEL_SPEC)
    training_precision = trained.get("training_precision", "float32")
    # an in-graph tokenizer with ids equal to the Hugging Face one's (`Family.raw_text`)
    raw_text = family_of(trained["encoder"]).raw_text
    encoder = {
        **read_json(PRETRAINED / SOURCE),
        "training_precision": training_precision,
        "learner": trained.get("learner", "finetune"),
        "raw_text_serving": raw_text,
    }
    card_facts = (task.name, params, read_json(METRICS), encoder)
    card_facts = (*card_facts, data_hashes)
    test = pd.read_parquet(PREPARED / "test.parquet")
    test_pairs = test["text_pair"].tolist() if "text_pair" in test.columns else None

    from bertclf.config import TokenizeConfig
    from bertclf.export import check_parity, export_saved_model
    from bertclf.layout import SAVED_MODEL
    from bertclf.model import load_classifier
    from bertclf.openvino_build import write_openvino
    from bertclf.preprocessor import Preprocessor
    from bertclf.thresholds import read_rule
    from bertclf.tokenization import read_token_cache

    model, spec = load_classifier(TRAINED)
    rule = read_rule(task.name, calibration, str(CALIBRATION))
    preprocessor = Preprocessor(
        load_tokenizer(PRETRAINED),
        TokenizeConfig(**spec["tokenize"]),
        clean,
        task.name,
        calibration.get("temperature"),
        text_pair=spec.get("pair_separator_id") is not None,
    ).with_rule(rule, spec["classes"])
    with atomic_path(PACKAGE, replace_directory=True) as tmp:
        tmp.mkdir()
        saved_model = tmp / SAVED_MODEL
        module = export_saved_model(
            model,
            PRETRAINED,
            preprocessor,
            spec["classes"],
            saved_model,
            spec["head"]["pooling"],
            raw_text,
        )
        parity = check_parity(
            module, saved_model, model, test["text"].tolist(), batch_size, test_pairs
        )
        openvino = write_openvino(
            module.from_token_ids,
            model,
            tmp,
            package,
            read_token_cache(TOKENIZED / "test.parquet"),
            read_token_cache(TOKENIZED / "train.parquet").sequences,
            preprocessor,
            batch_size,
            params["seed"],
        )
        tokenizer_files = [PRETRAINED / TOKENIZER, *([PRETRAINED / VOCAB] if raw_text else [])]
        copy_files([LABELS, CALIBRATION, *tokenizer_files], tmp)
        # the cleaning training saw, which every prediction path applies too
        write_json(
            tmp / MODEL_SPEC,
            {
                **trained,
                "clean": vars(clean),
                "raw_text_serving": raw_text,
            },
        )
        card_facts = (*card_facts, calibration, openvino)
        (tmp / MODEL_CARD).write_text(model_card(*card_facts), encoding="utf-8")
        write_json(tmp / MODEL_CARD_JSON, model_card_fields(*card_facts))
        manifest_sha256 = write_manifest(tmp)
    # Outside the bundle (whose files the manifest covers): give it to users through a channel
    # they trust, and they can check it at load with --expect-sha256.
    write_json(PACKAGE_REPORT, {**parity, "openvino": openvino, "manifest_sha256": manifest_sha256})
    print(f"package: wrote {PACKAGE}/, manifest sha256 {manifest_sha256}")
    ids = "token ids identical on all" if raw_text else "no raw-text serving (token ids only)"
    print(
        f"package: SavedModel against training on {parity['n']} test texts and "
        f"{parity['stress_texts']} stress texts: {ids}, largest probability difference "
        f"{parity['max_probability_difference']:.2g}{few_texts(parity['n'])}"
    )
    for precision, figures in openvino["precisions"].items():
        first, *more = describe_check(precision, figures)
        print("\n".join([f"package: OpenVINO {first}", *(f"package: {line}" for line in more)]))


if __name__ == "__main__":
    main()
