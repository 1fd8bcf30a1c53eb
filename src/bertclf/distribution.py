"""Where training runs: TensorFlow's own distribution strategies, chosen by train.distribution.

Threads, logical devices and MultiWorkerMirroredStrategy must be set before TensorFlow
initialises its runtime, so `configure` runs first in a training process.
"""

import json
import os

from bertclf.errors import BertclfError


def cluster_spec() -> dict:
    """The TF_CONFIG environment variable, parsed ({} when unset)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        spec = json.loads(raw)
        spec["cluster"], spec["task"]["type"], spec["task"]["index"]
    except (ValueError, KeyError, TypeError):
        raise BertclfError(
            "TF_CONFIG: not valid JSON of the form "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    return spec


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker. The chief is the task of
    type "chief", or worker 0 when the cluster has no chief."""
    spec = cluster_spec()
    if not spec:
        return True
    task = spec["task"]
    if "chief" in spec["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and int(task["index"]) == 0


def configure(distribution: str, threads: int):
    """Set TensorFlow's thread pools and return the strategy for `distribution`."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    if distribution == "multi_worker":
        if not cluster_spec():
            raise BertclfError(
                "train.distribution=multi_worker needs the TF_CONFIG environment variable "
                "(the cluster and this process's task; see README)"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")  # physical: does not start the runtime
    if distribution == "mirrored" or (distribution == "auto" and len(gpus) > 1):
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if distribution == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    return tf.distribute.get_strategy()  # auto on one device: TensorFlow's default
