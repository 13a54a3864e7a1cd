"""Shared fixtures: the reference fixtures folder (skips when absent) and quiet TensorFlow."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED = Path(os.environ.get("KERAS_MV2SEG_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURES = SHARED / "fixtures"


def fixture_dir(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"reference fixtures not found at {path} (CI has ../shared beside the checkout; "
                    "set KERAS_MV2SEG_SHARED to point elsewhere)")
    return path


@pytest.fixture(scope="session")
def mmseg_fixtures() -> Path:
    return fixture_dir("mmseg_m-v2-d8_small")


@pytest.fixture(scope="session")
def deeplab_fixtures() -> Path:
    return fixture_dir("deeplab_mnv2_cityscapes")


@pytest.fixture(scope="session")
def varname_fixtures() -> Path:
    return fixture_dir("deeplab_mnv2_varnames")


def parity(out: np.ndarray, ref: np.ndarray) -> dict:
    """relative error, max abs difference and class-map agreement of NHWC logits."""
    return {
        "relative": float(np.linalg.norm(out - ref) / np.linalg.norm(ref)),
        "max_abs": float(np.abs(out - ref).max()),
        "agreement": float((out.argmax(-1) == ref.argmax(-1)).mean()),
    }
