"""Choose the decision rule on the validation split: for a multi-label model, the threshold of
every label (models/calibration.json). A single-label model's rule is the most probable class;
its file says so (temperature scaling would be fitted here)."""

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import write_json
from bertclf.labels import LabelMap
from bertclf.paths import CALIBRATION, LABELS, TOKENIZED, TRAINED


@exits_cleanly
def main() -> None:
    task = load_section("task")
    evaluate = load_section("evaluate")
    label_map = LabelMap.load(LABELS)
    if not label_map.multi_label:
        write_json(CALIBRATION, {"task": label_map.task, "rule": "most probable class"})
        print("calibrate: single-label, nothing to choose")
        return

    from bertclf.batching import predict_texts
    from bertclf.config import TokenizeConfig
    from bertclf.model import load_classifier
    from bertclf.thresholds import tune
    from bertclf.tokenization import read_token_cache

    model, spec = load_classifier(TRAINED)
    tokenize = TokenizeConfig(**spec["tokenize"])
    val = read_token_cache(TOKENIZED / "val.parquet")
    texts, probabilities = predict_texts(model, val, evaluate.batch_size, tokenize, True)
    thresholds = tune(texts.labels, probabilities, spec["classes"], task)
    write_json(CALIBRATION, thresholds.to_json())
    print(
        f"calibrate: {len(thresholds.tuned_labels)} of {len(spec['classes'])} labels with their "
        f"own threshold on {len(texts.ids)} validation texts; global threshold "
        f"{thresholds.global_threshold:.3f}"
    )


if __name__ == "__main__":
    main()
