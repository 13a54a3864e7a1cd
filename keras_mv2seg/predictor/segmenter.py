"""``Segmenter``: one object that runs a trained model on what users have -- image files of any size, folders,
arrays, videos -- and gives class maps, probabilities and overlays (what mmseg's ``MMSegInferencer`` and
keras-hub's ``ImageSegmenter.predict`` give). The tools use it; so can a Python user:

    segmenter = Segmenter.from_preset("deeplabv3plus_m-v2-d8_cityscapes")   # or Segmenter.from_config(cfg, weights)
    result = segmenter.predict("photo.jpg", probabilities=True)
    result.labels, result.probabilities, result.overlay()

The network runs compiled, whole or through the config's sliding window within a memory budget
(``inference.Tiling``); files are written band by band (``outputs``), so memory stays bounded at any image size.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from keras_mv2seg.data.image_files import read_image
from keras_mv2seg.datasets_meta import classes_of, colorize, palette_of
from keras_mv2seg.files import disk_full_at, refuse_existing
from keras_mv2seg.inference import Inference, Tiling
from keras_mv2seg.predictor.outputs import NpyRows, PngRows, blend, confidence_rows

OUTPUT_KINDS = ("labels", "overlay", "scores", "confidence")  # scores: float16 .npy probabilities


@dataclasses.dataclass
class Prediction:
    """One image's result: ``labels`` int32 [H, W] class ids, ``probabilities`` float32 [H, W, C] (when asked
    for), the RGB uint8 ``image`` they belong to, and the classes' names and colours."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    image: np.ndarray
    classes: tuple
    palette: np.ndarray
    source: str | None = None

    def overlay(self, opacity: float = 0.5) -> np.ndarray:
        """The image with each class's colour laid over it (``opacity``: weight of the colours, 0..1)."""
        return blend(self.image, colorize(self.labels, self.palette), opacity)

    def confidence(self) -> np.ndarray:
        """The top probability of each pixel as uint8 0..255 (needs ``probabilities=True``)."""
        if self.probabilities is None:
            raise ValueError("confidence() needs the probabilities: predict(..., probabilities=True)")
        return confidence_rows(self.probabilities)

    def present(self) -> list[str]:
        """'id name' of each class found in the image."""
        return [f"{index} {self.classes[index]}" for index in np.unique(self.labels)]


