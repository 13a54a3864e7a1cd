"""Running a trained model on what users have: ``Segmenter`` (images of any size, folders, arrays, videos; class
maps, probabilities, overlays), the band-by-band output writers and the video path."""

from keras_mv2seg.predictor.segmenter import OUTPUT_KINDS, Prediction, Segmenter  # noqa: F401

__all__ = ["Segmenter", "Prediction", "OUTPUT_KINDS"]
