"""Typed parameters: params.yaml (composed from conf/ by Hydra) read and validated per section.

The schemas name and check every key but hold no defaults: those live in conf/ alone.

DVC composes conf/ without importing this project, so the schemas cannot sit in Hydra's
defaults list; each stage validates the sections it reads here, before TensorFlow is imported.
"""

import math
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from bertclf.choices import (
    CALIBRATION_METHODS,
    DISTRIBUTIONS,
    LEARNERS,
    LONG_TEXT,
    MONITORS,
    OPENVINO_PRECISIONS,
    POOLINGS,
    TASKS,
    TRAINING_PRECISIONS,
)
from bertclf.errors import BertclfError
from bertclf.files import atomic_path

PARAMS_FILE = "params.yaml"


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise BertclfError(f"{PARAMS_FILE}: {key} {message}")


@dataclass
class CleanConfig:
    remove_urls: bool
    remove_html: bool
    remove_punctuation: bool
    remove_digits: bool
    remove_stopwords: bool
    lowercase: bool


@dataclass
class DataConfig:
    name: str
    path: str
    text_column: str
    label_column: str
    test_path: str | None
    id_column: str | None
    val_fraction: float
    test_fraction: float
    on_empty: str
    on_conflict: str
    decode_errors: str
    clean: CleanConfig
    text_pair_column: str | None  # the second text of each example; None: one text

    @property
    def pairs(self) -> bool:
        return self.text_pair_column is not None

    def __post_init__(self) -> None:
        for key, options in (
            ("on_empty", ("drop", "error")),
            ("on_conflict", ("drop", "error", "mean")),  # mean: regression only
            ("decode_errors", ("error", "replace")),
        ):
            _require(getattr(self, key) in options, f"data.{key}", f"must be one of {options}")
        _require(0 < self.val_fraction < 1, "data.val_fraction", "must be between 0 and 1")
        _require(0 < self.test_fraction < 1, "data.test_fraction", "must be between 0 and 1")
        _require(
            self.val_fraction + self.test_fraction < 1,
            "data.val_fraction + data.test_fraction",
            "must be below 1 (they are fractions of the whole table)",
        )


@dataclass
class RandomInitConfig:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_dropout_prob: float
    attention_probs_dropout_prob: float


@dataclass
class ModelConfig:
    name: str
    pretrained: str
    random_init: RandomInitConfig | None


@dataclass
class HeadConfig:
    pooling: str
    hidden_sizes: list[int]
    dropout: float

    def __post_init__(self) -> None:
        _require(self.pooling in POOLINGS, "head.pooling", f"must be one of {', '.join(POOLINGS)}")
        _require(0 <= self.dropout < 1, "head.dropout", "must be in [0, 1)")
        _require(all(s > 0 for s in self.hidden_sizes), "head.hidden_sizes", "must be positive")


@dataclass
class TrainConfig:
    epochs: int
    min_steps: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_fraction: float
    early_stopping_patience: int
    class_weights: bool
    jit_compile: bool
    precision: str
    distribution: str
    threads: int
    checkpoint_every_seconds: float
    frozen_layers: int = 0

    def __post_init__(self) -> None:
        _require(self.frozen_layers >= 0, "train.frozen_layers", "must be >= 0 (0: none)")
        _require(
            self.checkpoint_every_seconds >= 0,
            "train.checkpoint_every_seconds",
            "must be >= 0 (0: after every epoch)",
        )
        _require(
            self.distribution in DISTRIBUTIONS,
            "train.distribution",
            f"must be one of {', '.join(DISTRIBUTIONS)}",
        )
        _require(self.threads >= 0, "train.threads", "must be >= 0 (0: all cores)")
        _require(
            self.precision in TRAINING_PRECISIONS,
            "train.precision",
            f"must be one of {', '.join(TRAINING_PRECISIONS)}",
        )
        _require(self.epochs >= 1, "train.epochs", "must be at least 1")
        _require(self.min_steps >= 0, "train.min_steps", "must be >= 0 (0: no minimum)")
        _require(self.batch_size >= 1, "train.batch_size", "must be at least 1")
        _require(self.learning_rate > 0, "train.learning_rate", "must be positive")
        _require(0 <= self.warmup_fraction < 1, "train.warmup_fraction", "must be in [0, 1)")
        _require(self.early_stopping_patience >= 0, "train.early_stopping_patience", "must be >= 0")


@dataclass
class LearnerConfig:
    method: str  # auto, finetune, frozen or contrastive (src/bertclf/learners.py)
    auto_max_texts_per_class: int  # auto: contrastive up to this many in the smallest class
    pair_iterations: int  # contrastive: pairs drawn per text, twice (one positive, one negative)
    max_pairs: int  # contrastive: at most this many pairs, drawn from them at random
    epochs: int  # contrastive: passes over the pairs
    batch_size: int  # contrastive: pairs a step
    learning_rate: float  # contrastive: AdamW's peak, with warmup and linear decay

    def __post_init__(self) -> None:
        _require(self.method in LEARNERS, "learner.method", f"must be one of {', '.join(LEARNERS)}")
        for key in ("pair_iterations", "max_pairs", "epochs", "batch_size"):
            _require(getattr(self, key) >= 1, f"learner.{key}", "must be at least 1")
        _require(
            self.auto_max_texts_per_class >= 0, "learner.auto_max_texts_per_class", "must be >= 0"
        )
        _require(self.learning_rate > 0, "learner.learning_rate", "must be positive")


