"""Datasets: directory layouts, the toy dataset, augmentations and tf.data pipelines."""

from keras_mv2seg.data.layouts import Sample, list_samples
from keras_mv2seg.data.pipeline import eval_dataset, resolve_data_root, train_dataset
from keras_mv2seg.data.toy import make_toy_dataset

__all__ = ["Sample", "list_samples", "eval_dataset", "resolve_data_root", "train_dataset", "make_toy_dataset"]
