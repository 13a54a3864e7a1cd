"""Shared fixtures: the reference fixtures folder (skips when absent) and quiet TensorFlow."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

TOOLS = Path(__file__).resolve().parents[1] / "tools"
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


def parity(out: np.ndarray, ref: np.ndarray, tie: float = 1e-4) -> dict:
    """Relative error, max abs difference and class-map agreement of NHWC arrays; a swap between two classes
    the reference separates by at most ``tie`` (float-order noise across CPUs and oneDNN settings, well
    inside the 2e-3 max-abs bound the parity tests demand) counts as agreeing."""
    from keras_mv2seg.weights.check import compare

    return compare(out, ref, tie)


TINY_CONFIG = '''
from keras_mv2seg.configs._base import toy
CONFIG = toy("tiny_toy", head="{head}", widen_factor=0.25, decode_channels=8, aux_channels=4, c1_channels=8).replace(
    data_root=r"{root}", crop_size=(64, 64), base_scale=(128, 64), batch_size={batch}, max_iters={iters},
    eval_interval={interval}, checkpoint_interval={interval}, log_interval=1{extra})
'''


@pytest.fixture(scope="session")
def tiny_toy_root(tmp_path_factory):
    from keras_mv2seg.data.toy import make_toy_dataset

    return make_toy_dataset(tmp_path_factory.mktemp("toy"), train=8, val=2, height=64, width=128)


@pytest.fixture
def tiny_config_file(tmp_path, tiny_toy_root):
    """Write a tiny training config; returns a function (head, iters, interval, extra overrides) -> path."""
    def write(head="fcn", iters=4, interval=2, extra="", batch=2):
        path = tmp_path / f"tiny_{head}_{iters}_{batch}.py"
        path.write_text(TINY_CONFIG.format(head=head, root=tiny_toy_root, iters=iters, interval=interval,
                                           extra=extra, batch=batch))
        return path
    return write


def load_tool(name: str):
    """The module of ``tools/<name>.py`` (tools are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
