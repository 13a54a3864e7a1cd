"""Convert a reference checkpoint to Keras weights and run the numeric checks the converter tools print.

Checks, in order:
1. strict import (every model weight set; every unused tensor named or explicitly skipped);
2. optional parity against reference logits for a given input (relative error, max abs difference, class-map
   agreement), the reference upsampled with the convention's resize when it is at head resolution. A pixel
   agrees when the class it picks is the reference's best or within the max-abs tolerance of it: two classes
   the reference separates by less than the error the check accepts anyway may swap under any other float
   summation order (another CPU, oneDNN on or off), so such a swap says nothing about the import;
3. the written ``.weights.h5`` reloaded into a fresh model gives bit-identical logits.

The weights are written to a temporary file and renamed to the output only when every check passed: a
failed conversion leaves no output file that could be mistaken for a good one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_mv2seg.data.toy import synthetic_image
from keras_mv2seg.files import atomic_save, refuse_existing
from keras_mv2seg.models.segmenter import build_segmenter, inference_model
from keras_mv2seg.weights.loading import load_weights
from keras_mv2seg.weights.saved import save_weights

# (relative error, max abs difference, class-map agreement) the parity check must meet, per convention.
TOLERANCES = {"mmseg": (1e-4, 2e-3, 0.9999), "deeplab": (None, 1e-3, 0.999)}


def _nhwc(reference: np.ndarray, num_classes: int) -> np.ndarray:
    if reference.ndim != 4:
        raise ValueError(f"reference logits must be 4-D (NCHW or NHWC), received shape {reference.shape}")
    if reference.shape[-1] == num_classes:
        return reference
    if reference.shape[1] == num_classes:
        return reference.transpose(0, 2, 3, 1)
    raise ValueError(f"reference logits of shape {reference.shape} have no axis of {num_classes} classes")


def compare(logits: np.ndarray, reference: np.ndarray, tie: float = 0.0) -> dict:
    """Relative error, max abs difference and class-map agreement of two NHWC arrays: exact, and counting a
    pixel whose chosen class the reference ranks within ``tie`` of its best as agreeing."""
    difference = np.abs(logits - reference)
    chosen = logits.argmax(-1)
    margin = reference.max(-1) - np.take_along_axis(reference, chosen[..., None], -1)[..., 0]
    return {
        "relative": float(np.linalg.norm(logits - reference) / max(np.linalg.norm(reference), 1e-30)),
        "max_abs": float(difference.max()),
        "agreement": float((margin <= tie).mean()),
        "exact_agreement": float((chosen == reference.argmax(-1)).mean()),
    }


def convert_and_check(config, source, output, *, images=None, reference=None, skip_classifier=False,
                      overwrite=False, log=print) -> dict:
    output = Path(output)
    if not output.name.endswith(".weights.h5"):
        raise ValueError(f"output must end with .weights.h5, received {output}")
    refuse_existing(output, overwrite)
    auxiliary = config.model.aux_channels > 0
    model = build_segmenter(config, auxiliary=auxiliary)
    report = load_weights(model, source, skip_classifier=skip_classifier)
    log(f"[1/3] import: {report}")
    infer = inference_model(model)
    images = synthetic_image() if images is None else np.asarray(images, np.float32)
    logits = np.asarray(infer(images, training=False))
    summary = {"weights": len(report.assigned), "logits_shape": list(logits.shape)}
    if reference is not None:
        reference = _nhwc(np.asarray(reference, np.float32), config.model.num_classes)
        if reference.shape[1:3] != logits.shape[1:3]:
            reference = config.model.conventions.resize(reference, logits.shape[1:3]).numpy()
        rel_tol, max_tol, agree_tol = TOLERANCES[config.model.convention]
        result = compare(logits, reference, tie=max_tol)
        passed = (rel_tol is None or result["relative"] <= rel_tol) and result["max_abs"] <= max_tol \
            and result["agreement"] >= agree_tol
        log(f"[2/3] parity vs reference logits: relative {result['relative']:.3e}, max |diff| "
            f"{result['max_abs']:.3e}, class maps agree on {100 * result['agreement']:.4f}% (exactly on "
            f"{100 * result['exact_agreement']:.4f}%, the rest within {max_tol} of the reference's best) "
            f"-> {'PASS' if passed else 'FAIL'} (tolerance: relative <= {rel_tol}, max <= {max_tol}, "
            f"agreement >= {agree_tol})")
        summary.update(parity=result, parity_passed=passed)
    else:
        log(f"[2/3] parity: no reference logits given (--input/--reference); logits on a synthetic image have "
            f"mean {logits.mean():.4f}, std {logits.std():.4f}")

    def reloads_identically(staging) -> bool:
        fresh = build_segmenter(config, auxiliary=auxiliary)
        load_weights(fresh, staging)
        summary["reload_max_abs"] = float(np.abs(np.asarray(inference_model(fresh)(images, training=False))
                                                 - logits).max())
        summary["passed"] = summary["reload_max_abs"] == 0 and summary.get("parity_passed", True)
        return summary["passed"]

    atomic_save(output, lambda staging: save_weights(model, staging, config), reloads_identically)
    difference = summary["reload_max_abs"]
    written = f"wrote {output}" if summary["passed"] else f"checks failed: {output} not written"
    log(f"[3/3] {written}; reloaded into a fresh model: max |diff| {difference:.1e} "
        f"-> {'PASS' if difference == 0 else 'FAIL'}")
    summary["output"] = str(output) if summary["passed"] else None
    return summary
