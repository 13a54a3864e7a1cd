"""Pretrained models by name: the references' released checkpoints, downloaded, verified, converted, cached.

``from_preset(name)`` builds the preset's config and loads its weights. The first call downloads the released
file with Keras' own ``keras.utils.get_file`` into the Keras cache (``$KERAS_HOME``, default ``~/.keras``,
folder ``keras_mv2seg/``), verifies it where the source publishes a hash, converts it with the strict
importers (every weight set, nothing unused, no NaN), and caches the converted ``.weights.h5``; later calls
load that file with no network and no conversion.

Sources (cited per row in :data:`PRESETS`):

* mmseg: ``configs/mobilenet_v2/metafile.yaml`` (mmseg 1.x) and the 0.x README table. mmseg file names end in
  the first 8 hex digits of the file's SHA-256, which is verified. mmseg 1.x's metafile points the Cityscapes
  FCN row to a 2023 retrained checkpoint (71.19 mIoU) while the 0.x table lists the 2020 one (61.54): both
  are offered, the 2023 one as ``..._2023``.
* official DeepLab: ``research/deeplab/g3doc/model_zoo.md`` / ``quantize.md`` tarballs. No hash is published:
  the strict import (every variable present, every shape right, nothing non-finite) is the check. The
  checkpoint inside a tarball is found as its single ``*.index`` file (two or none is an error).

Offline and mirrors: ``KERAS_MV2SEG_WEIGHTS_URL`` (or ``base_url=``) replaces the download location: the file
is fetched as ``<base>/<file name>``, where the base is an ``http(s)://`` or ``file://`` URL or a local folder.
With no network the error names the URL, the file name and the cache folder to put the file in. A download is
written as ``<file>.part`` and renamed only after its size and hash checks pass, so a cut-off or wrong file is
never taken as valid by a later call.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import keras

from keras_mv2seg.config import get_config
from keras_mv2seg.models.segmenter import build_segmenter
from keras_mv2seg.weights.deeplab import checkpoint_prefix
from keras_mv2seg.weights.importers import import_checkpoint
from keras_mv2seg.weights.saved import load_keras_weights, save_weights

DOWNLOAD_TIMEOUT_S = 60  # seconds without data before a download is abandoned (unless a default is set)
MMSEG_BASE = "https://download.openmmlab.com/mmsegmentation/v0.5/mobilenet_v2"
DEEPLAB_BASE = "http://download.tensorflow.org/models"
MMSEG_METAFILE = "open-mmlab/mmsegmentation configs/mobilenet_v2/metafile.yaml"
MMSEG_README_0X = "open-mmlab/mmsegmentation v0.x configs/mobilenet_v2/README.md"
DEEPLAB_ZOO = "tensorflow/models research/deeplab/g3doc/model_zoo.md"
DEEPLAB_QUANTIZE = "tensorflow/models research/deeplab/g3doc/quantize.md"


@dataclass(frozen=True)
class Preset:
    name: str
    config: str  # a table config name
    url: str
    dataset: str
    source: str  # where the URL and the number come from
    mIoU: float | None  # the source's published val mIoU (None: not published there)
    sha256_prefix: str = ""  # hex digits the file's SHA-256 starts with ("" = none published)
    overrides: dict = field(default_factory=dict)  # config overrides the published evaluation used
    note: str = ""

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def kind(self) -> str:
        return "mmseg" if self.file_name.endswith(".pth") else "deeplab"


def _mmseg(name, config, folder, file, dataset, miou, source=MMSEG_METAFILE, note=""):
    return Preset(name, config, f"{MMSEG_BASE}/{folder}/{file}", dataset, source, miou,
                  sha256_prefix=file.rsplit("-", 1)[-1].removesuffix(".pth"), note=note)


def _deeplab(name, config, file, dataset, miou, source=DEEPLAB_ZOO, note=""):
    return Preset(name, config, f"{DEEPLAB_BASE}/{file}", dataset, source, miou, overrides={"output_stride": 16},
                  note=note or "published mIoU at eval output stride 16, single scale, as the preset's config")


_CS, _ADE = "cityscapes", "ade20k"
PRESETS: dict[str, Preset] = {p.name: p for p in [
    _mmseg("fcn_m-v2-d8_512x1024_80k_cityscapes", "fcn_m-v2-d8_512x1024_80k_cityscapes",
           "fcn_m-v2-d8_512x1024_80k_cityscapes", "fcn_m-v2-d8_512x1024_80k_cityscapes_20200825_124817-d24c28c1.pth",
           _CS, 61.54, source=MMSEG_README_0X, note="the 2020 checkpoint of the 0.x table"),
    _mmseg("fcn_m-v2-d8_512x1024_80k_cityscapes_2023", "fcn_m-v2-d8_512x1024_80k_cityscapes",
           "mobilenet-v2-d8_fcn_4xb2-80k_cityscapes-512x1024",
           "mobilenet-v2-d8_fcn_4xb2-80k_cityscapes-512x1024-20230224_185436-13fef4ea.pth", _CS, 71.19,
           note="retrained in 2023 (4x A100), what mmseg 1.x's metafile lists"),
    _mmseg("pspnet_m-v2-d8_512x1024_80k_cityscapes", "pspnet_m-v2-d8_512x1024_80k_cityscapes",
           "pspnet_m-v2-d8_512x1024_80k_cityscapes",
           "pspnet_m-v2-d8_512x1024_80k_cityscapes_20200825_124817-19e81d51.pth", _CS, 70.23),
    _mmseg("deeplabv3_m-v2-d8_512x1024_80k_cityscapes", "deeplabv3_m-v2-d8_512x1024_80k_cityscapes",
           "deeplabv3_m-v2-d8_512x1024_80k_cityscapes",
           "deeplabv3_m-v2-d8_512x1024_80k_cityscapes_20200825_124836-bef03590.pth", _CS, 73.84),
    _mmseg("deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes", "deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes",
           "deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes",
           "deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes_20200825_124836-d256dd4b.pth", _CS, 75.20),
    _mmseg("fcn_m-v2-d8_512x512_160k_ade20k", "fcn_m-v2-d8_512x512_160k_ade20k", "fcn_m-v2-d8_512x512_160k_ade20k",
           "fcn_m-v2-d8_512x512_160k_ade20k_20200825_214953-c40e1095.pth", _ADE, 19.71),
    _mmseg("pspnet_m-v2-d8_512x512_160k_ade20k", "pspnet_m-v2-d8_512x512_160k_ade20k",
           "pspnet_m-v2-d8_512x512_160k_ade20k", "pspnet_m-v2-d8_512x512_160k_ade20k_20200825_214953-f5942f7a.pth",
           _ADE, 29.68),
    _mmseg("deeplabv3_m-v2-d8_512x512_160k_ade20k", "deeplabv3_m-v2-d8_512x512_160k_ade20k",
           "deeplabv3_m-v2-d8_512x512_160k_ade20k",
           "deeplabv3_m-v2-d8_512x512_160k_ade20k_20200825_223255-63986343.pth", _ADE, 34.08),
    _mmseg("deeplabv3plus_m-v2-d8_512x512_160k_ade20k", "deeplabv3plus_m-v2-d8_512x512_160k_ade20k",
           "deeplabv3plus_m-v2-d8_512x512_160k_ade20k",
           "deeplabv3plus_m-v2-d8_512x512_160k_ade20k_20200825_223255-465a01d4.pth", _ADE, 34.02),
    _deeplab("deeplab_mnv2_pascal_trainaug", "deeplab_mnv2_pascal", "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz",
             "pascal_voc", 75.32, source=DEEPLAB_QUANTIZE),
    _deeplab("deeplab_mnv2_pascal_trainval", "deeplab_mnv2_pascal", "deeplabv3_mnv2_pascal_trainval_2018_01_29.tar.gz",
             "pascal_voc", None, note="trained on train+val: no val mIoU is published for it"),
    _deeplab("deeplab_mnv2_dm05_pascal_trainaug", "deeplab_mnv2_dm05_pascal",
             "deeplabv3_mnv2_dm05_pascal_trainaug_2018_10_01.tar.gz", "pascal_voc", 70.19, source=DEEPLAB_QUANTIZE),
    _deeplab("deeplab_mnv2_cityscapes_trainfine", "deeplab_mnv2_cityscapes",
             "deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz", _CS, 70.71),
    _deeplab("deeplab_mnv2_ade20k", "deeplab_mnv2_ade20k", "deeplabv3_mnv2_ade20k_train_2018_12_03.tar.gz", _ADE,
             32.04),
]}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def cache_dir() -> Path:
    """``$KERAS_HOME/keras_mv2seg`` (Keras' own cache root: ``~/.keras`` without KERAS_HOME)."""
    root = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(root) / "keras_mv2seg"


def get_preset(name: str, presets: dict | None = None) -> Preset:
    table = PRESETS if presets is None else presets
    if name not in table:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(table))}")
    return table[name]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _origin(preset: Preset, base_url: str | None) -> str:
    base = base_url if base_url is not None else os.environ.get("KERAS_MV2SEG_WEIGHTS_URL", "")
    if not base:
        return preset.url
    if "://" not in base:  # a local folder
        base = Path(base).resolve().as_uri()
    return f"{base.rstrip('/')}/{preset.file_name}"


