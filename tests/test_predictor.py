"""Inference on what users have: the compiled engine against the in-memory forms, images of every format read
against a pixel budget, outputs written band by band, ``Segmenter``, and ``tools/predict.py`` on images,
probabilities, test-time augmentation, videos (PyAV- and OpenCV-written, truncated) and a camera stand-in."""

import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

import keras_mv2seg
from keras_mv2seg.cli import run_main
from keras_mv2seg.data.image_files import ImageTooLarge, image_header, read_image
from keras_mv2seg.inference import (
    Inference, Tiling, multi_scale_flip_logits, pad_to_crop_logits, slide_logits,
)
from keras_mv2seg.inference.rows import ArrayRows, Resized, Windowed
from keras_mv2seg.predictor import Segmenter
from keras_mv2seg.predictor.outputs import NpyRows, PngRows
from tests.conftest import load_tool

OVERRIDES = dict(decode_channels=16, aux_channels=8, c1_channels=8)


@pytest.fixture(scope="module")
def toy():
    config = keras_mv2seg.get_config("toy", **OVERRIDES)
    model = keras_mv2seg.build_segmenter(config)
    classifier = model.get_layer("decode_conv_seg")  # decisive logits: few near-ties between classes
    classifier.set_weights([w * 20 for w in classifier.get_weights()])
    return config, model


def _all_rows(stream, band):
    return np.concatenate([stream.rows(a, min(a + band, stream.height)) for a in range(0, stream.height, band)])


def _image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)


def test_windowed_equals_the_in_memory_slide_and_holds_one_window_of_rows(toy):
    _, model = toy
    image = _image(150, 230)
    expected = slide_logits(model, image[None].astype(np.float32), (64, 96), (40, 60)).numpy()[0]
    engine = Inference(model, Tiling(mode="slide", crop=(64, 96), stride=(40, 60)))
    for band in (7, 17, 150):  # bands that wrap around the ring of sums in different places
        stream, probabilities = engine.scores(image)
        assert not probabilities and isinstance(stream, Windowed) and stream.windows() == 4 * 4
        held = []
        rows = []
        for start in range(0, 150, band):
            rows.append(stream.rows(start, min(start + band, 150)))
            held.append(len(stream.ring))
        np.testing.assert_array_equal(np.concatenate(rows), expected)
        assert max(held) <= 64 + band  # the band of rows windows still cover, never the image
    np.testing.assert_array_equal(engine.class_map(image), expected.argmax(-1))


def test_whole_mode_goes_window_by_window_over_the_budget(toy):
    _, model = toy
    image = _image(90, 120)
    whole = Inference(model, Tiling(mode="whole", crop=(48, 64), max_whole_pixels=90 * 120))
    windowed = Inference(model, Tiling(mode="whole", crop=(48, 64), max_whole_pixels=90 * 120 - 1))
    assert not whole.tiling.windowed(90, 120) and windowed.tiling.windowed(90, 120)
    expected = model(image[None].astype(np.float32)).numpy()[0].argmax(-1)
    np.testing.assert_array_equal(whole.class_map(image), expected)
    slide = slide_logits(model, image[None].astype(np.float32), (48, 64), (32, 42)).numpy()[0].argmax(-1)
    np.testing.assert_array_equal(windowed.class_map(image), slide)


def test_augmented_and_pad_to_crop_equal_the_in_memory_forms(toy):
    config, model = toy
    image = _image(70, 110, seed=1)
    ratios = (0.5, 1.0, 1.5)
    expected = multi_scale_flip_logits(model, image[None].astype(np.float32), scale=(110, 70), ratios=ratios,
                                       predict=lambda m, x: slide_logits(m, x, (32, 48), (20, 30))).numpy()[0]
    engine = Inference(model, Tiling(mode="slide", crop=(32, 48), stride=(20, 30), scales=ratios, flip=True,
                                     base_scale=(110, 70)))
    stream, probabilities = engine.scores(image)
    assert probabilities
    np.testing.assert_allclose(_all_rows(stream, 13), expected, atol=1e-6)
    deeplab = keras_mv2seg.build_segmenter(keras_mv2seg.get_config("deeplab_mnv2_dm05_pascal"))
    for shape in ((40, 50), (150, 90)):  # inside the crop: padded; larger: scaled down, logits scaled back
        picture = _image(*shape, seed=2)
        expected = pad_to_crop_logits(deeplab, picture[None].astype(np.float32), (65, 65)).numpy()[0]
        stream, _ = Inference(deeplab, Tiling(mode="pad", crop=(65, 65), align_corners=True)).scores(picture)
        np.testing.assert_allclose(_all_rows(stream, 32), expected, atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(7, 5), (40, 33), (13, 64)])
