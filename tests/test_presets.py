"""Pretrained models by name, through a local HTTP server on 127.0.0.1 (no internet): download, hash check,
conversion, cached reuse, refusal of wrong or cut-off files, the offline message, mirrors, and parity of the
preset's model with the reference fixtures."""

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

import keras_mv2seg
from keras_mv2seg.weights import presets
from tests.conftest import parity


class Server:
    """Serves ``files`` (name -> bytes); counts requests; ``cut`` names files sent only half, then closed;
    ``seconds`` spreads each response over that long (a slow server)."""

    def __init__(self):
        self.files, self.requests, self.cut, self.seconds = {}, [], set(), 0.0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append(name)
                if name not in outer.files:
                    self.send_error(404)
                    return
                data = outer.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                data = data[: len(data) // 2] if name in outer.cut else data
                chunks = 10 if outer.seconds else 1
                for index in range(chunks):
                    self.wfile.write(data[index * len(data) // chunks: (index + 1) * len(data) // chunks])
                    time.sleep(outer.seconds / chunks)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()  # nothing listens on the port any more: connections are refused
            self.httpd = None


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("KERAS_MV2SEG_WEIGHTS_URL", raising=False)
    running = Server()
    yield running
    running.close()


def mmseg_preset(server, mmseg_fixtures, name="test_fcn"):
    data = (mmseg_fixtures / "fcn_cityscapes.pth").read_bytes()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    file_name = f"{name}_20200825_124817-{prefix}.pth"
    server.files[file_name] = data
    return presets.Preset(name, "fcn_m-v2-d8_512x1024_80k_cityscapes", f"{server.url}/mm/{file_name}", "cityscapes",
                          "test fixture", None, sha256_prefix=prefix,
                          overrides={"decode_channels": 64, "aux_channels": 32})


def deeplab_preset(server, deeplab_fixtures, name="test_deeplab"):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in deeplab_fixtures.glob("model.ckpt.*"):
            archive.add(path, arcname=f"{name}/{path.name}")
        info = tarfile.TarInfo(f"{name}/frozen_inference_graph.pb")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"fake"))
    file_name = f"{name}_2018_02_05.tar.gz"
    server.files[file_name] = buffer.getvalue()
    return presets.Preset(name, "deeplab_mnv2_cityscapes", f"{server.url}/models/{file_name}", "cityscapes",
                          "test fixture", None)


def test_the_table_has_every_reference_row_with_its_hash_and_number():
    names = presets.list_presets()
    assert len(names) == 14
    mmseg = [presets.PRESETS[n] for n in names if presets.PRESETS[n].kind == "mmseg"]
    assert len(mmseg) == 9 and all(len(p.sha256_prefix) == 8 for p in mmseg)
    assert {p.config for p in mmseg} == {n.removesuffix("_2023") for n in names if presets.PRESETS[n].kind == "mmseg"}
    assert presets.PRESETS["fcn_m-v2-d8_512x1024_80k_cityscapes"].mIoU == 61.54
    assert presets.PRESETS["fcn_m-v2-d8_512x1024_80k_cityscapes_2023"].mIoU == 71.19
    for preset in presets.PRESETS.values():
        keras_mv2seg.get_config(preset.config, **preset.overrides)  # every preset names a real config
        assert preset.url.startswith(("https://download.openmmlab.com/", "http://download.tensorflow.org/"))


def test_mmseg_preset_download_hash_convert_cache_and_parity(server, mmseg_fixtures):
    table = {"test_fcn": mmseg_preset(server, mmseg_fixtures)}
    model = keras_mv2seg.from_preset("test_fcn", training=True, presets=table)
    images = np.load(mmseg_fixtures / "input_rgb_uint8.npy").astype("float32")
    result = parity(np.asarray(model(images, training=False)["logits"]),
                    np.load(mmseg_fixtures / "fcn_logits.npy").transpose(0, 2, 3, 1))
    assert result["relative"] <= 1e-4 and result["max_abs"] <= 2e-3 and result["agreement"] >= 0.9999, result
    assert len(server.requests) == 1
    inference = keras_mv2seg.from_preset("test_fcn", presets=table)  # converted once more for this view, no request
    again = keras_mv2seg.from_preset("test_fcn", presets=table)
    assert len(server.requests) == 1  # the second (and third) call: no network
    np.testing.assert_array_equal(np.asarray(inference(images)), np.asarray(again(images)))
    converted = presets.cache_dir() / "converted"
    assert sorted(p.name for p in converted.iterdir()) == ["test_fcn.inference.weights.h5",
                                                           "test_fcn.training.weights.h5"]


def test_wrong_hash_is_refused_and_nothing_is_cached(server, mmseg_fixtures):
    preset = mmseg_preset(server, mmseg_fixtures)
    table = {"test_fcn": replace(preset, sha256_prefix="00000000")}
    with pytest.raises(ValueError, match="SHA-256 .* does not start with 00000000 .*nothing was kept"):
        keras_mv2seg.from_preset("test_fcn", presets=table)
    assert not list((presets.cache_dir() / "downloads").iterdir())
    assert not (presets.cache_dir() / "converted").exists()


def test_cut_off_download_leaves_nothing_usable(server, mmseg_fixtures):
    preset = mmseg_preset(server, mmseg_fixtures)
    server.cut.add(preset.file_name)
    with pytest.raises((ValueError, ConnectionError)):
        keras_mv2seg.from_preset("test_fcn", presets={"test_fcn": preset})
    assert not list((presets.cache_dir() / "downloads").iterdir())  # no .part, no file a later call would take
    server.cut.clear()
    keras_mv2seg.from_preset("test_fcn", presets={"test_fcn": preset})  # the next call downloads it whole


def test_cut_off_tarball_without_a_published_hash_is_not_kept(server, deeplab_fixtures, monkeypatch):
    preset = deeplab_preset(server, deeplab_fixtures)
    whole = server.files[preset.file_name]
    server.files[preset.file_name] = whole[: len(whole) // 2]  # a server that ends the file early, size and all
    with pytest.raises(ValueError, match="incomplete or corrupt .tar.gz.*nothing was kept"):
        keras_mv2seg.from_preset("test_deeplab", presets={"test_deeplab": preset})
    assert not list((presets.cache_dir() / "downloads").iterdir())


def test_offline_names_the_url_the_file_and_the_cache_folder(server, mmseg_fixtures):
    preset = mmseg_preset(server, mmseg_fixtures)
    server.close()
    with pytest.raises(ConnectionError) as error:
        keras_mv2seg.from_preset("test_fcn", presets={"test_fcn": preset})
    message = str(error.value)
    assert preset.url in message and preset.file_name in message and str(presets.cache_dir() / "downloads") in message
    # the user puts the file where the message says: it is used, hash-checked like a download
    folder = presets.cache_dir() / "downloads"
    (folder / preset.file_name).write_bytes((mmseg_fixtures / "fcn_cityscapes.pth").read_bytes())
    keras_mv2seg.from_preset("test_fcn", presets={"test_fcn": preset})


def test_mirror_folder_and_mirror_url(server, mmseg_fixtures, tmp_path, monkeypatch):
    preset = mmseg_preset(server, mmseg_fixtures)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / preset.file_name).write_bytes(server.files[preset.file_name])
    offline = replace(preset, url="https://unreachable.invalid/x/" + preset.file_name)
    monkeypatch.setenv("KERAS_MV2SEG_WEIGHTS_URL", str(mirror))
    keras_mv2seg.from_preset("test_fcn", presets={"test_fcn": offline})
    assert server.requests == []
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "other_home"))
    monkeypatch.setenv("KERAS_MV2SEG_WEIGHTS_URL", server.url + "/site-mirror")
    keras_mv2seg.from_preset("test_fcn", presets={"test_fcn": offline})
    assert server.requests == [preset.file_name]


