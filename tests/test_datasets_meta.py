"""Class tables and palettes."""

import numpy as np

from keras_mv2seg.datasets_meta import (ADE20K_CLASSES, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, class_names, colorize,
                                        cityscapes_label_id_to_train_id, palette, voc_palette)


def test_class_tables_have_the_reference_sizes():
    assert len(CITYSCAPES_CLASSES) == len(CITYSCAPES_PALETTE) == 19
    assert len(ADE20K_CLASSES) == 150 and len(set(ADE20K_CLASSES)) == 150
    assert class_names("ade20k", 151)[0] == "other" and class_names("ade20k", 151)[1] == "wall"


def test_cityscapes_label_ids_map_to_train_ids():
    table = cityscapes_label_id_to_train_id()
    assert table[7] == 0 and table[26] == 13 and table[33] == 18
    assert table[0] == table[6] == table[9] == table[34] == 255
    assert sorted(set(table.tolist()) - {255}) == list(range(19))


def test_voc_palette_and_colorize():
    assert voc_palette(3).tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    labels = np.array([[0, 1], [255, 18]])
    rgb = colorize(labels, palette("cityscapes", 19))
    assert rgb[0, 0].tolist() == [128, 64, 128] and rgb[1, 0].tolist() == [0, 0, 0]
    assert rgb[1, 1].tolist() == [119, 11, 32]
