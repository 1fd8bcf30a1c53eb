"""Reading a package: every file a prediction needs, read once, after the manifest check.

`open_package` checks every file against the manifest, makes a private copy of the bytes it
checked (`package.verified_copy`), and reads model.json, labels.json, calibration.json,
openvino/checks.json, model_card.json and the tokenizer from that copy, checking that they agree
with each other. `Classifier`, `bertclf predict`, `bertclf evaluate` and `bertclf serve` read a
package only through it. TensorFlow-free: the models themselves are loaded by the Classifier.
"""

import dataclasses
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bertclf.choices import ENCODER_FAMILIES, OPENVINO_PRECISIONS
from bertclf.config import CleanConfig, TokenizeConfig
from bertclf.errors import BertclfError
from bertclf.files import read_json
from bertclf.labels import LabelMap
from bertclf.layout import (
    CALIBRATION,
    CHECKS,
    LABELS,
    MANIFEST,
    MODEL_CARD_JSON,
    MODEL_SPEC,
    OPENVINO_DIR,
)
from bertclf.thresholds import Thresholds, load_thresholds


@dataclass(frozen=True)
class Package:
    """A package's files as read, from the private copy at `path` (gone once `open_package`
    is left: load the models inside it)."""

    path: Path
    source: Path  # the package as the user named it
    manifest: dict
    spec: dict  # model.json: the encoder, the head, the classes
    label_map: LabelMap
    tokenize: TokenizeConfig
    clean: CleanConfig | None  # the data.clean steps training applied; None before format 7
    thresholds: Thresholds | None  # multi-label: the decision rule
    offered: tuple[str, ...]  # OpenVINO precisions written and checked against TensorFlow
    tokenizer: object  # tokenizers.Tokenizer, without padding or truncation
    card: dict | None  # model_card.json
    manifest_sha256: str  # the package's digest (what --expect-sha256 checks)

    @property
    def format_version(self) -> int:
        return self.manifest["format_version"]

    @property
    def family(self) -> str:
        """The encoder's family (model.json's `encoder.model_type`, checked at read)."""
        return self.spec["encoder"].get("model_type", "bert")

    @property
    def raw_text_serving(self) -> bool:
        """Whether the SavedModel tokenizes raw text in its graph (`serving_default`); the
        families without an equal in-graph tokenizer take token ids only (model.json's
        `raw_text_serving`; a package written before it has no such key, and serves raw
        text)."""
        return self.spec.get("raw_text_serving", True)

    @property
    def text_pair(self) -> bool:
        """Whether the model takes text pairs (model.json's pair_separator_id, format 9 on)."""
        return self.spec.get("pair_separator_id") is not None

    @property
    def libraries(self) -> dict:
        return self.manifest.get("libraries", {})


@contextmanager
def open_package(source: str | Path, expect_sha256: str | None = None):
    """The checked package (`Package`); an error inside names the user's package, never the
    private copy."""
    from bertclf.package import verified_copy

    source = Path(source)
    if not source.is_dir():
        raise BertclfError(f"{source}: package directory not found")
    with verified_copy(source, expect_sha256) as (copy, manifest):
        try:
            yield read_files(copy, source, manifest)
        except BertclfError as error:
            raise BertclfError(str(error).replace(str(copy), str(source))) from None


def read_files(path: Path, source: Path, manifest: dict) -> Package:
    """Read and cross-check a verified copy's files."""
    from bertclf.tokenization import load_tokenizer, pair_separator

    spec = read_json(path / MODEL_SPEC)
    if not isinstance(spec, dict):
        raise BertclfError(f"{path / MODEL_SPEC}: not a JSON object")
    label_map = LabelMap.load(path / LABELS)
    if list(label_map.classes) != spec.get("classes"):
        raise BertclfError(f"{path}: labels.json and model.json disagree on the classes")
    if label_map.task != spec.get("task", label_map.task):  # format 7's model.json held it too
        raise BertclfError(f"{path}: labels.json and model.json disagree on the task")
    thresholds = None
    if label_map.multi_label:
        thresholds = load_thresholds(path / CALIBRATION)
        thresholds.check_labels(list(label_map.classes), str(path / CALIBRATION))
    encoder = spec.get("encoder")
    if not isinstance(encoder, dict):
        raise BertclfError(f"{path / MODEL_SPEC}: encoder is not a JSON object")
    family = encoder.get("model_type", "bert")  # as model.family_of reads a config.json
    if family not in ENCODER_FAMILIES:
        raise BertclfError(
            f"{path / MODEL_SPEC}: encoder model_type {family!r} is not a family this bertclf "
            f"reads ({', '.join(ENCODER_FAMILIES)})"
        )
    if not isinstance(spec.get("raw_text_serving", True), bool):
        raise BertclfError(f"{path / MODEL_SPEC}: raw_text_serving is not true or false")
    tokenizer = load_tokenizer(path)
    vocabulary = encoder.get("vocab_size")
    if isinstance(vocabulary, int) and tokenizer.get_vocab_size() > vocabulary:
        raise BertclfError(
            f"{path}: tokenizer.json has {tokenizer.get_vocab_size()} tokens, but the "
            f"model's embedding has {vocabulary} rows (model.json encoder.vocab_size)"
        )
    separator = spec.get("pair_separator_id")
    if separator is not None and separator != pair_separator(tokenizer):
        raise BertclfError(
            f"{path / MODEL_SPEC}: pair_separator_id is {separator!r}, not the id of the "
            f"tokenizer's separator ({pair_separator(tokenizer)})"
        )
    card = path / MODEL_CARD_JSON
    return Package(
        path=path,
        source=source,
        manifest=manifest,
        spec=spec,
        label_map=label_map,
        tokenize=tokenize_section(spec, path / MODEL_SPEC),
        clean=clean_section(spec, path / MODEL_SPEC),
        thresholds=thresholds,
        offered=offered_precisions(path),
        tokenizer=tokenizer,
        card=read_json(card) if card.is_file() else None,
        manifest_sha256=hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest(),
    )


def tokenize_section(spec: dict, source: Path) -> TokenizeConfig:
    """model.json's tokenize section, checked as params.yaml's is: one line naming the key."""
    from bertclf.config import parse_section

    if not isinstance(spec.get("tokenize"), dict):
        raise BertclfError(f"{source}: tokenize is missing or not an object")
    try:
        return parse_section("tokenize", spec["tokenize"], source)
    except BertclfError as error:
        raise BertclfError(str(error).replace("params.yaml: ", "")) from None


def clean_section(spec: dict, source: Path) -> CleanConfig | None:
    """model.json's clean section (format 7 on): the data.clean steps training applied, which
    every prediction applies too; None in earlier packages (they did not record it)."""
    if "clean" not in spec:
        return None
    steps = {field.name for field in dataclasses.fields(CleanConfig)}
    clean = spec["clean"]
    if (
        not isinstance(clean, dict)
        or set(clean) != steps
        or not all(isinstance(value, bool) for value in clean.values())
    ):
        raise BertclfError(
            f"{source}: clean must map each of {', '.join(sorted(steps))} to true or false"
        )
    return CleanConfig(**clean)


def offered_precisions(package: Path) -> tuple[str, ...]:
    """The OpenVINO precisions a package offers: written, and checked against TensorFlow."""
    checks = package / OPENVINO_DIR / CHECKS
    if not checks.is_file():
        return ()
    try:
        offered = read_json(checks)["offered"]
    except (ValueError, KeyError, TypeError) as error:
        raise BertclfError(f"{checks}: not the checks bertclf writes ({error!r})") from None
    return tuple(p for p in OPENVINO_PRECISIONS if p in offered)