def test_deeplab_tarball_preset_matches_the_official_outputs(server, deeplab_fixtures):
    import tensorflow as tf

    table = {"test_deeplab": deeplab_preset(server, deeplab_fixtures)}
    model = keras_mv2seg.from_preset("test_deeplab", presets=table)
    images = np.load(deeplab_fixtures / "input_image_f32.npy")
    logits = np.asarray(model(images, training=False))
    expected = tf.compat.v1.image.resize_bilinear(np.load(deeplab_fixtures / "logits_os8.npy"), images.shape[1:3],
                                                  align_corners=True).numpy()
    assert np.abs(logits - expected).max() <= 1e-3
    keras_mv2seg.from_preset("test_deeplab", presets=table)
    assert len(server.requests) == 1


def test_every_preset_resolves_through_the_local_server(server, monkeypatch):
    """Each real row's file name fetched from the mirror; the hash check runs on what is served (so each is
    refused here: the served bytes are not the released file) -- the name, URL building and refusal path work."""
    monkeypatch.setenv("KERAS_MV2SEG_WEIGHTS_URL", server.url)
    for name, preset in presets.PRESETS.items():
        server.files[preset.file_name] = b"not the released file"
        with pytest.raises(ValueError, match="SHA-256|incomplete or corrupt .tar.gz"):
            presets.preset_weights(name)
    assert sorted(server.requests) == sorted(p.file_name for p in presets.PRESETS.values())


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'nope'; known presets: deeplab_mnv2_ade20k"):
        keras_mv2seg.from_preset("nope")


