#!/usr/bin/env python
"""Accuracy of every deployment path: for each head, train its full M-V2-D8 Cityscapes architecture on the toy
dataset with the toy recipe (``kit.toy_trained``; resumes/reuses
work_dirs/toy_m-v2-d8_<head>), convert it for every runtime x precision (TFLite, ONNX Runtime, OpenVINO; float32, bf16,
int8 calibrated on toy *training* images), run the toy val split through each, and report per path the toy val
mIoU, its change from the Keras float32 model, and the pixel agreement with Keras, all in the same run. A path
whose agreement is below 99 % or whose mIoU drops more than 0.5 points is flagged ``LOW``.

    python benchmarks/export_quality.py [--heads fcn psp aspp sepaspp] [--max-iters 300] [--calibration 16]
        [--paths tflite:int8 onnxruntime:int8 ...]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from kit import parse_path, path_name, toy_trained  # noqa: E402
from keras_mv2seg.data.sources import evaluation_data, sample_images  # noqa: E402
from keras_mv2seg.evaluation import ConfusionAccumulator  # noqa: E402
from keras_mv2seg.export.deploy import deploy  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402

DEFAULT_PATHS = ["tflite:float32", "tflite:int8", "onnxruntime:float32", "onnxruntime:float32+w4", "onnxruntime:int8",
                 "openvino:float32", "openvino:float32+w4", "openvino:bf16", "openvino:int8"]
MIN_AGREEMENT, MAX_MIOU_DROP = 0.99, 0.5


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="*", default=["fcn", "psp", "aspp", "sepaspp"])
    parser.add_argument("--max-iters", type=int, default=300)
    parser.add_argument("--calibration", type=int, default=16, help="training images for int8 calibration")
    parser.add_argument("--paths", nargs="*", default=DEFAULT_PATHS, help="backend:precision[+wM] (M: Winograd tile)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from keras_mv2seg.machine import describe_machine

    print(f"machine: {describe_machine()}")
    print(f"{'head':8s} {'path':22s} {'mIoU':>7s} {'vs Keras':>8s} {'agree %':>8s} {'MiB':>6s}")
    for head in args.heads:
        config, weights = toy_trained(head, args.max_iters)
        model = build_for_inference(config, weights)
        val = [(image.numpy(), label.numpy()) for image, label, _ in evaluation_data(config, "val")]
        calibration = sample_images(config, "train", count=args.calibration)
        size = val[0][0].shape[:2]
        keras_scores = ConfusionAccumulator(config.model.num_classes)
        references = []
        for image, label in val:
            references.append(model(image[None], training=False).numpy()[0].argmax(-1))
            keras_scores.update(references[-1], label)
        keras_miou = 100 * keras_scores.result()["mIoU"]
        print(f"{head:8s} {'keras float32':22s} {keras_miou:7.2f} {0:8.2f} {100:8.2f} {'':>6s}", flush=True)
        for backend, precision, tile in (parse_path(text) for text in args.paths):
            name = path_name(backend, precision, tile)
            try:
                runner = deploy(backend, config, model, size, precision=precision, calibration_images=calibration,
                                winograd=tile)
            except Exception as error:  # a runtime that cannot compile this graph: reported, not fatal
                reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                print(f"{head:8s} {name:22s} FAILED: {reason[:160]}", flush=True)
                continue
            scores = ConfusionAccumulator(config.model.num_classes)
            agreement = []
            for (image, label), reference in zip(val, references):
                labels = runner(image[None])[0]
                scores.update(labels, label)
                agreement.append((labels == reference).mean())
            miou = 100 * scores.result()["mIoU"]
            low = np.mean(agreement) < MIN_AGREEMENT or keras_miou - miou > MAX_MIOU_DROP
            print(f"{head:8s} {name:22s} {miou:7.2f} {miou - keras_miou:8.2f} "
                  f"{100 * np.mean(agreement):8.2f} {runner.size_bytes / 2**20:6.1f}{'  LOW' if low else ''}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
