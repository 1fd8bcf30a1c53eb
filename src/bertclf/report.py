"""reports/report.md, read top to bottom: data, configuration, metrics against the baseline,
per-class table, plots, the most confident mistakes."""

from pathlib import Path

import pandas as pd
import yaml

from bertclf.labels import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from bertclf.metrics import (
    HEADLINE_KEYS,
    MULTI_LABEL_HEADLINE_KEYS,
    REGRESSION_HEADLINE_KEYS,
    lift_within_noise,
    metrics_of,
    standard_error,
)

# The report's comparison with the baseline: the headline metrics, then loss and calibration.
COMPARED = (*HEADLINE_KEYS[1:], "log_loss", "roc_auc", "ece")
MULTI_LABEL_COMPARED = (
    *MULTI_LABEL_HEADLINE_KEYS[1:],
    "weighted_f1",
    "hamming_loss",
    "label_ranking_average_precision",
    "coverage_error",
    "roc_auc",
    "average_precision",
)


def _configuration(
    params: dict, sections: tuple[str, ...] = ("model", "head", "train", "tokenize", "seed")
) -> list[str]:
    """The report's configuration section: the params that shape the model, as YAML."""
    shown = {k: params[k] for k in sections}
    return [
        "## Configuration",
        "",
        "```yaml",
        yaml.safe_dump(shown, sort_keys=False).strip(),
        "```",
    ]


def task_of_metrics(metrics: dict) -> str:
    """The task of a metrics file, for `bertclf metrics`, which is given one of any run and
    not its labels.json: a multi-label run's metrics hold `per_label`, a regression run's
    `pearson`."""
    if "pearson" in metrics["test"]:
        return REGRESSION
    return MULTI_LABEL if "per_label" in metrics["test"] else SINGLE_LABEL


