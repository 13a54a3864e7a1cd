"""Official TF DeepLab MobileNetV2 on PASCAL VOC 2012 (21 classes), depth multiplier 1.0: loads the model-zoo TF1
checkpoints and trains with the official recipe.

Training recipe (``keras_mv2seg.configs._base.DEEPLAB_VOC_RECIPE``), as tensorflow/models ``research/deeplab`` sets it (file:line of ``train.py`` as stored at
commit 0307688, flags by name; ``local_test_mobilenetv2.sh`` is the official MobileNetV2 VOC script):

* split ``train_aug`` (10582 images, ``datasets/data_generator.py`` ``_PASCAL_VOC_SEG_INFORMATION``), the split
  of the released ``mobilenetv2_coco_voc_trainaug`` model (``g3doc/model_zoo.md``); ignore label 255;
* ``base_learning_rate`` 0.007 ("Use 0.007 when training on PASCAL augmented training set", train.py:78-80),
  ``learning_policy`` poly (75), ``learning_power`` 0.9 (89), end learning rate 0
  (``utils/train_utils.py`` ``get_model_learning_rate``: ``polynomial_decay(..., end_learning_rate=0)``);
* ``training_number_of_steps`` 30000 (92), ``momentum`` 0.9 (95), ``train_batch_size`` 8 (100; the script
  uses 4 for its 10-step smoke test), ``weight_decay`` 0.00004 for MobileNetV2 (103-105) as slim L2
  regularisation of the conv kernels only;
* ``train_crop_size`` 513x513 (108; local_test_mobilenetv2.sh ``--train_crop_size=513``),
  ``output_stride`` 16 (163; local_test_mobilenetv2.sh ``--output_stride=16``), ``fine_tune_batch_norm`` True
  (145; local_test_mobilenetv2.sh ``--fine_tune_batch_norm=true``): batch norm trains;
* augmentation ``min_scale_factor`` 0.5, ``max_scale_factor`` 2.0, ``scale_factor_step_size`` 0.25
  (148-154), then pad to the crop with the mean pixel, random crop and flip (``input_preprocess.py``);
* evaluation: ``eval_crop_size`` 513x513 (local_test_mobilenetv2.sh), the whole image padded to 513x513
  (test mode ``pad``).

Differences: the released model starts from a COCO-pretrained checkpoint; here ``train.pretrained`` (an
ImageNet MobileNetV2) or a preset. The poly schedule divides by ``max_iters - 1`` (mmengine) where TF's
``polynomial_decay`` divides by ``max_iters``: the same rates to within 0.004 % of the base rate.
"""

from keras_mv2seg.configs._base import DEEPLAB_VOC_RECIPE, deeplab_official, deeplab_result

CONFIG = deeplab_official("deeplab_mnv2_pascal", num_classes=21, dataset="pascal_voc", crop_size=(513, 513)).replace(
    **DEEPLAB_VOC_RECIPE,  # output_stride 16, train_aug, deeplab augmentation 0.5..2.0 step 0.25, pad test mode,
    #                        30000 iterations, batch 8, lr 0.007 poly 0.9 to 0, momentum 0.9, kernel decay 4e-5
    results=deeplab_result(mIoU_os16=75.32, mIoU_os8_ms_flip=77.33),
)