def download(preset: Preset, *, base_url: str | None = None) -> Path:
    """The preset's released file in the cache, downloaded (and hash-checked) if it is not there yet."""
    folder = cache_dir() / "downloads"
    target = folder / preset.file_name
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    origin = _origin(preset, base_url)
    part = folder / f"{preset.file_name}.part"
    part.unlink(missing_ok=True)
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout or DOWNLOAD_TIMEOUT_S)  # a stalled server fails instead of hanging
    try:
        keras.utils.get_file(fname=part.name, origin=origin, cache_dir=str(folder.parent), cache_subdir=folder.name,
                             force_download=True)
    except BaseException as error:
        part.unlink(missing_ok=True)
        if isinstance(error, Exception):
            raise ConnectionError(
                f"could not download preset {preset.name!r} from {origin} ({error}). Offline? Put the file "
                f"{preset.file_name} into {folder} (or set KERAS_MV2SEG_WEIGHTS_URL to a mirror or a local folder "
                "holding it) and call again") from None
        raise
    finally:
        socket.setdefaulttimeout(timeout)
    if preset.sha256_prefix:
        digest = _sha256(part)
        if not digest.startswith(preset.sha256_prefix):
            part.unlink(missing_ok=True)
            raise ValueError(f"{origin}: SHA-256 {digest[:16]}... does not start with {preset.sha256_prefix} as the "
                             "file name promises (an incomplete or different file); nothing was kept")
    elif preset.file_name.endswith(".tar.gz"):  # no hash published: read the whole archive (gzip CRC, tar
        try:  # structure) so that a cut-off tarball is never kept as if it were whole
            with tarfile.open(part, "r:gz") as archive:
                for _ in archive:
                    pass
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            part.unlink(missing_ok=True)
            raise ValueError(f"{origin}: incomplete or corrupt .tar.gz ({error}); nothing was kept") from None
    os.replace(part, target)
    return target


