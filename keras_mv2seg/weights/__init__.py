"""The weights wing: everything that reads or writes weights.

* :mod:`.loading` -- ``load_weights`` (every format, preset names included), ``build_for_inference`` and
  ``load_for_fine_tuning`` (mmseg's ``load_from``: classifiers re-initialised for a new class count);
* :mod:`.importers` -- the one decision which importer reads a file;
* :mod:`.saved` -- the project's ``.weights.h5`` format with its metadata (``save_weights``, ``weights_metadata``,
  ``load_keras_weights``);
* :mod:`.presets` -- the references' released checkpoints by name: download, verify, convert, cache;
* :mod:`.port` -- the strict porting core and its report, and the layer naming rule both importers read;
* :mod:`.mmseg`, :mod:`.deeplab` -- the two importers; :mod:`.torch_pickle` -- ``.pth`` files without PyTorch;
* :mod:`.check` -- convert a reference checkpoint and run the converters' numeric checks.

Nothing outside this package's callers (training, export, evaluation, the CLI) imports it from below.
"""

from keras_mv2seg.weights.loading import build_for_inference, load_for_fine_tuning, load_weights, source_classes
from keras_mv2seg.weights.port import PortReport, WeightMappingError
from keras_mv2seg.weights.presets import from_preset, list_presets
from keras_mv2seg.weights.saved import config_for_weights, save_weights, weights_metadata

__all__ = ["load_weights", "load_for_fine_tuning", "source_classes", "build_for_inference", "save_weights",
           "weights_metadata", "config_for_weights", "from_preset", "list_presets",
           "PortReport", "WeightMappingError"]
