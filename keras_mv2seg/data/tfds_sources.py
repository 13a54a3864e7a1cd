"""tensorflow-datasets sources, as (image float32 [H, W, 3], label uint8 [H, W, 1], name) streams.

* ``cityscapes/semantic_segmentation``: TFDS' own builder, prepared offline from the manual-download zips
  (``leftImg8bit_trainvaltest.zip``, ``gtFine_trainvaltest.zip``). It yields labelIds 0..33; they are mapped to
  train ids (255 = ignored) here.
* ``ade20k_scene_parsing``: a builder of this project (TFDS has no ADE20K-150 semantic builder;
  ``scene_parse150`` holds the 2017 instance annotations), over the ``ADEChallengeData2016`` folder placed in the
  manual directory. Labels are the raw 0..150 values; the pipelines reduce them per the config.
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from keras_mv2seg.data.decode import map_label
from keras_mv2seg.datasets_meta import DATASETS

TFDS_NAMES = {name: info.tfds_name for name, info in DATASETS.items() if info.tfds_name}


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError("tensorflow-datasets is needed for TFDS sources: pip install -e '.[tfds]'") from None
    return tfds


def _ade20k_builder_class():
    tfds = _tfds()
    existing = tfds.builder_cls("ade20k_scene_parsing") if "ade20k_scene_parsing" in tfds.list_builders() else None
    if existing is not None:
        return existing

    class Ade20kSceneParsing(tfds.core.GeneratorBasedBuilder):
        """ADE20K scene parsing (SceneParsing 2016, 150 classes + 0 = other) from ADEChallengeData2016."""

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Images and 0..150 annotations of ADEChallengeData2016."}
        MANUAL_DOWNLOAD_INSTRUCTIONS = (
            "Unpack ADEChallengeData2016.zip so that <manual_dir>/ADEChallengeData2016/images/{training,validation}"
            " and .../annotations/{training,validation} exist.")

        def _info(self):
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
                "image_id": tfds.features.Text(),
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "segmentation_label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
            }), homepage="http://sceneparsing.csail.mit.edu/")

        def _split_generators(self, dl_manager):
            base = Path(dl_manager.manual_dir) / "ADEChallengeData2016"
            if not (base / "images").is_dir():
                raise FileNotFoundError(f"{base}/images not found. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
            return {"train": self._generate_examples(base, "training"),
                    "validation": self._generate_examples(base, "validation")}

        def _generate_examples(self, base, folder):
            for image in sorted((base / "images" / folder).glob("*.jpg")):
                label = base / "annotations" / folder / f"{image.stem}.png"
                if not label.is_file():
                    raise FileNotFoundError(f"{image}: no annotation {label}")
                yield image.stem, {"image_id": image.stem, "image": str(image), "segmentation_label": str(label)}

    return Ade20kSceneParsing


def tfds_stream(dataset: str, split: str, *, data_dir=None, manual_dir=None,
                reduce_zero_label: bool = False) -> tf.data.Dataset:
    """Prepare (offline, from ``manual_dir``) and read a TFDS dataset as (image, label, name) elements:
    Cityscapes labels mapped to train ids, ADE20K labels reduced (0 -> 255, L -> L-1) with
    ``reduce_zero_label``. ``split``: train / val (validation) / test."""
    tfds = _tfds()
    if dataset not in TFDS_NAMES:
        raise ValueError(f"TFDS sources exist for {sorted(TFDS_NAMES)}, received {dataset!r}")
    split = {"val": "validation"}.get(split, split)
    data_dir = os.fspath(data_dir) if data_dir else None
    if dataset == "ade20k":
        builder = _ade20k_builder_class()(data_dir=data_dir)
    else:
        builder = tfds.builder(TFDS_NAMES[dataset], data_dir=data_dir)
    config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)) if manual_dir else None
    builder.download_and_prepare(download_config=config)
    info = DATASETS[dataset]
    image_key, kind = info.tfds_image_key, info.tfds_label_kind

    def convert(example):
        label = map_label(example["segmentation_label"], kind, reduce_zero_label)
        return tf.cast(example[image_key], tf.float32), label, example["image_id"]

    return builder.as_dataset(split=split, shuffle_files=False).map(convert, num_parallel_calls=tf.data.AUTOTUNE)
