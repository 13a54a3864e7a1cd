"""Weight porting core shared by the mmseg and DeepLab importers, and the one naming rule both read
(:func:`unit_of`: a Keras layer name -> its unit and kind).

An importer supplies ``source_key(layer, role) -> str | None`` (``None``: the layer is deliberately left as
it is, e.g. a skipped classifier) and ``transform(layer, role, array) -> array``. :func:`port_weights`
then checks every model weight and every source tensor and refuses to assign anything unless the mapping
is complete: it raises one :class:`WeightMappingError` listing every missing key, every mis-shaped tensor
and every unused source tensor that was not explicitly allowed.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field

import keras
import numpy as np

logger = logging.getLogger("keras_mv2seg")

# Keras variable name -> role; convs and depthwise convs both call their kernel "kernel".
ROLES = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")


class WeightMappingError(ValueError):
    """The source checkpoint and the model do not map one to one."""


@dataclass
class PortReport:
    source: str
    assigned: list[str] = field(default_factory=list)  # model variable paths
    skipped_layers: list[str] = field(default_factory=list)  # model layers left untouched on purpose
    skipped_source: list[str] = field(default_factory=list)  # source tensors not used, on purpose
    ignored_source: list[str] = field(default_factory=list)  # bookkeeping tensors (step counters, slots)

    def __str__(self):
        return (f"{self.source}: set {len(self.assigned)} weights; left {len(self.skipped_layers)} layers as "
                f"they were; skipped {len(self.skipped_source)} and ignored {len(self.ignored_source)} "
                "source tensors")


def weighted_layers(model: keras.Model):
    """Every layer owning weights, nested models flattened."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from weighted_layers(layer)
        elif layer.weights:
            yield layer


def variable_role(variable) -> str:
    role = variable.path.rsplit("/", 1)[-1]
    if role not in ROLES:
        raise WeightMappingError(f"variable {variable.path} has role {role!r}, expected one of {ROLES}")
    return role


def port_weights(model: keras.Model, tensors: dict[str, np.ndarray], source_key, transform, *, source: str,
                 ignore: tuple[str, ...] = (), skip_source: tuple[str, ...] = (),
                 allow_non_finite: bool = False) -> PortReport:
    """Assign ``tensors`` to ``model`` through ``source_key``/``transform``; all-or-nothing. A tensor holding
    NaN or infinity is refused (naming it) unless ``allow_non_finite``.

    ``ignore``: glob patterns of source tensors that are bookkeeping (not weights). ``skip_source``: glob
    patterns of weights the caller chose not to load (reported in the result, never an error).
    """
    report = PortReport(source)
    plan, missing, mis_shaped, used, non_finite = [], [], [], set(), []
    for layer in weighted_layers(model):
        keys = [(variable, source_key(layer, variable_role(variable))) for variable in layer.weights]
        if all(key is None for _, key in keys):
            report.skipped_layers.append(layer.name)
            continue
        for variable, key in keys:
            if key is None:
                missing.append(f"{variable.path} (no source name)")
                continue
            if key not in tensors:
                missing.append(f"{key} (for {variable.path})")
                continue
            used.add(key)
            value = transform(layer, variable_role(variable), np.asarray(tensors[key]))
            if tuple(value.shape) != tuple(variable.shape):
                mis_shaped.append(f"{key}: source {tuple(tensors[key].shape)} -> {tuple(value.shape)}, "
                                  f"model {variable.path} expects {tuple(variable.shape)}")
                continue
            if not allow_non_finite and np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                non_finite.append(f"{key}: {int((~np.isfinite(value)).sum())} of {value.size} values are NaN/inf")
            plan.append((variable, value))
    unused = []
    for key in tensors:
        if key in used:
            continue
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in ignore):
            report.ignored_source.append(key)
        elif any(fnmatch.fnmatchcase(key, pattern) for pattern in skip_source):
            report.skipped_source.append(key)
        else:
            unused.append(key)
    problems = []
    if missing:
        problems.append(f"{len(missing)} model weights have no tensor in the source:\n  " + "\n  ".join(missing))
    if mis_shaped:
        problems.append(f"{len(mis_shaped)} tensors have the wrong shape:\n  " + "\n  ".join(mis_shaped))
    if non_finite:
        problems.append(f"{len(non_finite)} tensors hold non-finite values (a diverged or corrupt checkpoint; "
                        "allow_non_finite=True loads them anyway):\n  " + "\n  ".join(non_finite))
    if unused:
        problems.append(f"{len(unused)} source tensors are not used by the model:\n  " + "\n  ".join(sorted(unused)))
    if problems:
        raise WeightMappingError(f"{source} does not fit model {model.name!r}; nothing was loaded.\n"
                                 + "\n".join(problems))
    for variable, value in plan:
        variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))
        report.assigned.append(variable.path)
    logger.info("%s", report)
    return report


def unit_of(layer) -> tuple[str, str]:
    """(unit name, kind) of a Keras layer: kind is conv, depthwise, bn or classifier."""
    name = layer.name
    if name.endswith("_conv_seg"):
        return name[: -len("_conv_seg")], "classifier"
    if name.endswith("_bn"):
        return name[:-3], "bn"
    if name.endswith("_conv"):
        return name[:-5], "conv"
    if type(layer).__name__ == "DepthwiseConv2D":
        return name, "depthwise"
    raise WeightMappingError(f"layer {name!r} ({type(layer).__name__}) follows no naming rule of keras_mv2seg")


def transfer_weights(source_model: keras.Model, model: keras.Model, *, source: str,
                     skip_classifier: bool = False) -> PortReport:
    """Copy the weights of one segmenter into another, layer by layer of the same name (layer names are API),
    all or nothing like :func:`port_weights`: the way weights reach a model of another class count (the
    classifiers ``*_conv_seg`` left as initialised with ``skip_classifier``) or the inference view from the
    training one (the auxiliary head's weights skipped and reported). Any other difference is refused."""
    tensors = {f"{layer.name}/{variable_role(v)}": v.numpy() for layer in weighted_layers(source_model)
               for v in layer.weights}
    skip = ["*_conv_seg/*"] if skip_classifier else []
    if not any(layer.name.startswith("aux_") for layer in weighted_layers(model)):
        skip.append("aux_*")

    def key(layer, role):
        return None if skip_classifier and unit_of(layer)[1] == "classifier" else f"{layer.name}/{role}"

    return port_weights(model, tensors, key, lambda layer, role, array: array, source=source,
                        skip_source=tuple(skip))
