"""bertclf: fine-tune BERT-family encoders for text classification, reproducibly."""

import os

# transformers' TensorFlow models need Keras 2 (tf_keras). This must be set before
# TensorFlow is first imported, in every process that uses the library.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ log: errors and above only (hides the CUDA probe's "failed call to cuInit" on
# machines without a GPU). A few notices print before the level takes effect. BERTCLF_DEBUG=1
# leaves TensorFlow's own default. Log levels change no numbers (TF_ENABLE_ONEDNN_OPTS would).
if os.environ.get("BERTCLF_DEBUG", "") in ("", "0"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
__all__ = ["Classifier", "BertclfError", "__version__"]


def __getattr__(name: str):
    # Imported lazily so `import bertclf` stays fast and TensorFlow-free.
    if name == "Classifier":
        from bertclf.classifier import Classifier

        return Classifier
    if name == "BertclfError":
        from bertclf.errors import BertclfError

        return BertclfError
    raise AttributeError(name)