def test_predict_tool_from_a_preset_name_to_an_overlay(tmp_path):
    """tools/predict.py --preset NAME IMAGE: here the converted weights are already in the cache (as after a first
    call), so the command needs no network; the download path itself is tested above."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from keras_mv2seg.cli import write_png

    home = tmp_path / "keras_home"
    name = "deeplab_mnv2_cityscapes_trainfine"
    model = keras_mv2seg.build_segmenter(presets.preset_config(name))
    converted = home / "keras_mv2seg" / "converted" / f"{name}.inference.weights.h5"
    converted.parent.mkdir(parents=True)
    model.save_weights(converted)
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3)).astype(np.uint8)
    write_png(tmp_path / "photo.png", image)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "tools" / "predict.py"), "--preset", name,
                           str(tmp_path / "photo.png"), "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=root,
                          env={**os.environ, "KERAS_HOME": str(home), "KERAS_MV2SEG_WEIGHTS_URL": "http://127.0.0.1:9"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "photo_overlay.png").is_file() and (tmp_path / "out" / "photo_labels.png").is_file()


def test_a_preset_name_works_wherever_a_weights_file_does(server, mmseg_fixtures, monkeypatch):
    from keras_mv2seg.weights import build_for_inference

    preset = mmseg_preset(server, mmseg_fixtures)
    monkeypatch.setitem(presets.PRESETS, preset.name, preset)
    config = presets.preset_config(preset.name)
    model = build_for_inference(config, preset.name)  # what tools/test.py, predict.py, export.py call
    reference = keras_mv2seg.from_preset(preset.name)
    images = np.load(mmseg_fixtures / "input_rgb_uint8.npy").astype("float32")
    np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(reference(images)))
    assert len(server.requests) == 1


def _released_file_for(preset, tmp_path):
    """A file in the released format and layout of ``preset``'s config (random weights), as its source would
    serve it: an mmseg .pth (training view, auxiliary head included) or a DeepLab .tar.gz with a TF checkpoint
    under the official variable names. Returns (bytes, the model whose weights it holds)."""
    import tensorflow as tf

    from keras_mv2seg.weights import deeplab, mmseg
    from keras_mv2seg.weights.port import variable_role, weighted_layers
    from tests.pth_writer import save_pth

    config = presets.preset_config(preset.name)
    model = keras_mv2seg.build_segmenter(config, auxiliary=config.model.aux_channels > 0)
    if preset.kind == "mmseg":
        state = {}
        for layer in weighted_layers(model):
            for variable in layer.weights:
                role, value = variable_role(variable), np.asarray(variable)
                if role == "kernel":
                    depthwise = mmseg.unit_of(layer)[1] == "depthwise"
                    value = value.transpose(2, 3, 0, 1) if depthwise else value.transpose(3, 2, 0, 1)
                state[mmseg.source_key(layer, role)] = value
        path = tmp_path / preset.file_name
        save_pth(path, state)
        return path.read_bytes(), model
    tensors = {deeplab.source_key(layer, variable_role(v)): np.asarray(v) for layer in weighted_layers(model)
               for v in layer.weights}
    folder = tmp_path / preset.name
    folder.mkdir()
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(folder / "model.ckpt-30000"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[tf.constant(tensors[n]) for n in names])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname=preset.file_name.removesuffix(".tar.gz"))
    return buffer.getvalue(), model


@pytest.mark.heavy
def test_every_preset_converts_through_the_local_server(server, monkeypatch, tmp_path):
    """Every row of the table, served in its source's format and layout from 127.0.0.1 (random weights: the
    released bytes cannot be had offline, so each row's hash is that of the file served), downloads, converts
    with the strict importers and loads into the preset's model with the same outputs."""
    monkeypatch.setenv("KERAS_MV2SEG_WEIGHTS_URL", server.url)
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 96, 3)).astype("float32")
    for name, preset in presets.PRESETS.items():
        data, source_model = _released_file_for(preset, tmp_path)
        server.files[preset.file_name] = data
        served = replace(preset, sha256_prefix=hashlib.sha256(data).hexdigest()[:8] if preset.sha256_prefix else "")
        model = keras_mv2seg.from_preset(name, presets={name: served})
        expected = keras_mv2seg.inference_model(source_model)(image, training=False)
        np.testing.assert_array_equal(np.asarray(model(image, training=False)), np.asarray(expected), err_msg=name)
    assert sorted(server.requests) == sorted(p.file_name for p in presets.PRESETS.values())


