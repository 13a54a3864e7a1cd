#!/usr/bin/env python
"""For each head: train the toy config with that head (resumes/reuses work_dirs/toy_<head>), export TFLite
float32 and full-integer int8 (calibrated on toy training images), and report pixel agreement with Keras and
the toy val mIoU of Keras, TFLite float32 and TFLite int8, all in the same run.

    python benchmarks/export_quality.py [--heads fcn psp aspp sepaspp] [--max-iters 300] [--calibration 16]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_mv2seg  # noqa: E402
from keras_mv2seg.data.sources import evaluation_data  # noqa: E402
from keras_mv2seg.evaluation import ConfusionAccumulator  # noqa: E402
from keras_mv2seg.export import tflite as tl  # noqa: E402
from keras_mv2seg.training import train  # noqa: E402
from keras_mv2seg.weights import build_for_inference  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="*", default=["fcn", "psp", "aspp", "sepaspp"])
    parser.add_argument("--max-iters", type=int, default=300)
    parser.add_argument("--calibration", type=int, default=16, help="training images for int8 calibration")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from keras_mv2seg.machine import describe_machine

    print(f"machine: {describe_machine()}")
    print(f"{'head':8s} {'Keras mIoU':>10s} {'fp32 mIoU':>10s} {'int8 mIoU':>10s} {'fp32 agree %':>13s} "
          f"{'int8 agree %':>13s} {'fp32 KiB':>9s} {'int8 KiB':>9s}")
    for head in args.heads:
        config = keras_mv2seg.get_config("toy").replace(name=f"toy_{head}", head=head, max_iters=args.max_iters)
        train(config, os.path.join("work_dirs", config.name), verbose=0)
        model = build_for_inference(config, os.path.join("work_dirs", config.name, "best.weights.h5"))
        val = [(image.numpy(), label.numpy()) for image, label, _ in evaluation_data(config, "val")]
        calibration = [image.numpy() for image, _, _ in evaluation_data(config, "train").take(args.calibration)]
        size = val[0][0].shape[:2]
        contents = {q: tl.convert(config, model, size, quantization=q, representative_images=calibration)
                    for q in ("float32", "int8")}
        scores = {name: ConfusionAccumulator(config.model.num_classes) for name in ("keras", "float32", "int8")}
        agree = {"float32": [], "int8": []}
        for image, label in val:
            reference = model(image[None], training=False).numpy()[0].argmax(-1)
            scores["keras"].update(reference, label)
            for q, content in contents.items():
                labels = tl.run(content, image)
                scores[q].update(labels, label)
                agree[q].append((labels == reference).mean())
        miou = {k: 100 * v.result()["mIoU"] for k, v in scores.items()}
        print(f"{head:8s} {miou['keras']:10.2f} {miou['float32']:10.2f} {miou['int8']:10.2f} "
              f"{100 * np.mean(agree['float32']):13.3f} {100 * np.mean(agree['int8']):13.3f} "
              f"{len(contents['float32']) // 1024:9d} {len(contents['int8']) // 1024:9d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
