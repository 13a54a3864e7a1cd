"""The restricted .pth reader: both serializations, and refusal of anything that would run code."""

import io
import pickle
import zipfile

import numpy as np
import pytest

from keras_mv2seg.weights.torch_pickle import UnsafeCheckpointError, load_state_dict, load_torch_file
from tests.pth_writer import Strided, save_pth


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_round_trip_of_a_written_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    state = {"a.weight": rng.normal(size=(4, 3, 3, 3)).astype("float32"), "a.bn.num_batches_tracked": np.int64(7),
             "b.bias": rng.normal(size=(5,)).astype("float64"), "scalar": np.float32(2.5)}
    save_pth(tmp_path / "x.pth", state, meta={"note": "test"})
    loaded = load_state_dict(tmp_path / "x.pth")
    assert list(loaded) == list(state)
    for key, value in state.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == np.asarray(value).dtype
    assert load_torch_file(tmp_path / "x.pth")["meta"] == {"note": "test"}


def test_non_contiguous_view_is_rebuilt_from_strides(tmp_path):
    storage = np.arange(30, dtype="float32")
    # a transposed 4x6 matrix starting at element 2: shape (6, 4), element strides (1, 6)
    save_pth(tmp_path / "t.pth", {"t": Strided(storage, 2, (6, 4), (1, 6))})
    expected = storage[2:26].reshape(4, 6).T
    np.testing.assert_array_equal(load_state_dict(tmp_path / "t.pth")["t"], expected)


def test_view_reading_past_its_storage_is_an_error(tmp_path):
    save_pth(tmp_path / "t.pth", {"t": Strided(np.zeros(10, "float32"), 5, (3, 3), (3, 1))})
    with pytest.raises(pickle.UnpicklingError, match="reads past its storage of 10 elements"):
        load_state_dict(tmp_path / "t.pth")


@pytest.mark.parametrize("offset, shape, stride, message", [
    (3, (4,), (-1,), "must be non-negative"),              # read 176 heap bytes before the buffer
    (0, (4,), (-1000000,), "must be non-negative"),        # segfaulted the converter
    (-2, (2,), (1,), "must be non-negative"),
    (0, (1 << 14, 1 << 15), (0, 0), "more than its storage's 4"),  # 4 bytes made 2 GiB
    (0, (2, 2), (1,), "one stride per dimension"),
])
def test_crafted_strides_are_refused_before_any_read(tmp_path, offset, shape, stride, message):
    save_pth(tmp_path / "t.pth", {"t": Strided(np.zeros(4, "float32"), offset, shape, stride)})
    with pytest.raises(pickle.UnpicklingError, match=message):
        load_state_dict(tmp_path / "t.pth")


def test_a_pickled_array_cannot_make_python_allocate_any_size(tmp_path):
    class Huge:
        def __reduce__(self):
            return np.ndarray, ((1 << 20, 1 << 20),)  # 8 TiB of float64 if called

    path = tmp_path / "huge.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"state_dict": {}, "meta": Huge()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"shape \(1048576, 1048576\) .* is refused"):
        load_torch_file(path)


@pytest.mark.parametrize("container", ["legacy", "zip"])
def test_pickle_that_would_run_a_command_is_refused(tmp_path, container):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": _RunsCommand(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if container == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", payload)
    else:  # legacy: magic number, protocol, sys_info, then the object
        stream = io.BytesIO()
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, stream, protocol=2)
        stream.write(payload)
        path.write_bytes(stream.getvalue())
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth.*(posix|os)\.system"):
        load_torch_file(path)
    assert not marker.exists(), "the pickled command ran"


def test_missing_file_and_non_checkpoint_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_torch_file(tmp_path / "nope.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(ValueError, match="text.pth.*not a PyTorch checkpoint"):
        load_torch_file(tmp_path / "text.pth")


def test_state_dict_with_a_non_tensor_entry_is_rejected(tmp_path):
    save_pth(tmp_path / "x.pth", {"a": np.zeros(2, "float32")})
    obj = load_torch_file(tmp_path / "x.pth")
    assert isinstance(obj["state_dict"]["a"], np.ndarray)
    with zipfile.ZipFile(tmp_path / "y.pth", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"state_dict": {"a": "text"}}, protocol=2))
    with pytest.raises(ValueError, match="y.pth.*'a' is str, not a tensor"):
        load_state_dict(tmp_path / "y.pth")


def test_fixture_zip_and_legacy_formats_hold_the_same_tensors(mmseg_fixtures):
    zipped = load_state_dict(mmseg_fixtures / "fcn_cityscapes.pth")
    legacy = load_state_dict(mmseg_fixtures / "fcn_cityscapes_legacy.pth")
    assert zipped.keys() == legacy.keys() and len(zipped) > 300
    for key in zipped:
        np.testing.assert_array_equal(zipped[key], legacy[key])
    assert zipped["backbone.conv1.conv.weight"].shape == (32, 3, 3, 3)