def test_build_for_inference_takes_weights_by_preset_name(server, mmseg_fixtures, monkeypatch):
    preset = mmseg_preset(server, mmseg_fixtures)
    monkeypatch.setitem(presets.PRESETS, preset.name, preset)
    model = keras_mv2seg.build_for_inference(presets.preset_config(preset.name), preset.name)
    images = np.load(mmseg_fixtures / "input_rgb_uint8.npy").astype("float32")
    np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(keras_mv2seg.from_preset(preset.name)(images)))


def _only_file(folder):
    files = list(folder.iterdir())
    assert len(files) == 1, files
    return files[0]


def test_a_cached_file_that_fails_its_check_is_set_aside_named_and_rebuilt_once(server, mmseg_fixtures):
    """NaN weights or a garbled file in converted/, a different .pth under the promised name in downloads/:
    each is named in a warning, moved to rejected/ and built again -- never served."""
    table = {"test_fcn": mmseg_preset(server, mmseg_fixtures)}
    images = np.load(mmseg_fixtures / "input_rgb_uint8.npy").astype("float32")
    expected = np.asarray(keras_mv2seg.from_preset("test_fcn", presets=table)(images))
    cache = presets.cache_dir()
    converted = cache / "converted" / "test_fcn.inference.weights.h5"
    import h5py

    with h5py.File(converted, "a") as handle:  # NaN in one kernel, as a bad disk or a bad writer leaves it
        def first_kernel(name, node):
            return name if isinstance(node, h5py.Dataset) and node.ndim == 4 else None
        dataset = handle[handle.visititems(first_kernel)]
        dataset[...] = np.full(dataset.shape, np.nan, dataset.dtype)
    with pytest.warns(presets.CachedFileWarning,
                      match=f"{converted}: 1 weights hold NaN/inf values.*moved it to .*rejected"):
        model = keras_mv2seg.from_preset("test_fcn", presets=table)
    np.testing.assert_array_equal(np.asarray(model(images)), expected)
    assert len(server.requests) == 1  # rebuilt from the verified download, no new request

    converted.write_bytes(b"half a file")
    with pytest.warns(presets.CachedFileWarning, match="not a readable Keras weights file"):
        np.testing.assert_array_equal(np.asarray(keras_mv2seg.from_preset("test_fcn", presets=table)(images)),
                                      expected)

    download = cache / "downloads" / table["test_fcn"].file_name
    download.write_bytes((mmseg_fixtures / "aspp_cityscapes.pth").read_bytes())  # another model, the same name
    converted.unlink()
    with pytest.warns(presets.CachedFileWarning, match=f"{download}: SHA-256 .* does not start with"):
        np.testing.assert_array_equal(np.asarray(keras_mv2seg.from_preset("test_fcn", presets=table)(images)),
                                      expected)
    assert len(server.requests) == 2  # downloaded again
    assert len(list((cache / "rejected").iterdir())) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", presets.CachedFileWarning)  # what was rebuilt is served from now on
        keras_mv2seg.from_preset("test_fcn", presets=table)


