"""The data-error convention, in one place for every wing: a problem with a file found inside a ``tf.data``
pipeline is raised there as a TensorFlow assertion whose sentence names the file (:func:`data_assertion`); where
the data is consumed (``fit``, an evaluation loop, a one-off read) :func:`data_errors_named` turns that assertion
into a :class:`DataError` carrying the sentence alone (the tools' exit status 1). The data pipeline writes the
assertions; training and evaluation only consume datasets, so they need this module and nothing of ``data/``."""

from __future__ import annotations

import contextlib
import re

import tensorflow as tf

__all__ = ["DataError", "data_assertion", "data_errors_named", "pipeline_problem"]


class DataError(ValueError):
    """A problem with a file of the dataset, found inside the input pipeline (the message names the file)."""


def data_assertion(ok, *parts):
    """An assertion op that, when ``ok`` is false, fails with the sentence made of ``parts`` (strings and
    tensors, the file's path among them) -- the form :func:`pipeline_problem` reads back."""
    return tf.debugging.Assert(ok, list(parts))


_ASSERTION = re.compile(r"assertion failed: (\[.*\])")  # "[part] [part] ...", parts may hold brackets


def pipeline_problem(error: Exception) -> str | None:
    """The sentence of one of the pipeline's own data assertions that ``error`` carries, or None for any other
    error."""
    if not isinstance(error, tf.errors.InvalidArgumentError):
        return None
    eager = error.message.partition("Summarized data: ")[2]  # an assertion run eagerly: one value per line
    if eager:
        parts = [line[2:-1] if line[:2] in ("b'", 'b"') else line for line in eager.splitlines()]
    else:
        match = next(filter(None, map(_ASSERTION.search, error.message.splitlines())), None)
        if match is None:
            return None
        parts = [part.strip() for part in match.group(1)[1:-1].split("] [")]  # a name may hold "[" or "]"
    return re.sub(r"\.\. (\d)", r"..\1", " ".join(parts)).replace("( ", "(").replace(" )", ")")


@contextlib.contextmanager
def data_errors_named():
    """Turn the pipeline's data assertions, raised where the data is consumed (``fit``, an evaluation loop),
    into a :class:`DataError` with their sentence, instead of a TensorFlow error."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        problem = pipeline_problem(error)
        if problem is None:
            raise
        if problem.startswith("label values outside"):
            problem += ("; fix the file, or make model.num_classes and data.ignore_index (and the dataset's label "
                        "mapping) match the labels")
        raise DataError(problem) from None
