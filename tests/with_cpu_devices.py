"""Run a Python script with this machine's CPU split into N logical TensorFlow devices, so that
MirroredStrategy has replicas to mirror over:  python with_cpu_devices.py N script.py [args]

Logical devices must be configured before TensorFlow starts its runtime, hence a process of
its own."""

import os
import runpy
import sys

import tensorflow as tf

count, script = int(sys.argv[1]), sys.argv[2]
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
sys.argv = sys.argv[2:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
