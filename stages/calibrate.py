"""Fit the calibration on the validation split (models/calibration.json): the temperature that
makes the probabilities mean what they say (calibrate.method), and for a multi-label model the
threshold of every label, chosen on the calibrated probabilities. A single-label model's
decision rule is the most probable class, which a temperature never changes."""

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import write_json
from bertclf.labels import LabelMap
from bertclf.paths import CALIBRATION, LABELS, TOKENIZED, TRAINED


@exits_cleanly
def main() -> None:
    task = load_section("task")
    evaluate = load_section("evaluate")
    method = load_section("calibrate").method
    label_map = LabelMap.load(LABELS)

    from bertclf.calibration import fit_temperature
    from bertclf.config import TokenizeConfig
    from bertclf.model import load_classifier
    from bertclf.prediction import predict_logits
    from bertclf.preprocessor import Preprocessor
    from bertclf.small_data import few_texts
    from bertclf.thresholds import fit_rule
    from bertclf.tokenization import read_token_cache

    model, spec = load_classifier(TRAINED)
    tokenize = TokenizeConfig(**spec["tokenize"])
    val = read_token_cache(TOKENIZED / "val.parquet")
    # one row per window, each with its text's label (as in training): the temperature is fitted
    # and applied on windows, before chunk pooling, as the package applies it
    rows = predict_logits(model, val.sequences, evaluate.batch_size, tokenize)
    temperature = None
    if method == "temperature":
        temperature = fit_temperature(rows, val.labels, label_map.task)
    answers = Preprocessor(None, tokenize, task=label_map.task, temperature=temperature)
    texts = val.texts()

    def validation():  # the calibrated probabilities, a long text's windows pooled
        return texts.labels, answers.answer(rows, val.text_index(), len(texts.ids))

    rule = fit_rule(label_map.task, spec["classes"], task, validation)
    scaling = method if temperature is not None else "none"  # regression: nothing to scale
    write_json(CALIBRATION, {"scaling": scaling, "temperature": temperature, **rule.to_json()})
    print(
        f"calibrate: temperature {temperature} on {len(rows)} validation windows; decision: "
        f"{rule.describe()}{few_texts(len(texts.ids))}"
    )


if __name__ == "__main__":
    main()