class Segmenter:
    """A trained segmentation model ready for inference (see the module). ``tiling`` (default: the config's test
    settings, ``Tiling.from_config``) or ``tiling_options`` (``mode``, ``crop``, ``stride``, ``max_whole_pixels``,
    ``scales``, ``flip``, ``batch``) say how the network sees images; ``max_pixels`` caps the images read from
    files (checked from their headers, see ``data.image_files``)."""

    def __init__(self, model, config, *, tiling: Tiling | None = None, max_pixels: int | None = None,
                 **tiling_options):
        self.model, self.config = model, config
        self.tiling = tiling or Tiling.from_config(config, **tiling_options)
        self.inference = Inference(model, self.tiling)
        self.classes, self.palette = classes_of(config), palette_of(config)
        self.max_pixels = max_pixels

    @classmethod
    def from_config(cls, config, weights=None, **options) -> "Segmenter":
        """``config``: a ``Config``, a table name or a config file; ``weights``: any file
        ``build_for_inference`` reads (training's ``.weights.h5``, mmseg ``.pth``, DeepLab checkpoints) or a
        preset name."""
        from keras_mv2seg.config import Config, get_config
        from keras_mv2seg.weights import build_for_inference

        config = config if isinstance(config, Config) else get_config(str(config))
        return cls(build_for_inference(config, weights), config, **options)

    @classmethod
    def from_preset(cls, name: str, **options) -> "Segmenter":
        """A released model by name (``keras_mv2seg.list_presets()``), downloaded and verified once."""
        from keras_mv2seg.weights.presets import from_preset, preset_config

        return cls(from_preset(name), preset_config(name), **options)

    def read(self, path) -> np.ndarray:
        """RGB uint8 [H, W, 3] of an image file, refused before decoding when over the pixel budget."""
        return read_image(path, self.max_pixels)

    def _image(self, item) -> tuple[np.ndarray, str | None]:
        if isinstance(item, (str, Path)):
            return self.read(item), str(item)
        image = np.asarray(item)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"an image must be [height, width, 3] RGB, received shape {image.shape}")
        return image, None

    def predict(self, inputs, *, probabilities: bool = False):
        """Segment one image (a file path or an RGB [H, W, 3] array, uint8 or float 0..255) -> :class:`Prediction`,
        or several (a list, or an [N, H, W, 3] batch) -> a list of them."""
        single = isinstance(inputs, (str, Path)) or (isinstance(inputs, np.ndarray) and inputs.ndim == 3)
        items = [inputs] if single else list(inputs)
        results = []
        for item in items:
            image, source = self._image(item)
            labels, scores = [], []
            for _, _, ids, probs in self.inference.bands(image, probabilities=probabilities):
                labels.append(ids)
                if probabilities:
                    scores.append(probs)
            results.append(Prediction(np.concatenate(labels), np.concatenate(scores) if probabilities else None,
                                      np.asarray(image), self.classes, self.palette, source))
        return results[0] if single else results

    def predict_frames(self, frames) -> list[np.ndarray]:
        """int32 class maps of RGB frames (video): frames of one size go through the network together, as many
        at once as the whole-image budget allows, when the tiling runs whole images without augmentation."""
        frames = [np.asarray(frame) for frame in frames]
        if not frames:
            return []
        height, width = frames[0].shape[:2]
        tiling = self.tiling
        batched = (tiling.mode == "whole" and not tiling.augmented and not tiling.windowed(height, width)
                   and all(frame.shape == frames[0].shape for frame in frames))
        if not batched:
            return [self.inference.class_map(frame) for frame in frames]
        per_call = max(1, (tiling.max_whole_pixels or height * width * len(frames)) // (height * width))
        labels = []
        for first in range(0, len(frames), per_call):
            logits = self.inference.forward(np.stack(frames[first:first + per_call]).astype(np.float32))
            labels.extend(np.argmax(logits, axis=-1).astype(np.int32))
        return labels

    def video(self, source, out_path, **options) -> dict:
        """Segment a video file (or, with ``camera=True``, a camera) into an overlay video; see
        ``predictor.video.segment_video``."""
        from keras_mv2seg.predictor.video import segment_video

        return segment_video(self, source, out_path, **options)

    def write(self, image, targets: dict, *, opacity: float = 0.5, overwrite: bool = False, writer=None) -> set:
        """Segment ``image`` (path or array) into the files of ``targets`` ({kind: path} for kinds of
        ``OUTPUT_KINDS``: class-id PNG, overlay PNG, float16 probabilities ``.npy``, confidence PNG), band by
        band: nothing of full size but the decoded image is held. An existing file is refused unless
        ``overwrite``. ``writer`` (an executor) encodes and writes while the network runs on the next rows. Returns
        the class ids present."""
        unknown = set(targets) - set(OUTPUT_KINDS)
        if unknown:
            raise ValueError(f"unknown output kinds {sorted(unknown)}; known: {OUTPUT_KINDS}")
        for target in targets.values():
            refuse_existing(target, overwrite)
        if "labels" in targets and len(self.classes) > 256:
            raise ValueError(f"{len(self.classes)} classes do not fit an 8-bit class-id PNG; write the scores instead")
        image, _ = self._image(image)
        height, width = image.shape[:2]
        want_scores = "scores" in targets or "confidence" in targets
        files = {}
        present = set()
        pending = collections.deque()
        own_writer = writer is None
        writer = writer or ThreadPoolExecutor(1)
        try:
            for kind, path in targets.items():
                if kind == "scores":
                    files[kind] = NpyRows(path, (height, width, len(self.classes)))
                else:
                    files[kind] = PngRows(path, height, width, 3 if kind == "overlay" else 1)
            for start, stop, ids, probs in self.inference.bands(image, probabilities=want_scores):
                present.update(np.unique(ids).tolist())
                pending.append(writer.submit(self._write_band, files, image[start:stop], ids, probs, opacity))
                while len(pending) > 2:  # a bounded number of bands in flight
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
            for handle in files.values():
                handle.close()
        except BaseException as error:
            for future in pending:
                future.cancel()
            for handle in files.values():
                if not handle.handle.closed:
                    handle.abort()
            raise disk_full_at(error, Path(next(iter(targets.values()))).parent) or error
        finally:
            if own_writer:
                writer.shutdown()
        return present

    def write_all(self, jobs, *, opacity: float = 0.5, overwrite: bool = False):
        """Segment many images into files, overlapping the work: the next image is decoded on a reader thread
        while the network runs on this one, and outputs are encoded and written on a writer thread while the
        network computes the next rows (TensorFlow, the decoders and the deflater release the GIL). ``jobs``:
        (path, targets) pairs as :meth:`write` takes. Yields (path, image shape [H, W, 3] and the class ids
        present, seconds) per image, or (path, the ValueError that kept it from being read, None): unreadable
        images and images over the pixel budget are reported, not raised, so a folder goes on."""
        jobs = list(jobs)
        with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
            ahead = {}

            def read_ahead(index):
                if index < len(jobs) and index not in ahead:
                    ahead[index] = reader.submit(self.read, jobs[index][0])

            for index, (path, targets) in enumerate(jobs):
                read_ahead(index)
                read_ahead(index + 1)
                try:
                    image = ahead.pop(index).result()
                except ValueError as error:
                    yield path, error, None
                    continue
                started = time.perf_counter()
                present = self.write(image, targets, opacity=opacity, overwrite=overwrite, writer=writer)
                yield path, (image.shape, present), time.perf_counter() - started

    def _write_band(self, files, image_rows, ids, probabilities, opacity):
        if "labels" in files:
            files["labels"].write(ids.astype(np.uint8))
        if "overlay" in files:
            files["overlay"].write(blend(image_rows, colorize(ids, self.palette), opacity))
        if "scores" in files:
            files["scores"].write(probabilities)
        if "confidence" in files:
            files["confidence"].write(confidence_rows(probabilities))
