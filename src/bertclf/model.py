"""The encoder (resolved once into models/pretrained/) and the classifier built on it.

Everything Keras here is tf_keras (Keras 2), the Keras that transformers' TF models use.
"""

import contextlib
import importlib.util
import json
import shutil
from pathlib import Path

import tensorflow as tf
import tf_keras as keras

from bertclf.config import HeadConfig, ModelConfig, TokenizeConfig
from bertclf.errors import BertclfError
from bertclf.layout import MODEL_SPEC, TOKENIZER, TOKENIZER_FILES, VOCAB, WEIGHTS


def source_directory(spec: str) -> Path | None:
    """`package:NAME` (a pip-installed model package), a local directory, or None (a hub name)."""
    if spec.startswith("package:"):
        name = spec.removeprefix("package:")
        found = importlib.util.find_spec(name)
        if found is None or not found.submodule_search_locations:
            raise BertclfError(f"model.pretrained: package '{name}' is not installed")
        return Path(next(iter(found.submodule_search_locations))) / "model"
    path = Path(spec)
    if path.is_dir():
        return path
    if spec.startswith((".", "/")) or path.suffix:
        raise BertclfError(f"model.pretrained: directory '{spec}' not found")
    return None


def _load_safetensors_into_tf(source: Path):
    """transformers 4.57 cannot load a PyTorch-format model.safetensors into TF without torch:
    read it with numpy and load the state dict into a freshly built TFBertModel."""
    from safetensors.numpy import load_file
    from transformers import BertConfig, TFBertModel
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    config = BertConfig.from_pretrained(source)
    model = TFBertModel(config)
    state = load_file(str(source / "model.safetensors"))
    _, info = load_pytorch_state_dict_in_tf2_model(
        model, state, allow_missing_keys=True, output_loading_info=True
    )
    if info["missing_keys"]:
        raise BertclfError(
            f"{source}/model.safetensors: weights missing: {info['missing_keys'][:5]}"
        )
    return model


@contextlib.contextmanager
def _from_hub(name: str):
    """A hub that cannot be reached (no network) is one line, not a traceback."""
    try:
        yield
    except OSError as error:
        reason = str(error).strip().splitlines()[0]
        raise BertclfError(
            f"model.pretrained: cannot load '{name}' from the model hub ({reason}); "
            "give a local directory or an installed package (package:NAME) instead"
        ) from None


def resolve_pretrained(cfg: ModelConfig, out_dir: Path, seed: int) -> dict:
    """Write TF-native encoder weights (tf_model.h5, config.json) and tokenizer files to out_dir."""
    from transformers import AutoTokenizer, BertConfig, TFAutoModel, TFBertModel

    source = source_directory(cfg.pretrained)
    out_dir.mkdir(parents=True, exist_ok=True)
    if source is not None:
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copy(source / name, out_dir / name)
        if not (out_dir / TOKENIZER).is_file():
            AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(out_dir))
    else:
        with _from_hub(cfg.pretrained):
            AutoTokenizer.from_pretrained(cfg.pretrained).save_pretrained(str(out_dir))

    if cfg.random_init is not None:
        tf.keras.utils.set_random_seed(seed)
        vocab_size = len((out_dir / VOCAB).read_text(encoding="utf-8").splitlines())
        config = BertConfig(vocab_size=vocab_size, **vars(cfg.random_init))
        model = TFBertModel(config)
        origin = "random initialisation"
    elif source is not None and (source / "tf_model.h5").is_file():
        model = TFBertModel.from_pretrained(str(source))
        origin = f"{cfg.pretrained}: tf_model.h5"  # as configured: no path of this machine
    elif source is not None and (source / "model.safetensors").is_file():
        model = _load_safetensors_into_tf(source)
        origin = f"{cfg.pretrained}: model.safetensors"
    elif source is not None:
        raise BertclfError(f"{source}: holds neither tf_model.h5 nor model.safetensors")
    else:
        with _from_hub(cfg.pretrained):
            model = TFAutoModel.from_pretrained(cfg.pretrained)
        origin = f"hub: {cfg.pretrained}"
    model(model.dummy_inputs)
    model.save_pretrained(str(out_dir))
    return {
        "name": cfg.name,
        "source": cfg.pretrained,
        "origin": origin,
        "parameters": int(model.count_params()),
    }


