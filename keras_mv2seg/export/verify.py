"""Verification of a written export, the same for every runtime and for the tool: reload it, run it on images
of the config's dataset, compare with the Keras model (class-map agreement, logit difference) and list its ops.

Each check returns a :class:`Verification`: the lines to show and whether it passed. Float32 exports must agree
to :data:`MAX_LOGIT_DIFFERENCE` / :data:`MIN_AGREEMENT`; reduced precisions are reported, not asserted
(``benchmarks/export_quality.py`` measures their mIoU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_mv2seg.data.sources import has_data, sample_images
from keras_mv2seg.data.toy import synthetic_image
from keras_mv2seg.export import saved_model as saved_model_export
from keras_mv2seg.export import tflite as tflite_export
from keras_mv2seg.export import tflite_metadata
from keras_mv2seg.export.graph import stride_model
from keras_mv2seg.inference import pad_to_crop_logits

MAX_LOGIT_DIFFERENCE = 1e-3
MIN_AGREEMENT = 0.999


@dataclass
class Verification:
    passed: bool = True
    lines: list[str] = field(default_factory=list)

    def add(self, other: "Verification") -> "Verification":
        self.passed &= other.passed
        self.lines += other.lines
        return self


def check_images(config, data_root=None, count: int = 3, size=None, split: str = "val") -> list:
    """Images the checks run on: the config's data where there is some, else synthetic toy street scenes."""
    if not has_data(config, data_root):
        return [synthetic_image(*(size or (256, 512)), seed=i)[0] for i in range(max(count, 1))]
    return sample_images(config, split, data_root, count, size)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


TIE = 1e-5  # classes whose reference values are this close to the top one are equally right


def agreement_with_ties(labels: np.ndarray, reference: np.ndarray, tie: float = TIE) -> float:
    """Share of pixels whose class is the reference's top class or within ``tie`` of it (a float32 near-tie,
    e.g. probabilities of an untrained model that round to the same value, is no disagreement)."""
    chosen = np.take_along_axis(reference, labels[..., None].astype(np.int64), -1)[..., 0]
    return float((chosen >= reference.max(-1) - tie).mean())


def keras_logits(model, at_stride: bool = False):
    """``image [H, W, 3] -> logits`` of the Keras model, at full size or (``at_stride``) before the final resize,
    what an ``at_stride`` export computes."""
    network = stride_model(model) if at_stride else model
    return lambda image: network(np.asarray(image, np.float32)[None], training=False).numpy()[0]


def compare_runtime(run, model, images, output: str = "labels", precision: str = "float32",
                    at_stride: bool = False) -> Verification:
    """Compare ``run(batch) -> labels, logits or scores`` with the Keras model on ``images`` (float32 must
    match: the class map, and the logits or probabilities to :data:`MAX_LOGIT_DIFFERENCE`)."""
    agreements, differences = [], []
    reference = keras_logits(model, at_stride)
    for image in images[:3]:
        expected = reference(image)
        target = softmax(expected) if output == "scores" else expected
        result = run(np.asarray(image, np.float32)[None])[0]
        labels = result if output == "labels" else result.argmax(-1)
        agreements.append(agreement_with_ties(labels, target))
        if output != "labels":
            differences.append(float(np.abs(result - target).max()))
    agreement = min(agreements)
    line = (f"  labels agree with Keras on {100 * agreement:.3f}% of pixels (worst of {len(agreements)} images; "
            f"near-ties within {TIE:g} agree)")
    if differences:
        line += f", max |{'probability' if output == 'scores' else 'logit'} diff| {max(differences):.2e}"
    if at_stride:
        line += " (at the output stride)"
    if precision != "float32":
        return Verification(True, [line + f" ({precision}: reported, not asserted; benchmarks/export_quality.py "
                                          "measures its mIoU)"])
    passed = agreement >= MIN_AGREEMENT and (not differences or max(differences) <= MAX_LOGIT_DIFFERENCE)
    return Verification(passed, [line + f" -> {'PASS' if passed else 'FAIL'}"])


