"""``build_segmenter``: RGB float32 0..255 NHWC images of any size -> float32 logits NHWC at the input size.

Two views of one graph:

* the inference model (default): output ``logits`` only;
* the training model (``auxiliary=True``): outputs ``{"logits", "aux_logits"}``, both at the input size,
  for a Keras loss dict with weights 1.0 / 0.4. It holds every weight of the inference model plus the
  auxiliary head's, so its checkpoints round-trip everything; :func:`inference_model` takes the inference
  view out of it, sharing the weights.
"""

from __future__ import annotations

import keras

from keras_mv2seg.config import Config, ModelConfig
from keras_mv2seg.models.heads import HEADS, auxiliary_head
from keras_mv2seg.models.layers import LAYER_PARTS, ResizeBilinear, layer_part  # noqa: F401 - public here too
from keras_mv2seg.models.mobilenet_v2 import FEATURE_BLOCKS, mobilenet_v2_features


def _model_config(config: Config | ModelConfig) -> tuple[str, ModelConfig]:
    if isinstance(config, Config):
        return config.name, config.model
    if isinstance(config, ModelConfig):
        return f"mobilenet_v2_{config.head}", config
    raise TypeError(f"build_segmenter expects a Config or ModelConfig, received {type(config).__name__}")


def normalize_images(images, model_config: ModelConfig):
    """The reference normalisation, inside the model: mmseg (x - mean) / std, DeepLab x * 2/255 - 1."""
    convention = model_config.conventions
    return keras.layers.Rescaling(list(convention.input_scale), list(convention.input_offset), name="normalize")(
        images
    )


def build_segmenter(config: Config | ModelConfig, *, auxiliary: bool = False, input_shape=(None, None, 3),
                    batch_size: int | None = None) -> keras.Model:
    """Build the segmentation model of ``config`` as a Functional ``keras.Model``.

    ``auxiliary=True`` returns the training model with outputs ``{"logits", "aux_logits"}`` (requires
    ``model.aux_channels > 0``). ``input_shape`` may fix the spatial size (export, TFLite); by default any
    height and width is accepted. The weights are initialised (``model.init``); to build with weights, use
    :func:`keras_mv2seg.build_for_inference` (any file or preset name) or :func:`keras_mv2seg.from_preset`.
    """
    name, model_config = _model_config(config)
    if auxiliary and not model_config.aux_channels:
        raise ValueError(f"config {name!r} has no auxiliary head (model.aux_channels=0); use auxiliary=False")
    images = keras.Input(tuple(input_shape), batch_size=batch_size, name="images", dtype="float32")
    features = mobilenet_v2_features(normalize_images(images, model_config), model_config)
    align = model_config.conventions.align_corners
    logits = ResizeBilinear(align, name="logits", dtype="float32")([HEADS[model_config.head](features, model_config),
                                                                   images])
    if not auxiliary:
        model = keras.Model(images, logits, name=name)
    else:
        aux_logits = ResizeBilinear(align, name="aux_logits", dtype="float32")(
            [auxiliary_head(features, model_config), images])
        model = keras.Model(images, {"logits": logits, "aux_logits": aux_logits}, name=name)
    model.segmenter_config = model_config  # what the model was built from: read by weights.py, never sniffed
    return model


def set_sync_batchnorm(model: keras.Model, mode: str):
    """Synchronize BN statistics across replicas (``train.sync_batchnorm``): ``heads`` (the decode and auxiliary
    heads' BN layers), ``all`` or ``none``. Only matters under a distribution strategy."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            in_head = layer_part(layer.name) in ("decode", "aux")
            layer.synchronized = mode == "all" or (mode == "heads" and in_head)


def model_config_of(model: keras.Model) -> ModelConfig | None:
    """The :class:`ModelConfig` a model of :func:`build_segmenter` was built from (None for other models)."""
    return getattr(model, "segmenter_config", None)


def inference_model(model: keras.Model) -> keras.Model:
    """The single-output (``logits``) view of a training model, sharing its weights; identity otherwise."""
    if not isinstance(model.output, dict):
        return model
    view = keras.Model(model.input, model.output["logits"], name=model.name)
    view.segmenter_config = model_config_of(model)
    return view


def intermediate_model(model: keras.Model, names=("c1", "c2", "c3", "c4")) -> keras.Model:
    """A model returning the named internal tensors of a segmenter (backbone features and head logits),
    for parity checks: ``c1..c4`` (backbone outputs), ``head`` and ``aux`` (logits before the resize)."""
    names_in_model = {layer.name for layer in model.layers}

    def block_output(index):  # a block ends with its residual Add where it has one, else its projection BN
        return f"block{index}_add" if f"block{index}_add" in names_in_model else f"block{index}_project_bn"

    layer_of = {feature: block_output(index) for feature, index in FEATURE_BLOCKS.items()}
    layer_of.update(head="decode_conv_seg", aux="aux_conv_seg")
    outputs = {}
    for key in names:
        if key not in layer_of:
            raise ValueError(f"unknown intermediate {key!r}; choose from {sorted(layer_of)}")
        outputs[key] = model.get_layer(layer_of[key]).output
    return keras.Model(model.input, outputs)