def build_classifier(
    encoder_config: dict,
    head: HeadConfig,
    num_classes: int,
    encoder_weights: Path | None = None,
    multi_label: bool = False,
    output_bias=None,
):
    """Encoder plus head, Keras functional API. Inputs: input_ids, attention_mask (int32).
    The output is a softmax over the classes, or (multi-label) one sigmoid per label.
    `output_bias` initialises the output layer's bias (else zeros)."""
    from transformers import BertConfig, TFBertModel

    config = BertConfig.from_dict(encoder_config)
    if encoder_weights is not None:
        encoder = TFBertModel.from_pretrained(str(encoder_weights), config=config)
    else:
        encoder = TFBertModel(config)
    if head.pooling != "pooler":
        encoder.bert.pooler.trainable = False  # unused: no gradients flow to it
    input_ids = keras.Input(shape=(None,), dtype="int32", name="input_ids")
    attention_mask = keras.Input(shape=(None,), dtype="int32", name="attention_mask")
    outputs = encoder(input_ids=input_ids, attention_mask=attention_mask)
    if head.pooling == "pooler":
        x = outputs.pooler_output
    elif head.pooling == "cls":
        x = outputs.last_hidden_state[:, 0]
    else:
        x = MeanPool(name="mean_pool")(outputs.last_hidden_state, attention_mask)
    for i, size in enumerate(head.hidden_sizes):
        x = keras.layers.Dropout(head.dropout, name=f"head_dropout_{i}")(x)
        x = keras.layers.Dense(size, activation="relu", name=f"head_dense_{i}")(x)
    x = keras.layers.Dropout(head.dropout, name="head_dropout_out")(x)
    # float32 softmax (sigmoid) even under a mixed-precision policy
    probabilities = keras.layers.Dense(
        num_classes,
        activation="sigmoid" if multi_label else "softmax",
        bias_initializer="zeros"
        if output_bias is None
        else keras.initializers.Constant(output_bias),
        dtype="float32",
        name="probabilities",
    )(x)
    return keras.Model([input_ids, attention_mask], probabilities, name="bertclf")


class MeanPool(keras.layers.Layer):
    """Mean of the token vectors over the attention mask."""

    def call(self, hidden, attention_mask):
        weights = tf.cast(attention_mask, hidden.dtype)[:, :, None]
        total = tf.reduce_sum(hidden * weights, axis=1)
        return total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


def save_classifier(
    model,
    out_dir: Path,
    encoder_config: dict,
    head: HeadConfig,
    classes: list[str],
    tokenize: TokenizeConfig,
    task: str = "single_label",
) -> None:
    """weights.h5 (HDF5, no pickle) plus model.json, enough to rebuild the model anywhere."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(out_dir / WEIGHTS))
    spec = {
        "encoder": encoder_config,
        "head": vars(head),
        "classes": classes,
        "tokenize": vars(tokenize),
        "task": task,
    }
    (out_dir / MODEL_SPEC).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def load_classifier(model_dir: Path):
    """Rebuild the classifier from model.json and load weights.h5. Returns (model, spec)."""
    spec = json.loads((model_dir / MODEL_SPEC).read_text(encoding="utf-8"))
    head = HeadConfig(**spec["head"])
    spec.setdefault("task", "single_label")  # models trained before multi-label did not say
    multi_label = spec["task"] == "multi_label"
    model = build_classifier(spec["encoder"], head, len(spec["classes"]), multi_label=multi_label)
    model.load_weights(str(model_dir / WEIGHTS))
    return model, spec
