"""ONNX Runtime and OpenVINO exports: float32 parity with Keras, int8 quantization, the tools and the shared
deployment interface. Small models at small sizes; speed is measured by benchmarks/bench_deploy.py, not here."""

import numpy as np
import pytest

import keras_mv2seg
from keras_mv2seg.data.toy import synthetic_image
from keras_mv2seg.export import deploy as deployment
from keras_mv2seg.export import onnx as onnx_export
from keras_mv2seg.export import openvino as openvino_export
from tests.conftest import load_tool

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")
pytest.importorskip("openvino")

SIZE = (48, 64)


@pytest.fixture(scope="module")
def small(request):
    head = getattr(request, "param", "sepaspp")
    config = keras_mv2seg.get_config("toy", head=head, decode_channels=32, aux_channels=0, c1_channels=16)
    model = keras_mv2seg.build_segmenter(config)
    images = [synthetic_image(*SIZE, seed=i) for i in range(3)]
    return config, model, images


def _check_float(run, model, images, output):
    for image in images:
        expected = model(image, training=False).numpy()
        result = run(image)
        if output == "logits":
            assert result.shape == expected.shape and np.abs(result - expected).max() <= 1e-3
        else:
            assert result.dtype == np.int32 and result.shape == expected.shape[:3]
            assert (result == expected.argmax(-1)).mean() >= 0.999


@pytest.mark.parametrize("output", ["logits", "labels"])
def test_onnx_float32_matches_keras_with_native_dilations(small, output):
    config, model, images = small
    content = onnx_export.to_onnx(config, model, SIZE, output=output)
    ops = onnx_export.onnx_ops(content)
    assert ops["Conv"] >= 50 and "SpaceToDepth" not in ops and "DepthToSpace" not in ops
    assert (ops["ArgMax"] == 1) == (output == "labels")
    _check_float(onnx_export.onnx_runner(content), model, images, output)


def test_onnx_dynamic_size_runs_any_size(small):
    config, model, _ = small
    run = onnx_export.onnx_runner(onnx_export.to_onnx(config, model, None, output="logits", dynamic=True))
    for size in ((48, 64), (40, 72)):
        image = synthetic_image(*size, seed=5)
        np.testing.assert_allclose(run(image), model(image, training=False).numpy(), atol=1e-3)


def test_onnx_int8_is_quantized_per_channel_and_close(small):
    config, model, images = small
    calibration = [synthetic_image(*SIZE, seed=10 + i)[0] for i in range(4)]
    content = onnx_export.quantize_onnx(onnx_export.to_onnx(config, model, SIZE, output="logits"), calibration)
    ops = onnx_export.onnx_ops(content)
    assert ops["QuantizeLinear"] > 10 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    import onnx

    graph = onnx.load_from_string(content).graph
    scales = {i.name: i for i in graph.initializer}
    conv_weight_scales = [node.input[1] for node in graph.node if node.op_type == "DequantizeLinear"
                          and node.input[0].endswith("_quantized") and scales.get(node.input[1]) is not None
                          and len(scales[node.input[1]].dims) == 1 and scales[node.input[1]].dims[0] > 1]
    assert conv_weight_scales, "weights are quantized per channel (one scale per output channel)"
    expected = model(images[0], training=False).numpy()
    result = onnx_export.onnx_runner(content)(images[0])
    assert np.abs(result - expected).max() <= 0.25 * np.abs(expected).max() + 1e-6
    with pytest.raises(ValueError, match="calibration images"):
        onnx_export.quantize_onnx(content, [])


@pytest.mark.parametrize("output", ["logits", "labels"])
def test_openvino_float32_matches_keras(small, output):
    config, model, images = small
    ov_model = openvino_export.to_openvino(config, model, SIZE, output=output)
    assert ov_model.outputs[0].get_any_name() == output
    # float32 is asked for explicitly: on AVX512_BF16/AMX CPUs OpenVINO's default inference precision is bf16
    compiled = openvino_export.openvino_compile(ov_model, "float32")
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")
    _check_float(openvino_export.openvino_runner(ov_model, "float32"), model, images, output)
    assert openvino_export.openvino_runner(ov_model, "bf16")(images[0]).shape[:3] == (1, *SIZE)


