"""bertclf: fine-tune BERT-family encoders for text classification, reproducibly."""

import os
import sys

# Keras 3 runs on TensorFlow here (KerasHub's BertBackbone is the encoder). The backend is
# chosen when Keras is first imported, so this is set before any import of it. A leftover
# TF_USE_LEGACY_KERAS (Keras 2's switch) would make tf.keras look for tf-keras, which is gone.
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.pop("TF_USE_LEGACY_KERAS", None)
# TensorFlow's C++ log: errors and above only (hides the CUDA probe's "failed call to cuInit" on
# machines without a GPU). A few notices print before the level takes effect. BERTCLF_DEBUG=1
# leaves TensorFlow's own default. Log levels change no numbers (TF_ENABLE_ONEDNN_OPTS would).
if os.environ.get("BERTCLF_DEBUG", "") in ("", "0"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# OpenVINO's model converter and NNCF send usage data to Google Analytics unless the user opted
# out; bertclf sends nothing. With openvino_telemetry unimportable (set before OpenVINO loads),
# both use their own no-op stand-ins, and nothing is written under ~/intel either.
sys.modules.setdefault("openvino_telemetry", None)

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