def verify_saved_model(path, model, images, pad_to_crop=None) -> Verification:
    """Reload a SavedModel (TF2, and the TF1 session loader TF Serving uses) and compare it with Keras."""
    loaded = tf.saved_model.load(str(path))
    result = Verification()
    for index, image in enumerate(images[:3]):
        batch = np.clip(np.round(image), 0, 255).astype(np.uint8)[None]
        expected = (pad_to_crop_logits(model, batch, pad_to_crop) if pad_to_crop
                    else model(batch.astype(np.float32), training=False)).numpy()
        logits = loaded.serve_logits(tf.constant(batch))["logits"].numpy()
        labels = loaded.signatures["serving_default"](images=tf.constant(batch))["labels"].numpy()
        session = saved_model_export.run_in_tf1_session(path, batch)["labels"]
        difference = float(np.abs(logits - expected).max())
        agreement = float((labels == expected.argmax(-1)).mean())
        same_in_tf1 = bool((session == labels).all())
        passed = difference <= MAX_LOGIT_DIFFERENCE and agreement >= MIN_AGREEMENT and same_in_tf1
        result.add(Verification(passed, [
            f"  image {index} {batch.shape[1]}x{batch.shape[2]}: max |logit diff| {difference:.2e}, labels agree "
            f"{100 * agreement:.3f}%, TF1 session loader identical: {same_in_tf1} -> {'PASS' if passed else 'FAIL'}"]))
    return result


def verify_tflite(content: bytes, model, images, output: str = "labels", quantization: str = "float32",
                  at_stride: bool = False, class_names=None) -> Verification:
    """The TFLite op list (no Flex ops, no SpaceToBatch lowering), its metadata (the labels file holds
    ``class_names``; score outputs declare their activation) and the LiteRT run compared with Keras."""
    names = tflite_export.op_names(content)
    problems = tflite_export.check_ops(names)
    result = Verification(not problems, [f"  ops: {', '.join(names)}",
                                         f"  op check: {'PASS' if not problems else 'FAIL: ' + '; '.join(problems)}"])
    result.add(verify_tflite_metadata(content, output, class_names))
    return result.add(compare_runtime(tflite_export.runner(content), model, images, output, quantization, at_stride))


def verify_tflite_metadata(content: bytes, output: str, class_names=None) -> Verification:
    """Read a TFLite file's metadata back: present, its labels file packed and equal to ``class_names``, and the
    activation MediaPipe applies declared for score outputs."""
    metadata = tflite_metadata.read_segmenter_metadata(content)
    if metadata is None:
        return Verification(False, ["  metadata: FAIL: none (MediaPipe's ImageSegmenter refuses such a file)"])
    problems = [f"associated file {name} not packed" for name in metadata["files_missing"]]
    labels = []
    if not metadata["files_missing"]:
        labels = tflite_metadata.associated_file(content, tflite_metadata.LABELS_FILE).decode().splitlines()
        if class_names is not None and labels != list(class_names):
            problems.append(f"labels file holds {len(labels)} names, the config has {len(class_names)} classes")
    wanted = tflite_export.ACTIVATION_OF_OUTPUT[output]
    if metadata["activation"] != wanted:
        problems.append(f"activation {metadata['activation']} declared, {wanted} expected")
    image = metadata["inputs"][0]
    normalisation = f"mean {image['mean']} std {image['std']}" if "mean" in image else "no normalisation (uint8)"
    line = (f"  metadata: {metadata['name']} {metadata['version']}, input {image['content']} ({normalisation}), "
            f"{len(labels)} labels, activation {metadata['activation']}, parser >= {metadata['min_parser_version']}")
    return Verification(not problems, [line + (" -> PASS" if not problems else " -> FAIL: " + "; ".join(problems))])


def op_line(ops) -> str:
    return f"  ops: {', '.join(f'{name} x{count}' for name, count in sorted(ops.items()))}"