def test_openvino_int8_with_nncf_runs_convolutions_in_int8(small, tmp_path):
    config, model, images = small
    calibration = [synthetic_image(*SIZE, seed=10 + i)[0] for i in range(4)]
    quantized = openvino_export.quantize_openvino(openvino_export.to_openvino(config, model, SIZE, output="logits"), calibration)
    assert openvino_export.openvino_ops(quantized)["FakeQuantize"] > 10
    path = openvino_export.save_openvino(quantized, tmp_path / "m.xml")
    assert path.with_suffix(".bin").is_file()
    precisions = openvino_export.openvino_runtime_precisions(openvino_export.openvino_compile(path, "int8"))
    assert any(layer == "Convolution" and precision in ("u8", "i8") for layer, precision in precisions)
    expected = model(images[0], training=False).numpy()
    assert np.abs(openvino_export.openvino_runner(path, "int8")(images[0]) - expected).max() \
        <= 0.25 * np.abs(expected).max() + 1e-6
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        openvino_export.save_openvino(quantized, path)


def test_openvino_int8_pspnet_compiles_without_a_fallback():
    """PSPNet's adaptive pooling is two MatMuls per bin; quantized, OpenVINO 2026.4's CPU plugin refused them at
    this size with either NNCF preset (dnnl_postops_composer.cpp:526). They stay in float; the convs are int8."""
    size = (128, 256)
    config = keras_mv2seg.get_config("pspnet_m-v2-d8_512x1024_80k_cityscapes", decode_channels=32, aux_channels=0)
    model = keras_mv2seg.build_segmenter(config)
    calibration = [synthetic_image(*size, seed=i)[0] for i in range(2)]
    quantized = openvino_export.quantize_openvino(openvino_export.to_openvino(config, model, size), calibration)
    precisions = openvino_export.openvino_runtime_precisions(openvino_export.openvino_compile(quantized, "int8"))
    assert any(layer == "Convolution" and precision in ("u8", "i8") for layer, precision in precisions)
    assert not any(layer == "MatMul" and precision in ("u8", "i8") for layer, precision in precisions)


@pytest.mark.parametrize("backend, precision", [
    ("keras", "float32"), ("tflite", "int8"), ("onnxruntime", "float32"), ("onnxruntime", "int8"),
    ("openvino", "float32"), ("openvino", "int8"),
])
def test_every_backend_deploys_behind_one_interface(small, backend, precision):
    config, model, images = small
    calibration = [synthetic_image(*SIZE, seed=10 + i)[0] for i in range(2)]
    deployed = deployment.deploy(backend, config, model, SIZE, precision=precision, calibration_images=calibration)
    labels = deployed(images[0])
    assert labels.shape == (1, *SIZE) and labels.dtype == np.int32
    if precision == "float32":
        assert (labels == model(images[0], training=False).numpy().argmax(-1)).mean() >= 0.999
    if backend != "keras":
        assert deployed.size_bytes > 10_000


def test_deploy_refuses_unknown_combinations_and_int8_without_data(small):
    config, model, _ = small
    with pytest.raises(ValueError, match="supports precisions"):
        deployment.deploy("onnxruntime", config, model, SIZE, precision="float16")
    with pytest.raises(ValueError, match="int8 needs calibration images"):
        deployment.deploy("openvino", config, model, SIZE, precision="int8")
    calibration = [synthetic_image(*SIZE, seed=10)[0]]
    for backend, precision in (("onnxruntime", "int8"), ("openvino", "bf16"), ("tflite", "float32")):
        with pytest.raises(ValueError, match="Winograd convolutions apply to fixed-size float32"):
            deployment.deploy(backend, config, model, SIZE, precision=precision, calibration_images=calibration,
                            winograd=4)
    with pytest.raises(ValueError, match="need a fixed input size"):
        onnx_export.to_onnx(config, model, None, dynamic=True, winograd=4)