def test_a_tarball_that_passes_its_read_but_holds_no_checkpoint_is_set_aside_and_fetched_again(server,
                                                                                                deeplab_fixtures):
    preset = deeplab_preset(server, deeplab_fixtures)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("test_deeplab/README")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    download = presets.cache_dir() / "downloads" / preset.file_name
    download.parent.mkdir(parents=True)
    download.write_bytes(buffer.getvalue())  # put there by hand, as the offline message suggests
    with pytest.warns(presets.CachedFileWarning, match="passed its file check but not the strict import"):
        keras_mv2seg.from_preset(preset.name, presets={preset.name: preset})
    assert server.requests == [preset.file_name]


@pytest.mark.heavy
def test_processes_asking_for_one_preset_at_once_share_one_download_and_conversion(server, mmseg_fixtures):
    """Three real processes (the workers of one run) call from_preset together against a slow server: one
    downloads and converts, the others wait for it; all get the same verified weights, nothing is left over."""
    preset = mmseg_preset(server, mmseg_fixtures)
    server.seconds = 3.0
    root = Path(__file__).resolve().parents[1]
    script = (f"import json, sys; sys.path.insert(0, {str(root)!r})\n"
              "import numpy as np\nfrom keras_mv2seg.weights import presets\n"
              "p = presets.Preset(**json.loads(sys.argv[1]))\n"
              "model = presets.from_preset(p.name, training=True, presets={p.name: p})\n"
              "print('sum', float(np.asarray(model(np.full((1, 64, 64, 3), 100.0, 'float32'))['logits']).sum()))\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    workers = [subprocess.Popen([sys.executable, "-c", script, json.dumps(asdict(preset))], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    results = [worker.communicate(timeout=600) for worker in workers]
    for worker, (out, err) in zip(workers, results):
        assert worker.returncode == 0, err[-3000:]
    sums = {line for out, _ in results for line in out.splitlines() if line.startswith("sum")}
    assert len(sums) == 1, sums
    assert server.requests == [preset.file_name]  # one download for all three
    cache = presets.cache_dir()
    assert _only_file(cache / "downloads").name == preset.file_name
    assert _only_file(cache / "converted").name == "test_fcn.training.weights.h5"
    assert not (cache / "rejected").exists()


def test_from_preset_with_another_class_count(server, mmseg_fixtures):
    """keras-hub's from_preset(..., num_classes=N): every weight but the classifiers from the preset."""
    table = {"test_fcn": mmseg_preset(server, mmseg_fixtures)}
    released = keras_mv2seg.from_preset("test_fcn", training=True, presets=table)
    model = keras_mv2seg.from_preset("test_fcn", training=True, num_classes=4, presets=table)
    assert model.output["logits"].shape[-1] == 4 and model.segmenter_config.num_classes == 4
    source = {v.path: v.numpy() for v in released.weights}
    for variable in model.weights:
        if "conv_seg" not in variable.path:
            np.testing.assert_array_equal(variable.numpy(), source[variable.path], err_msg=variable.path)
        else:
            assert variable.shape[-1] == 4
    assert len(server.requests) == 1
