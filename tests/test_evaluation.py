"""Metrics against a NumPy reference definition and the official Cityscapes evaluator; inference modes."""

import numpy as np
import pytest

from keras_mv2seg.datasets_meta import CITYSCAPES_TRAIN_TO_LABEL_ID, cityscapes_label_id_to_train_id
from keras_mv2seg.evaluation import ConfusionAccumulator, compute_metrics


def reference_metrics(predictions, labels, num_classes, ignore_index=255):
    """mmseg IoUMetric: per-image areas summed over the dataset, then I/U, I/L, nan-means."""
    intersect = np.zeros(num_classes)
    area_pred = np.zeros(num_classes)
    area_label = np.zeros(num_classes)
    for pred, label in zip(predictions, labels):
        mask = label != ignore_index
        pred, label = pred[mask], label[mask]
        hit = pred[pred == label]
        intersect += np.histogram(hit, bins=num_classes, range=(0, num_classes - 1))[0]
        area_pred += np.histogram(pred, bins=num_classes, range=(0, num_classes - 1))[0]
        area_label += np.histogram(label, bins=num_classes, range=(0, num_classes - 1))[0]
    union = area_pred + area_label - intersect
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = intersect / union, intersect / area_label
    return {"aAcc": intersect.sum() / area_label.sum(), "mIoU": np.nanmean(iou), "mAcc": np.nanmean(acc),
            "IoU": iou, "Acc": acc}


def random_maps(seed, count=4, num_classes=6, shape=(23, 37)):
    rng = np.random.default_rng(seed)
    labels, predictions = [], []
    for _ in range(count):
        label = rng.integers(0, num_classes - 1, shape)  # the last class never appears in labels
        label[rng.random(shape) < 0.1] = 255
        prediction = np.where(rng.random(shape) < 0.7, np.where(label == 255, 0, label),
                              rng.integers(0, num_classes, shape))
        labels.append(label)
        predictions.append(prediction)
    return predictions, labels


def test_metrics_equal_the_reference_definition():
    predictions, labels = random_maps(0)
    ours = compute_metrics(predictions, labels, num_classes=6)
    reference = reference_metrics(predictions, labels, 6)
    for key in ("aAcc", "mIoU", "mAcc"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-12)
    np.testing.assert_allclose(ours["IoU"], reference["IoU"], atol=1e-12)
    np.testing.assert_allclose(ours["Acc"], reference["Acc"], atol=1e-12)
    assert np.isnan(ours["Acc"][5]) and ours["IoU"][5] == 0.0  # predicted, never labelled: IoU 0, Acc NaN


def test_dataset_level_not_image_mean():
    labels = [np.zeros((2, 2), int), np.ones((2, 8), int)]
    predictions = [np.ones((2, 2), int), np.ones((2, 8), int)]
    result = compute_metrics(predictions, labels, 2)
    assert result["IoU"].tolist() == [0.0, 16 / 20] and result["aAcc"] == 16 / 20


def test_absent_classes_are_left_out_of_the_mean():
    result = compute_metrics([np.array([[0, 0]])], [np.array([[0, 255]])], 3)
    assert result["mIoU"] == 1.0 and np.isnan(result["IoU"][1:]).all()


def test_bad_inputs_name_the_problem():
    accumulator = ConfusionAccumulator(3)
    with pytest.raises(ValueError, match=r"label values \[7\] are outside 0...2 .* in a.png"):
        accumulator.update(np.zeros((2, 2), int), np.full((2, 2), 7), name="a.png")
    with pytest.raises(ValueError, match="shape"):
        accumulator.update(np.zeros((2, 2), int), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="integer class maps"):
        accumulator.update(np.zeros((2, 2)), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="differ in length"):
        compute_metrics([np.zeros((1, 1), int)], [], 2)


def test_streaming_merge_equals_one_pass():
    predictions, labels = random_maps(1, count=6)
    halves = [ConfusionAccumulator(6), ConfusionAccumulator(6)]
    for i, (p, lab) in enumerate(zip(predictions, labels)):
        halves[i % 2].update(p, lab)
    halves[0].merge(halves[1])
    np.testing.assert_array_equal(halves[0].matrix, ConfusionAccumulator(6).matrix + sum(
        np.bincount(lab[lab != 255] * 6 + p[lab != 255], minlength=36).reshape(6, 6) for p, lab in zip(predictions, labels)))


def test_agrees_with_the_official_cityscapes_evaluator(tmp_path):
    np.in1d = getattr(np, "in1d", np.isin)  # cityscapesscripts 2.3 calls np.in1d, removed in NumPy 2.4
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
    import tensorflow as tf

    rng = np.random.default_rng(3)
    train_to_id = np.asarray(CITYSCAPES_TRAIN_TO_LABEL_ID, np.uint8)
    id_to_train = cityscapes_label_id_to_train_id()
    predictions, labels, prediction_files, label_files = [], [], [], []
    for index in range(3):
        label_ids = rng.integers(0, 34, (40, 64)).astype(np.uint8)  # every id, ignored ones included
        label_ids[:10] = 26  # a large 'car' region
        train = id_to_train[label_ids]
        prediction = np.where(rng.random(train.shape) < 0.6, np.where(train == 255, 13, train),
                              rng.integers(0, 18, train.shape)).astype(np.uint8)  # class 18 never predicted
        for array, folder, out in ((label_ids, "gt", label_files), (train_to_id[prediction], "pred", prediction_files)):
            path = tmp_path / folder / f"city_{index:06d}_000019_{folder}.png"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(tf.io.encode_png(array[..., None]).numpy())
            out.append(str(path))
        predictions.append(prediction)
        labels.append(train)
    args = official.args
    args.evalInstLevelScore, args.quiet, args.JSONOutput = False, True, False
    args.evalLabels = [label.id for label in official.labels if label.id >= 0 and not label.ignoreInEval]
    result = official.evaluateImgLists(prediction_files, label_files, args)
    ours = compute_metrics(predictions, labels, 19)
    from keras_mv2seg.datasets_meta import CITYSCAPES_CLASSES

    for name, iou in zip(CITYSCAPES_CLASSES, ours["IoU"]):
        assert result["classScores"][name] == pytest.approx(iou, abs=1e-6), name
    assert result["averageScoreClasses"] == pytest.approx(ours["mIoU"], abs=1e-6)


def test_evaluate_takes_a_dataset(tiny_config_file):
    import keras_mv2seg
    from keras_mv2seg.data.sources import evaluation_data
    from keras_mv2seg.evaluation import evaluate

    config = keras_mv2seg.get_config(str(tiny_config_file()))
    model = keras_mv2seg.build_segmenter(config)
    whole = evaluate(model, config, evaluation_data(config, "val"))
    assert whole["images"] == 2 and whole["confusion"].sum() > 0
    assert evaluate(model, config, evaluation_data(config, "val").take(1))["images"] == 1
    # a split name is refused with the call that makes its dataset (evaluation knows nothing of data sources)
    with pytest.raises(TypeError, match=r"evaluation_data\(config, 'val', data_root\)"):
        evaluate(model, config, "val")