def test_resized_rows_equal_tensorflow_resize(align_corners, size):
    source = np.random.default_rng(3).normal(size=(21, 17, 4)).astype(np.float32)
    expected = tf.raw_ops.ResizeBilinear(images=source[None], size=size, align_corners=align_corners,
                                         half_pixel_centers=not align_corners).numpy()[0]
    got = _all_rows(Resized(ArrayRows(source), size, align_corners), 3)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def _write_with_pillow(path, array, **options):
    from PIL import Image

    Image.fromarray(array).save(path, **options)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".gif", ".tif", ".webp"])
def test_every_format_is_sized_from_its_header_and_read_as_rgb(tmp_path, suffix):
    image = _image(37, 53)
    path = tmp_path / f"photo{suffix}"
    _write_with_pillow(path, image, **({"lossless": True} if suffix == ".webp" else {}))
    kind, height, width = image_header(path)
    assert (height, width) == (37, 53)
    pixels = read_image(path)
    assert pixels.shape == (37, 53, 3) and pixels.dtype == np.uint8
    if suffix in (".png", ".bmp", ".tif", ".webp"):
        np.testing.assert_array_equal(pixels, image)


def test_sixteen_bit_and_grey_tiffs_are_scaled_as_tensorflow_scales_pngs(tmp_path):
    import imagecodecs

    grey16 = np.random.default_rng(4).integers(0, 65536, (9, 11)).astype(np.uint16)
    (tmp_path / "g.tif").write_bytes(imagecodecs.tiff_encode(grey16))
    png = tf.io.decode_png(tf.io.encode_png(grey16[..., None]), channels=3).numpy()
    np.testing.assert_array_equal(read_image(tmp_path / "g.tif"), png)


def test_a_file_stating_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data)))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
                     + chunk(b"IEND", b""))
    with pytest.raises(ImageTooLarge, match=r"bomb.png: 50000x50000 pixels \(2500.0 megapixels.*--max-megapixels"):
        read_image(bomb)
    small = tmp_path / "small.png"
    small.write_bytes(tf.io.encode_png(_image(20, 30)).numpy())
    with pytest.raises(ImageTooLarge, match="budget of 0.0 megapixels"):
        read_image(small, max_pixels=599)
    monkeypatch.setenv("KERAS_MV2SEG_MAX_PIXELS", "600")
    assert read_image(small).shape == (20, 30, 3)
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(ValueError, match="cut.jpg: not a decodable image"):
        read_image(tmp_path / "cut.jpg")


def test_band_writers_write_what_whole_writers_write_and_nothing_when_cut_short(tmp_path):
    rgb, grey = _image(45, 31), _image(45, 31)[..., 0]
    with PngRows(tmp_path / "rgb.png", 45, 31, 3) as png:
        for start in range(0, 45, 8):
            png.write(rgb[start:start + 8])
    with PngRows(tmp_path / "grey.png", 45, 31, 1) as png:
        png.write(grey)
    np.testing.assert_array_equal(tf.io.decode_png((tmp_path / "rgb.png").read_bytes()).numpy(), rgb)
    np.testing.assert_array_equal(tf.io.decode_png((tmp_path / "grey.png").read_bytes()).numpy()[..., 0], grey)
    scores = np.random.default_rng(5).random((45, 31, 4)).astype(np.float32)
    with NpyRows(tmp_path / "scores.npy", scores.shape) as npy:
        for start in range(0, 45, 10):
            npy.write(scores[start:start + 10])
    np.testing.assert_array_equal(np.load(tmp_path / "scores.npy", mmap_mode="r"), scores.astype(np.float16))
    png = PngRows(tmp_path / "short.png", 45, 31, 1)
    png.write(grey[:10])
    with pytest.raises(ValueError, match="10 of 45 rows"):
        png.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.png", "rgb.png", "scores.npy"]


