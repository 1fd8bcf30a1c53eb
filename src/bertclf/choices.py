"""The words params.yaml, a package and the CLI accept: listed once, importing nothing, so
that the schema (`config`) and the modules that act on each word share one list without the
schema reaching up into them."""

TASKS = ("single_label", "multi_label", "regression")
POOLINGS = ("mean", "cls", "pooler")
# Keras' policies, and auto: mixed_bfloat16 on a CPU with native bfloat16, else float32
TRAINING_PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
LONG_TEXT = ("head", "head_tail", "chunks")
DISTRIBUTIONS = ("auto", "one_device", "mirrored", "multi_worker")
MONITORS = ("val_loss", "val_micro_f1")
CALIBRATION_METHODS = ("temperature", "none")
LEARNERS = ("auto", "finetune", "frozen", "contrastive")  # learner.method: how the model learns
OPENVINO_PRECISIONS = ("f32", "bf16", "int8")  # a package's OpenVINO models
PRECISION_CHOICES = ("auto", *OPENVINO_PRECISIONS)  # what --precision takes
RUNTIMES = ("auto", "tensorflow", "openvino")
ATTRIBUTION_BASELINES = ("pad", "zeros")  # what a token is compared with: [PAD], zeros
ATTRIBUTION_STEPS = 32  # integrated gradients' default steps

# the encoder families (config.json's model_type) a model can be built on and a package read with
ENCODER_FAMILIES = ("bert", "distilbert", "roberta", "xlm-roberta", "albert")