@dataclass
class TokenizeConfig:
    max_length: int
    bucket_multiple: int
    long_text: str
    head_fraction: float
    chunk_stride: int
    chunk_pooling: str

    def __post_init__(self) -> None:
        _require(8 <= self.max_length <= 512, "tokenize.max_length", "must be in [8, 512]")
        _require(self.bucket_multiple >= 1, "tokenize.bucket_multiple", "must be at least 1")
        _require(
            self.long_text in LONG_TEXT,
            "tokenize.long_text",
            f"must be one of {', '.join(LONG_TEXT)}",
        )
        _require(0 <= self.head_fraction <= 1, "tokenize.head_fraction", "must be in [0, 1]")
        _require(
            self.long_text != "chunks" or 0 <= self.chunk_stride < self.max_length - 2,
            "tokenize.chunk_stride",
            "must be >= 0 and below tokenize.max_length - 2 (the tokens a window holds)",
        )
        _require(
            self.chunk_pooling in ("mean", "max"), "tokenize.chunk_pooling", "must be mean or max"
        )

    def check_pairs(self, pairs: bool) -> None:
        """A pair is cut longest side first (`head`); head_tail and chunks cut one text."""
        _require(
            not pairs or self.long_text == "head",
            "tokenize.long_text",
            f"is {self.long_text}, which cuts one text; text pairs (data.text_pair_column) take "
            "head, which cuts the longer text of a pair first",
        )


@dataclass
class TaskConfig:
    type: str
    label_separator: str
    threshold: Any  # "tuned", or a number: one global threshold
    min_val_positives: int
    at_least_one: bool
    min_label_count: int
    rare_labels: str
    early_stopping_monitor: str

    def __post_init__(self) -> None:
        _require(self.type in TASKS, "task.type", f"must be one of {', '.join(TASKS)}")
        _require(self.label_separator != "", "task.label_separator", "must not be empty")
        _require(
            self.threshold == "tuned"
            or (isinstance(self.threshold, int | float) and 0 < self.threshold < 1),
            "task.threshold",
            "must be 'tuned' or a number between 0 and 1",
        )
        _require(self.min_val_positives >= 1, "task.min_val_positives", "must be at least 1")
        _require(self.min_label_count >= 1, "task.min_label_count", "must be at least 1")
        _require(self.rare_labels in ("drop", "error"), "task.rare_labels", "must be drop or error")
        _require(
            self.early_stopping_monitor in MONITORS,
            "task.early_stopping_monitor",
            f"must be one of {', '.join(MONITORS)}",
        )
        _require(
            self.type != "regression" or self.early_stopping_monitor == "val_loss",
            "task.early_stopping_monitor",
            "must be val_loss for task=regression (micro-F1 is a classifier's)",
        )

    @property
    def multi_label(self) -> bool:
        return self.type == "multi_label"


@dataclass
class EvaluateConfig:
    batch_size: int


@dataclass
class CalibrateConfig:
    """How the calibrate stage rescales probabilities: `temperature` (fitted on validation) or
    `none`."""

    method: str

    def __post_init__(self) -> None:
        _require(
            self.method in CALIBRATION_METHODS,
            "calibrate.method",
            f"must be one of {', '.join(CALIBRATION_METHODS)}",
        )


@dataclass
class PackageConfig:
    """What the package holds besides the SavedModel: OpenVINO models in these precisions."""

    precisions: list[str]
    int8_calibration_texts: int
    strict: bool

    def __post_init__(self) -> None:
        for precision in self.precisions:
            _require(
                precision in OPENVINO_PRECISIONS,
                "package.precisions",
                f"lists {precision!r}: expected some of {', '.join(OPENVINO_PRECISIONS)}",
            )
        _require(
            len(set(self.precisions)) == len(self.precisions),
            "package.precisions",
            "lists a precision twice",
        )
        _require(
            self.int8_calibration_texts > 0,
            "package.int8_calibration_texts",
            "must be positive",
        )


@dataclass
class CvConfig:
    folds: list[int]
    seed: int

    def __post_init__(self) -> None:
        _require(
            self.folds == list(range(len(self.folds))),
            "cv.folds",
            "must list 0, 1, ..., k-1 (use cv=kfold3, kfold5 or kfold10)",
        )
        _require(len(self.folds) != 1, "cv.folds", "must have at least two folds, or none")


@dataclass
class BaselineConfig:
    C: float

    def __post_init__(self) -> None:
        _require(self.C > 0, "baseline.C", "must be positive")


# cleanlab's filter_by options for find_label_issues (classification)
LABEL_ISSUE_FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
)