def test_segmenter_predicts_and_writes_the_same_class_maps(toy, tmp_path):
    config, model = toy
    segmenter = Segmenter(model, config, mode="slide", crop=(32, 48))
    image = _image(50, 70)
    result = segmenter.predict(image, probabilities=True)
    assert result.labels.shape == (50, 70) and result.probabilities.shape == (50, 70, config.model.num_classes)
    np.testing.assert_allclose(result.probabilities.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(result.labels, segmenter.inference.class_map(image))
    assert result.overlay().shape == (50, 70, 3) and result.confidence().max() <= 255
    path = tmp_path / "photo.png"
    path.write_bytes(tf.io.encode_png(image).numpy())
    both = segmenter.predict([path, image])
    np.testing.assert_array_equal(both[0].labels, both[1].labels)
    targets = {kind: tmp_path / f"out_{kind}.{'npy' if kind == 'scores' else 'png'}"
               for kind in ("labels", "overlay", "scores", "confidence")}
    present = segmenter.write(path, targets)
    with pytest.raises(FileExistsError, match="out_labels.png exists; pass overwrite=True"):
        segmenter.write(path, targets)
    assert present == set(np.unique(result.labels).tolist())
    np.testing.assert_array_equal(tf.io.decode_png(targets["labels"].read_bytes()).numpy()[..., 0], result.labels)
    np.testing.assert_array_equal(tf.io.decode_png(targets["overlay"].read_bytes()).numpy(), result.overlay())
    np.testing.assert_allclose(np.load(targets["scores"]), result.probabilities, atol=1e-3)
    frames = segmenter.predict_frames([image, image])
    np.testing.assert_array_equal(frames[1], result.labels)


@pytest.fixture(scope="module")
def toy_weights(toy, tmp_path_factory):
    config, model = toy
    path = tmp_path_factory.mktemp("weights") / "toy.weights.h5"
    keras_mv2seg.save_weights(model, path, config)
    return ["toy", str(path), "--cfg-options", *(f"{k}={v}" for k, v in OVERRIDES.items())]


def test_predict_tool_writes_probabilities_with_test_time_augmentation(toy, toy_weights, tmp_path, capsys):
    config, model = toy
    image = _image(40, 60)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "photo.tif").write_bytes(__import__("imagecodecs").tiff_encode(image))
    out = tmp_path / "out"
    argv = [*toy_weights[:2], str(tmp_path / "in"), "--out-dir", str(out), "--scores", "--flip", "--scales", "0.75",
            "1.0", *toy_weights[2:]]
    assert run_main(load_tool("predict").main, argv) == 0
    scores = np.load(out / "photo_scores.npy")
    expected = Segmenter(model, config, scales=(0.75, 1.0), flip=True).predict(image, probabilities=True)
    np.testing.assert_allclose(scores, expected.probabilities, atol=1e-3)
    confidence = tf.io.decode_png((out / "photo_confidence.png").read_bytes()).numpy()[..., 0]
    np.testing.assert_array_equal(confidence, expected.confidence())
    assert "photo.tif -> " in capsys.readouterr().out


def _write_video(path, frames, rate=12, codec=None):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec or ("libx264" if path.suffix == ".mp4" else "mpeg4"), rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _read_video(path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, stream.average_rate


def test_predict_tool_segments_videos_frame_for_frame(toy_weights, tmp_path, capsys):
    import cv2

    frames = [_image(48, 64, seed=index) for index in range(7)]
    (tmp_path / "in").mkdir()
    _write_video(tmp_path / "in" / "clip.mp4", frames, rate=12)
    writer = cv2.VideoWriter(str(tmp_path / "in" / "cv.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for frame in frames[:5]:
        writer.write(frame[..., ::-1])
    writer.release()
    out = tmp_path / "out"
    argv = [*toy_weights[:2], str(tmp_path / "in"), "--out-dir", str(out), "--save-labels", "--batch", "3",
            *toy_weights[2:]]
    assert run_main(load_tool("predict").main, argv) == 0
    for stem, count, rate in (("clip", 7, 12), ("cv", 5, 10)):
        written, written_rate = _read_video(out / f"{stem}_overlay.mp4")
        assert len(written) == count and written[0].shape == (48, 64, 3) and written_rate == rate
        assert len(list((out / f"{stem}_labels").glob("*.png"))) == count
    assert "7 frames, 64x48 at 12 frames/s" in capsys.readouterr().out


def test_a_truncated_video_keeps_the_frames_before_the_damage(toy_weights, tmp_path, capsys):
    frames = [_image(48, 64, seed=index) for index in range(12)]
    whole = tmp_path / "whole.avi"
    _write_video(whole, frames)
    cut = tmp_path / "in" / "cut.avi"
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "out"
    assert run_main(load_tool("predict").main, [*toy_weights[:2], str(cut), "--out-dir", str(out),
                                                *toy_weights[2:]]) == 1
    err = capsys.readouterr().err
    assert f"{cut}: ends after frame" in err and "of the 12 its header declares" in err
    written, _ = _read_video(out / "cut_overlay.mp4")
    assert 0 < len(written) < 12


def test_camera_streams_through_the_same_path(toy_weights, tmp_path, capsys):
    stand_in = tmp_path / "camera.avi"
    _write_video(stand_in, [_image(32, 48, seed=index) for index in range(6)], rate=15)
    out = tmp_path / "out"
    argv = [*toy_weights[:2], "--camera", str(stand_in), "--max-frames", "4", "--out-dir", str(out), *toy_weights[2:]]
    assert run_main(load_tool("predict").main, argv) == 0
    written, rate = _read_video(out / "camera_overlay.mp4")
    assert len(written) == 4 and rate == 15
    assert "segmented at" in capsys.readouterr().out
