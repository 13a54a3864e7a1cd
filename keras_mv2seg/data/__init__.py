"""Datasets: the dataset table lives in ``datasets_meta``; here, from the top down:

* ``sources``: (config, split) -> tf.data source (layout, TFRecords or TFDS), the entry point;
* ``pipeline``: training/evaluation pipelines over samples, records or streams (``augment`` for the reference's
  augmentations);
* ``layouts``: the standard directory layouts -> (image, label, label kind) samples;
* ``decode``: reading image and label files, label kinds and their mapping to training ids;
* ``cache``, ``tfrecord``, ``tfds_sources``: decoded-sample cache, DeepLab TFRecords, TFDS builders;
* ``check``: validation of a layout, one line per problem; ``toy``: the built-in generated dataset.
"""

from keras_mv2seg.data.layouts import Sample, list_samples
from keras_mv2seg.data.pipeline import eval_dataset, train_dataset
from keras_mv2seg.data.sources import DataSource, evaluation_data, resolve_data_root, training_data
from keras_mv2seg.data.toy import make_toy_dataset

__all__ = ["DataSource", "Sample", "list_samples", "eval_dataset", "evaluation_data", "resolve_data_root", "train_dataset",
           "training_data", "make_toy_dataset"]