def training_curves_png(live_dir: Path, path: Path) -> None:
    """Loss and accuracy per epoch, training and validation, from DVCLive's files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    second = next(  # the task's training metric (training.TASK_TRAINING), as DVCLive logged it
        name
        for name in ("accuracy", "micro_f1", "rmse")
        if (live_dir / f"plots/metrics/train/{name}.tsv").is_file()
    )
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", second), strict=True):
        for split, name in (("train", "training"), ("eval", "validation")):
            table = pd.read_csv(live_dir / "plots/metrics" / split / f"{metric}.tsv", sep="\t")
            ax.plot(table["step"] + 1, table[metric], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def render_report(
    task_name: str,
    params: dict,
    prepare: dict,
    metrics: dict,
    baseline: dict,
    errors: pd.DataFrame,
    images: dict[str, str],
    explained: list[dict] | None = None,
) -> str:
    """The report of a run of the task labels.json names (`Task.name`); with `explained`
    (`Classifier.explain` of the first mistakes), the tokens that drove them."""
    report = TASK_REPORTS[task_name](params, prepare, metrics, baseline, errors, images)
    if explained is None:
        return report
    return report + "\n" + explained_mistakes(errors, explained) + "\n"


def top_tokens(result: dict, k: int = 5) -> list[tuple[str, list[tuple[str, float]]]]:
    """Each explained answer of a `Classifier.explain` result with its `k` tokens of largest
    attribution (those that raised it most), largest first."""
    found = []
    for explained in result["explained"]:
        ranked = sorted(
            zip(result["tokens"], explained["attributions"], strict=True), key=lambda t: -t[1]
        )
        found.append((explained["label"], [(t["token"], a) for t, a in ranked[:k] if a > 0]))
    return found


def explained_mistakes(errors: pd.DataFrame, explained: list[dict]) -> str:
    """The tokens that drove the model's answer on each explained mistake (the first rows of
    `errors`), by integrated gradients."""
    lines = [
        f"## The tokens that drove the first {len(explained)} mistakes",
        "",
        "Each answer's five tokens of largest attribution (integrated gradients on the token "
        "embeddings, 32 steps; `bertclf explain` shows every token).",
        "",
        "| id | answer | tokens that raised it most | text |",
        "| --- | --- | --- | --- |",
    ]
    for row, result in zip(errors.itertuples(), explained, strict=False):
        for answer, tokens in top_tokens(result) or [("(no label)", [])]:
            found = ", ".join(f"{_cell(token, 40)} ({value:+.3f})" for token, value in tokens)
            lines.append(f"| {row.id} | {_cell(answer)} | {found} | {_cell(row.text)} |")
    return "\n".join(lines)


def render_single_label_report(
    params: dict,
    prepare: dict,
    metrics: dict,
    baseline: dict,
    errors: pd.DataFrame,
    images: dict[str, str],
) -> str:
    test, base = metrics["test"], baseline["test"]
    lines = ["# Evaluation report", "", "## Data", ""]
    lines += [
        "| split | texts | " + " | ".join(prepare["class_counts"]["train"]) + " |",
        "| --- | --- | " + " | ".join("---" for _ in prepare["class_counts"]["train"]) + " |",
    ]
    for split, size in prepare["split_sizes"].items():
        counts = prepare["class_counts"][split]
        lines.append(
            f"| {split} | {size} | "
            + " | ".join(str(counts.get(c, 0)) for c in prepare["class_counts"]["train"])
            + " |"
        )
    lines += [
        "",
        f"Dropped before splitting: {prepare['duplicates_dropped']} duplicate texts, "
        f"{prepare['conflicting_labels_dropped']} texts with conflicting labels, "
        f"{prepare['empty_texts_dropped']} empty texts, "
        f"{prepare['train_texts_in_test_dropped']} training texts also in the test file.",
        "",
        *_configuration(params),
        "",
        f"## Test metrics ({test['n']} texts)",
        "",
        "| metric | fine-tuned | TF-IDF + logistic regression | lift |",
        "| --- | --- | --- | --- |",
    ]
    lines += _comparison(test, base, COMPARED)
    lines += [
        "",
        "Lower is better for `log_loss` and `ece` (expected calibration error).",
        f"One standard error of test accuracy is about "
        f"{standard_error(test['accuracy'], test['n']):.3f}.",
        *([f"**Note:** {noise}."] if (noise := lift_within_noise(test, base)) else []),
        "",
        "## Per class (test)",
        "",
        "| class | precision | recall | F1 | support | baseline F1 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in test["per_class"].items():
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m['support']} | {base['per_class'][name]['f1']:.3f} |"
        )
    lines += ["", "## Plots", ""]
    lines += [f"![{title}]({path})" for title, path in images.items()]
    lines += [
        "",
        "`dvc plots show` renders these and the precision-recall, ROC, reliability "
        "and per-class F1 plots as HTML.",
        "",
        "## The ten most confident mistakes",
        "",
        "| id | true | predicted | confidence | text |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in errors.head(10).itertuples():
        lines.append(
            f"| {row.id} | {row.true_label} | {row.predicted_label} | "
            f"{row.confidence:.3f} | {_cell(row.text)} |"
        )
    return "\n".join(lines) + "\n"


def headline_table(metrics: dict, baseline: dict) -> str:
    """The headline test metrics of the model beside the baseline's, as plain text: what
    `make repro` ends with (`bertclf metrics`)."""
    test, base = metrics["test"], baseline["test"]
    task_name = task_of_metrics(metrics)
    rows = [
        f"{'test, ' + str(test['n']) + ' texts':<20}{'fine-tuned':>12}{'baseline':>12}{'lift':>10}"
    ]
    for key in metrics_of(task_name).headline_keys[1:]:
        rows.append(f"{key:<20}{test[key]:>12.4f}{base[key]:>12.4f}{test[key] - base[key]:>+10.4f}")
    if task_name == SINGLE_LABEL:
        error = standard_error(test["accuracy"], test["n"])
        rows.append(f"(one standard error of accuracy: {error:.3f})")
        noise = lift_within_noise(test, base)
        if noise:
            rows.append(f"note: {noise}")
    return "\n".join(rows)


def _comparison(test: dict, base: dict, keys) -> list[str]:
    lines = []
    for key in keys:
        model_value, base_value = test.get(key), base.get(key)
        lift = (
            "n/a"
            if model_value is None or base_value is None
            else f"{model_value - base_value:+.4f}"
        )
        lines.append(f"| {key} | {_number(model_value)} | {_number(base_value)} | {lift} |")
    return lines


def _cell(text, limit: int = 200) -> str:
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_multi_label_report(
    params: dict,
    prepare: dict,
    metrics: dict,
    baseline: dict,
    errors: pd.DataFrame,
    images: dict[str, str],
) -> str:
    test, base = metrics["test"], baseline["test"]
    lines = ["# Evaluation report (multi-label)", "", "## Data", ""]
    lines += [
        "| split | texts | labels per text | texts without labels |",
        "| --- | --- | --- | --- |",
    ]
    for split, size in prepare["split_sizes"].items():
        lines.append(
            f"| {split} | {size} | {prepare['label_cardinality'][split]:.3f} | "
            f"{prepare['texts_without_labels'][split]} |"
        )
    rare = prepare.get("rare_labels_dropped") or {}
    absent = prepare.get("labels_absent_from") or {}
    lines += [
        "",
        f"{len(prepare['class_counts']['train'])} labels in training. "
        f"Dropped before splitting: {prepare['duplicates_dropped']} duplicate texts, "
        f"{prepare['conflicting_labels_dropped']} texts with conflicting label sets, "
        f"{prepare['empty_texts_dropped']} empty texts; {len(rare)} labels too rare to keep"
        + (f" ({', '.join(rare)})" if rare else "")
        + ".",
        "",
        f"Labels with no validation example: {', '.join(absent.get('val', [])) or 'none'}. "
        f"With no test example: {', '.join(absent.get('test', [])) or 'none'}.",
        "",
        *_configuration(params, ("model", "head", "train", "tokenize", "task", "seed")),
        "",
        f"## Test metrics ({test['n']} texts)",
        "",
        "Labels are decided with the thresholds chosen on the validation split "
        "(models/calibration.json); the baseline chooses its own the same way.",
        "",
        "| metric | fine-tuned | TF-IDF + logistic regression | lift |",
        "| --- | --- | --- | --- |",
        *_comparison(test, base, MULTI_LABEL_COMPARED),
        "",
        "Lower is better for `hamming_loss` and `coverage_error`.",
        "",
        "## Per label (test)",
        "",
        "| label | precision | recall | F1 | support | threshold | baseline F1 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in test["per_label"].items():
        lines.append(
            f"| {_cell(name)} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m['support']} | {m['threshold']:.3f} | {base['per_label'][name]['f1']:.3f} |"
        )
    lines += ["", "## Plots", ""]
    lines += [f"![{title}]({path})" for title, path in images.items()]
    lines += [
        "",
        "## The ten texts with the most wrong labels",
        "",
        "| id | true | predicted | missing | extra | text |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in errors.head(10).itertuples():
        lines.append(
            f"| {row.id} | {_cell(row.true_labels)} | {_cell(row.predicted_labels)} | "
            f"{_cell(row.missing)} | {_cell(row.extra)} | {_cell(row.text)} |"
        )
    return "\n".join(lines) + "\n"


REGRESSION_COMPARED = REGRESSION_HEADLINE_KEYS[1:]


def render_regression_report(
    params: dict,
    prepare: dict,
    metrics: dict,
    baseline: dict,
    errors: pd.DataFrame,
    images: dict[str, str],
) -> str:
    test, base = metrics["test"], baseline["test"]
    lines = ["# Evaluation report (regression)", "", "## Data", ""]
    lines += ["| split | texts | mean | sd | min | max |", "| --- | --- | --- | --- | --- | --- |"]
    for split, summary in prepare["score_summary"].items():
        lines.append(
            f"| {split} | {summary['n']} | {summary['mean']:.3f} | {summary['sd']:.3f} | "
            f"{summary['min']:.3f} | {summary['max']:.3f} |"
        )
    averaged = prepare.get("conflicting_scores_averaged")
    lines += [
        "",
        f"Dropped before splitting: {prepare['duplicates_dropped']} duplicate texts, "
        f"{prepare['conflicting_labels_dropped']} texts with conflicting scores, "
        f"{prepare['empty_texts_dropped']} empty texts"
        + (f"; {averaged} texts had their scores averaged" if averaged else "")
        + ".",
        "",
        *_configuration(params),
        "",
        f"## Test metrics ({test['n']} texts)",
        "",
        "| metric | fine-tuned | TF-IDF + ridge regression | lift |",
        "| --- | --- | --- | --- |",
        *_comparison(test, base, REGRESSION_COMPARED),
        "",
        "Lower is better for `rmse` and `mae`.",
        "",
        "## Plots",
        "",
        *[f"![{title}]({path})" for title, path in images.items()],
        "",
        "## The ten largest errors",
        "",
        "| id | true | predicted | error | text |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in errors.head(10).itertuples():
        lines.append(
            f"| {row.id} | {row.true_score:.3f} | {row.predicted_score:.3f} | "
            f"{row.error:+.3f} | {_cell(row.text)} |"
        )
    return "\n".join(lines) + "\n"


TASK_REPORTS = {
    SINGLE_LABEL: render_single_label_report,
    MULTI_LABEL: render_multi_label_report,
    REGRESSION: render_regression_report,
}
