"""Made by the reference: what mmseg's own ``load_checkpoint(model, path, strict=False)`` does when the parity
fixture checkpoints (19 classes, ``../shared/fixtures/mmseg_m-v2-d8_small``) go into an mmseg model of 5
classes -- the keys it does not load (size mismatch) and the ones it reports missing or unexpected. Written to
``load_from_5_classes.json`` beside this script, which tests/test_mmseg_convert.py compares with what
``keras_mv2seg.weights.load_for_fine_tuning`` skips. Run from the checkout with the reference kit's python:

    REF_PY=$(bash ../shared/reference/setup.sh)
    $REF_PY tests/reference_fixtures/make_load_from.py
"""
import json
import logging
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared"
sys.path.insert(0, str(SHARED / "reference"))

import torch  # noqa: E402
from mmseg_cfgs import HEADS, build  # noqa: E402
from mmengine.runner.checkpoint import load_checkpoint  # noqa: E402

torch.serialization.add_safe_globals([torch.torch_version.TorchVersion])  # the fixtures' metadata (trusted files)

NUM_CLASSES = 5


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


result = {"num_classes": NUM_CLASSES,
          "mmseg_load_checkpoint": "mmengine.runner.checkpoint.load_checkpoint(strict=False)", "heads": {}}
for head in HEADS:
    model = build(head, NUM_CLASSES, channels=64, aux_channels=32)
    collect = Collect()
    logger = logging.getLogger("load_from_fixture")
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    load_checkpoint(model, str(SHARED / "fixtures" / "mmseg_m-v2-d8_small" / f"{head}_cityscapes.pth"),
                    map_location="cpu", strict=False, logger=logger)
    logger.removeHandler(collect)
    text = "\n".join(collect.messages)
    mismatched = sorted(line.split("size mismatch for ")[1].split(":")[0]
                        for line in text.splitlines() if "size mismatch for " in line)
    missing = [line for line in text.splitlines() if line.startswith("missing keys")]
    unexpected = [line for line in text.splitlines() if line.startswith("unexpected key")]
    result["heads"][head] = {"not_loaded_size_mismatch": mismatched, "missing": missing, "unexpected": unexpected}
    print(head, result["heads"][head], flush=True)
(HERE / f"load_from_{NUM_CLASSES}_classes.json").write_text(json.dumps(result, indent=1) + "\n")