@dataclass
class LabelIssuesConfig:
    """How the label_issues stage flags training rows from the out-of-fold probabilities."""

    enabled: bool
    filter_by: str
    frac_noise: float
    regression_fraction: float

    def __post_init__(self) -> None:
        _require(isinstance(self.enabled, bool), "label_issues.enabled", "must be true or false")
        _require(
            self.filter_by in LABEL_ISSUE_FILTERS,
            "label_issues.filter_by",
            f"must be one of {', '.join(LABEL_ISSUE_FILTERS)}",
        )
        _require(0 < self.frac_noise <= 1, "label_issues.frac_noise", "must be in (0, 1]")
        _require(
            0 < self.regression_fraction < 1,
            "label_issues.regression_fraction",
            "must be between 0 and 1",
        )


SCHEMAS: dict[str, type] = {
    "baseline": BaselineConfig,
    "cv": CvConfig,
    "data": DataConfig,
    "model": ModelConfig,
    "head": HeadConfig,
    "learner": LearnerConfig,
    "train": TrainConfig,
    "tokenize": TokenizeConfig,
    "evaluate": EvaluateConfig,
    "calibrate": CalibrateConfig,
    "package": PackageConfig,
    "task": TaskConfig,
    "label_issues": LabelIssuesConfig,
}


SEED_LIMIT = 2**32  # numpy's and TensorFlow's seeds are unsigned 32-bit integers


def _check_seed(value: Any, key: str = "seed") -> int:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT,
        key,
        f"must be a whole number from 0 to {SEED_LIMIT - 1}, not {value!r}",
    )
    return value


def _check_finite(value: Any, key: str) -> None:
    """Every float of a parsed section is finite: inf and nan pass the schemas' comparisons
    (inf > 0) and would train on NaN."""
    if isinstance(value, float):
        _require(math.isfinite(value), key, f"must be a finite number, not {value}")
    elif is_dataclass(value):
        for field in fields(value):
            _check_finite(getattr(value, field.name), f"{key}.{field.name}")
    elif isinstance(value, list):
        for item in value:
            _check_finite(item, key)


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise BertclfError(f"{path}: not found; run `make params` to compose it from conf/")
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise BertclfError(f"{path}: cannot be read: {error}") from None


def load_section(name: str, path: str | Path = PARAMS_FILE) -> Any:
    """Read one section of params.yaml, validated against its schema (one clear line if bad).
    Every other section is validated too, so that a bad key fails the first stage that runs,
    in seconds, not the stage that reads it after hours of training."""
    params = load_params(path)
    if name not in params:
        raise BertclfError(f"{path}: missing key '{name}'; run `make params`")
    validate_params(params, path)
    return parse_section(name, params[name], path)


def validate_params(params: dict[str, Any], path: str | Path = PARAMS_FILE) -> None:
    """Every section of a composed params.yaml that has a schema, parsed and checked."""
    for name in sorted((set(SCHEMAS) | {"seed"}) & set(params)):
        parse_section(name, params[name], path)


def parse_section(name: str, value: Any, path: str | Path = PARAMS_FILE) -> Any:
    """A section's values as its typed schema, validated. Every key must be given: defaults
    live in conf/ only."""
    if name == "seed":
        try:
            return _check_seed(value)
        except BertclfError as error:
            raise BertclfError(f"{path}: {str(error).split(': ', 1)[1]}") from None
    schema = SCHEMAS.get(name)
    if schema is None:
        return value
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), value)
        parsed = OmegaConf.to_object(merged)
        _check_finite(parsed, name)
    except MissingMandatoryValue as error:
        key = f"{name}.{error.full_key}"
        raise BertclfError(f"{path}: {key} is required; set it with -S {key}=...") from None
    except OmegaConfBaseException as error:
        key = f"{name}.{error.full_key}" if error.full_key else name
        reason = str(error.msg).strip().splitlines()[0]  # OmegaConf adds lines of its own
        if "not in '" in reason or "Key '" in reason:
            known = ", ".join(f.name for f in fields(schema))
            reason += f" (the keys of {name} are: {known})"
        raise BertclfError(f"{path}: {key}: {reason}") from None
    except BertclfError as error:  # a schema's own check: name the file, as above
        raise BertclfError(f"{path}: {str(error).split(': ', 1)[1]}") from None
    return parsed


def compose_params(
    output: str | Path = PARAMS_FILE,
    overrides: list[str] | None = None,
    config_dir: str | Path = "conf",
) -> None:
    """Compose conf/ into params.yaml exactly as `dvc exp run -S` does."""
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    config_dir = Path(config_dir).resolve()
    if not (config_dir / "config.yaml").is_file():
        raise BertclfError(f"{config_dir}/config.yaml: not found")
    try:
        with atomic_path(output) as tmp:
            compose_and_dump(
                tmp, str(config_dir), None, "config", str(config_dir.parent), overrides or []
            )
            validate_params(load_params(tmp), output)  # a bad value fails now, not hours later
    except (HydraException, OmegaConfBaseException) as error:
        message = " ".join(str(error).split()).split(" Config search path")[0]
        raise BertclfError(f"conf/: cannot compose with {overrides or []}: {message}") from None
