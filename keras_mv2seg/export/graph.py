"""The fixed-size deployment graph every runtime export starts from, and the rules they share.

* :func:`native_model` -- the model rebuilt at the export size with native dilated depthwise convolutions (one
  grouped, dilated convolution per layer instead of SpaceToBatch pairs) and, with ``winograd`` 2 or 4, the dense
  3x3 stride-1 convolutions by Winograd F(m x m, 3 x 3); same weights.
* :func:`serve` -- the serving computation, written once: input ``images`` RGB 0..255 [1, H, W, 3], float32 or
  uint8 (normalisation inside), output ``labels`` (int32 class map, the argmax inside the graph), ``logits`` or
  ``scores`` (the softmax probabilities); :func:`stride_model` -- the same network without its final resize
  (logits at the output stride, for clients that resize the scores themselves, as MediaPipe does).
* :func:`export_function` -- that computation as a ``tf.function`` with its input signature (fixed or dynamic
  height/width), what ONNX and OpenVINO convert.
* The Winograd rule (:func:`winograd_applies`, :func:`winograd_tile`, :func:`check_winograd`) and the int8
  calibration rule (:func:`check_calibration`, :func:`calibration_images`), each said once.
"""

from __future__ import annotations

import importlib

import keras
import tensorflow as tf

from keras_mv2seg.data.sources import has_data, sample_images
from keras_mv2seg.models.layers import winograd_convolutions
from keras_mv2seg.models.segmenter import build_segmenter

RUNTIMES = ("onnxruntime", "openvino")
RUNTIMES_BY_FORMAT = {"onnx": "onnxruntime", "openvino": "openvino"}
OUTPUTS = ("labels", "logits", "scores")
HEAD_LOGITS_LAYER = "decode_conv_seg"  # every head's classifier: its output is the logits at the output stride


def require(module: str, extra: str):
    """Import an optional runtime package, or ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is not installed: pip install -e '.[{extra}]'") from None


def check_output(output: str):
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, received {output!r}")


# --- Winograd ---------------------------------------------------------------------------------------------------

def winograd_applies(backend: str, precision: str, dynamic: bool = False) -> bool:
    """Whether Winograd convolutions are offered: fixed-size float32 ONNX Runtime / OpenVINO graphs (quantizers
    and reduced precisions expect direct convolutions; the tiling needs a static size)."""
    return backend in RUNTIMES and precision == "float32" and not dynamic


def check_winograd(tile: int, backend: str, precision: str, dynamic: bool = False):
    """ValueError where a Winograd ``tile`` (2 or 4) is asked for a graph it does not apply to."""
    if tile and not winograd_applies(backend, precision, dynamic):
        raise ValueError(f"Winograd convolutions apply to fixed-size float32 ONNX Runtime / OpenVINO graphs, not "
                         f"{backend} {precision}{' dynamic' if dynamic else ''} (pass winograd=0 or 'auto')")


def winograd_tile(choice, backend: str, precision: str, dynamic: bool = False) -> int:
    """The Winograd output tile for a choice: ``"auto"`` -> 4 where it applies (:func:`winograd_applies`), else
    0; 0, 2 or 4 as given, ValueError where 2 or 4 cannot apply."""
    if choice == "auto":
        return 4 if winograd_applies(backend, precision, dynamic) else 0
    tile = int(choice)
    check_winograd(tile, backend, precision, dynamic)
    return tile


# --- int8 calibration -------------------------------------------------------------------------------------------

def check_calibration(precision: str, images, parameter: str = "calibration_images"):
    """int8 needs calibration images (real images of the config's dataset); every int8 path calls this, naming
    its own ``parameter``."""
    if precision == "int8" and not list(images if images is not None else ()):
        what = "calibration images" if parameter == "calibration_images" else parameter
        raise ValueError(f"int8 needs {what} (real images of the config's dataset, see "
                         f"keras_mv2seg.export.graph.calibration_images): pass {parameter}=")


def calibration_images(config, data_root=None, count: int = 32, size=None) -> list:
    """``count`` images of the config's training split for int8 calibration, resized to ``size`` (H, W). Never
    noise or synthetic scenes: without data of the config's dataset (``data_root``; the toy configs generate
    theirs) this is refused."""
    if not has_data(config, data_root):
        raise ValueError(f"int8 calibration uses real images of the config's dataset: pass data_root "
                         f"({config.name!r} reads {config.data.dataset})")
    return sample_images(config, "train", data_root, count, size)


# --- the graph --------------------------------------------------------------------------------------------------

def native_model(config, model, input_size, winograd: int = 0):
    """``model``'s weights in a fixed-size build (``input_size`` (H, W); None: any size) with native dilated
    depthwise convolutions and, with ``winograd`` 2 or 4, Winograd dense 3x3 stride-1 convolutions."""
    if input_size is None and winograd:
        raise ValueError("Winograd convolutions need a fixed input size: pass winograd=0 with dynamic=True")
    with winograd_convolutions(winograd):
        shape = {} if input_size is None else {"input_shape": (*input_size, 3)}
        native = build_segmenter(config.replace(depthwise_implementation="native"), batch_size=1, **shape)
    if len(native.weights) != len(model.weights):
        raise ValueError(f"model has {len(model.weights)} weights, the export build of {config.name!r} has "
                         f"{len(native.weights)}: pass the inference model of the same config")
    native.set_weights(model.get_weights())
    return native


def stride_model(native):
    """``native`` without its final bilinear resize: the head's logits at the output stride (H/8, W/8 for the
    M-V2-D8 models), same weights."""
    view = keras.Model(native.input, native.get_layer(HEAD_LOGITS_LAYER).output, name=f"{native.name}_at_stride")
    view.segmenter_config = getattr(native, "segmenter_config", None)
    return view


def serve(native, images, output: str = "labels"):
    """The serving computation of every runtime export: the class map (``labels``, int32), the logits or the
    softmax ``scores``; uint8 ``images`` are cast inside the graph (0..255 either way)."""
    if images.dtype != tf.float32:
        images = tf.cast(images, tf.float32)
    logits = native(images, training=False)
    if output == "labels":
        return tf.argmax(logits, axis=-1, output_type=tf.int32, name="labels")
    if output == "scores":
        return tf.nn.softmax(logits, axis=-1, name="scores")
    return tf.identity(logits, name="logits")


def export_function(config, model, input_size, *, output: str = "labels", dynamic: bool = False,
                    winograd: int = 0):
    """(tf.function, input signature) of the export graph at ``input_size`` (H, W); ``dynamic``: any size."""
    check_output(output)
    shape = (None, None) if dynamic else tuple(int(v) for v in input_size)
    native = native_model(config, model, None if dynamic else shape, winograd)
    signature = [tf.TensorSpec([1, *shape, 3], tf.float32, name="images")]
    return tf.function(lambda images: serve(native, images, output), input_signature=signature), signature