@pytest.mark.parametrize("small", ["fcn", "sepaspp"], indirect=True)
@pytest.mark.parametrize("tile", [2, 4])
def test_winograd_graphs_match_keras_in_both_runtimes(small, tile):
    """The Winograd form replaces every dense 3x3 stride-1 Conv by MatMuls and still matches Keras."""
    config, model, images = small
    content = onnx_export.to_onnx(config, model, SIZE, output="logits", winograd=tile)
    direct = onnx_export.onnx_ops(onnx_export.to_onnx(config, model, SIZE, output="logits", winograd=0))
    winograd = onnx_export.onnx_ops(content)
    replaced = direct["Conv"] - winograd["Conv"]
    assert replaced >= (3 if config.model.head == "fcn" else 1) and winograd["MatMul"] >= direct["MatMul"] + replaced
    _check_float(onnx_export.onnx_runner(content), model, images, "logits")
    _check_float(openvino_export.openvino_runner(openvino_export.to_openvino(config, model, SIZE, output="logits",
                                                               winograd=tile)), model, images, "logits")
    deployed = deployment.deploy("openvino", config, model, SIZE, winograd=tile)
    assert (deployed(images[0]) == model(images[0], training=False).numpy().argmax(-1)).mean() >= 0.999


@pytest.mark.heavy
@pytest.mark.parametrize("fmt, quantization", [("onnx", "float32"), ("onnx", "int8"), ("openvino", "float32"),
                                               ("openvino", "int8")])
def test_export_tool_writes_and_verifies_runtime_formats(tiny_toy_root, tmp_path, capsys, fmt, quantization):
    from keras_mv2seg.cli import UsageError

    config = keras_mv2seg.get_config("toy", data_root=str(tiny_toy_root), decode_channels=32, aux_channels=0)
    weights = tmp_path / "w.weights.h5"
    from keras_mv2seg.weights import save_weights

    save_weights(keras_mv2seg.build_segmenter(config), weights, config)
    output = tmp_path / ("m.onnx" if fmt == "onnx" else "m.xml")
    argv = ["toy", str(weights), "--format", fmt, "--input-size", "64", "128", "--quantization", quantization,
            "--data-root", str(tiny_toy_root), "--calibration-images", "4", "--output", str(output),
            "--cfg-options", "decode_channels=32", "aux_channels=0"]
    tool = load_tool("export")
    assert tool.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"wrote {output}" in printed and "ops: " in printed and "labels agree with Keras" in printed
    assert ("-> PASS" in printed) == (quantization == "float32")
    winograd = "Winograd F(4x4, 3x3)" if quantization == "float32" else "direct"  # --winograd auto
    assert f"dense 3x3 stride-1 convolutions: {winograd}" in printed
    if quantization == "int8":
        assert ("QuantizeLinear" in printed) if fmt == "onnx" else ("runtime precision per layer type" in printed)
    with pytest.raises(FileExistsError, match="exists"):
        tool.main(argv)
    with pytest.raises(UsageError, match="--winograd: Winograd convolutions apply to fixed-size float32"):
        tool.main(["toy", str(weights), "--format", fmt, "--input-size", "64", "128", "--quantization", "int8",
                   "--winograd", "4", "--data-root", str(tiny_toy_root), "--calibration-images", "2", "--output",
                   str(tmp_path / "y"), "--cfg-options", "decode_channels=32", "aux_channels=0"])
    with pytest.raises(UsageError, match="int8 calibration uses real images"):
        tool.main(["fcn_m-v2-d8_512x1024_80k_cityscapes", str(weights), "--format", fmt, "--input-size", "64", "128",
                   "--quantization", "int8", "--output", str(tmp_path / "x")])


def test_benchmark_tool_runs_the_runtime_backends(capsys):
    tool = load_tool("benchmark")
    assert tool.main(["toy", "--backend", "onnxruntime", "--shape", "64", "128", "--iters", "1", "--warmup", "1",
                      "--cfg-options", "decode_channels=32", "aux_channels=0"]) == 0
    assert "toy onnxruntime float32 Winograd F(4x4, 3x3) 64x128 batch 1" in capsys.readouterr().out
    assert tool.main(["toy", "--backend", "openvino", "--shape", "64", "128", "--iters", "1", "--warmup", "1",
                      "--winograd", "0", "--cfg-options", "decode_channels=32", "aux_channels=0"]) == 0
    assert "toy openvino float32 64x128 batch 1" in capsys.readouterr().out
    from keras_mv2seg.cli import UsageError

    with pytest.raises(UsageError, match="not tflite float32"):
        tool.main(["toy", "--backend", "tflite", "--shape", "64", "128", "--winograd", "2"])
