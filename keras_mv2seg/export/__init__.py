"""Deployment: SavedModel for TensorFlow Serving, TFLite for phones."""