def _checkpoint_in_tarball(tarball: Path) -> Path:
    """Extract the TF checkpoint of an official DeepLab tarball next to it; returns its prefix."""
    folder = tarball.with_name(tarball.name.removesuffix(".tar.gz") + ".extracted")
    if not folder.is_dir():
        staging = folder.with_name(folder.name + ".part")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with tarfile.open(tarball, "r:gz") as archive:
                members = [m for m in archive.getmembers() if m.isfile() and ".ckpt" in m.name]
                archive.extractall(staging, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError) as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise ValueError(f"{tarball}: not a readable .tar.gz ({error}); delete it and download again") from None
        os.replace(staging, folder)
    try:
        return Path(checkpoint_prefix(folder))
    except FileNotFoundError as error:
        raise ValueError(f"{tarball}: expected exactly one checkpoint (*.index) inside ({error})") from None


def preset_weights(name: str, *, training: bool = False, base_url: str | None = None,
                   presets: dict | None = None) -> Path:
    """The converted ``.weights.h5`` of a preset for the inference (default) or training view, converting once."""
    preset = get_preset(name, presets)
    config = preset_config(name, presets)
    training = training and config.model.aux_channels > 0
    converted = cache_dir() / "converted" / f"{preset.name}.{'training' if training else 'inference'}.weights.h5"
    if converted.is_file():
        return converted
    source = download(preset, base_url=base_url)
    if preset.kind == "deeplab":
        source = _checkpoint_in_tarball(source)
    model = build_segmenter(config, auxiliary=training)
    import_checkpoint(model, source)  # strict: every weight, no unused tensor, no NaN
    return save_weights(model, converted, config)


def from_preset(name: str, *, training: bool = False, base_url: str | None = None, presets: dict | None = None):
    """A model of the preset's config with its released weights: the inference model (logits), or with
    ``training=True`` the training view (``{"logits", "aux_logits"}``) for fine-tuning."""
    config = preset_config(name, presets)
    path = preset_weights(name, training=training, base_url=base_url, presets=presets)
    model = build_segmenter(config, auxiliary=training and config.model.aux_channels > 0)
    load_keras_weights(model, path)
    return model


def preset_config(name: str, presets: dict | None = None):
    """The config a preset's weights belong to (with the overrides its published evaluation used)."""
    preset = get_preset(name, presets)
    return get_config(preset.config, **preset.overrides)
