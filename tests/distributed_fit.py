"""Helper run as a subprocess by test_distribution.py: a few fit steps under a strategy, weights to .npz.

    python tests/distributed_fit.py single|mirrored|multi_worker CONFIG_FILE OUT.npz [STEPS]
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

mode, config_file, out = sys.argv[1:4]
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import keras_mv2seg  # noqa: E402
from keras_mv2seg.data.pipeline import train_dataset  # noqa: E402
from keras_mv2seg.models import build_segmenter  # noqa: E402
from keras_mv2seg.training.trainer import compile_model, fit, make_strategy, set_sync_batchnorm, with_targets  # noqa: E402

config = keras_mv2seg.get_config(config_file)
strategy = {"single": lambda: make_strategy("none"),
            "mirrored": lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
            "multi_worker": lambda: make_strategy("multi_worker")}[mode]()
keras.utils.set_random_seed(0)
with strategy.scope():
    model = build_segmenter(config, auxiliary=True)
    set_sync_batchnorm(model, config.train.sync_batchnorm)
    optimizer = compile_model(model, config)
np.savez(out.replace(".npz", "_init.npz"), **{w.path: w.numpy() for w in model.weights})
data = train_dataset(config, batch_size=config.train.batch_size, seed=0).map(with_targets(model))
fit(model, strategy, data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
print(f"replicas={strategy.num_replicas_in_sync} iterations={int(optimizer.iterations.numpy())}", flush=True)
np.savez(out, **{w.path: w.numpy() for w in model.weights})
