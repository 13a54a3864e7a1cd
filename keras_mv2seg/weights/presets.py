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
written under a name of its own process and renamed only after its size and hash checks pass, so a cut-off or
wrong file is never taken as valid by a later call.

Nothing read back from the cache is trusted: a cached download is checked again (hash, or a whole read of a
tarball; and the strict import), a converted file is loaded strictly with every value checked finite, and one
that fails is moved to ``<cache>/rejected/`` with a :class:`CachedFileWarning` naming it and built again once.
A file a user put into ``downloads/`` by hand is checked the same way. Processes share the cache safely: one
lock per released file (``<cache>/locks/``, released by the operating system when its holder dies) makes one
of N processes asking for a preset at once download and convert it while the others wait and then load its
verified result.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tarfile
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import keras

from keras_mv2seg.config import get_config
from keras_mv2seg.files import exclusive_lock, remove_stale_staging, staging_path
from keras_mv2seg.models.segmenter import build_segmenter
from keras_mv2seg.weights.deeplab import checkpoint_prefix
from keras_mv2seg.weights.importers import import_checkpoint
from keras_mv2seg.weights.port import transfer_weights
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


class CachedFileWarning(UserWarning):
    """A file in the preset cache failed the check it passed when it was written: it was moved aside and is
    being rebuilt."""


def _lock(preset: Preset):
    """The one lock around everything cached for a preset's file (download, extraction, both converted views):
    of N processes asking at once, one does the work and the others then find its verified files."""
    return exclusive_lock(cache_dir() / "locks" / f"{preset.file_name}.lock",
                          what=f"downloading and converting preset {preset.name!r}")


def _set_aside(path: Path, problem: str):
    """Move a cached file (or folder) that failed its check to ``<cache>/rejected/`` (kept for a look, never
    served again) and say so."""
    folder = cache_dir() / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    os.replace(path, target)
    warnings.warn(f"{path}: {problem}; moved it to {target} and building it again", CachedFileWarning,
                  stacklevel=4)


def _download_problem(preset: Preset, path: Path) -> str | None:
    """Why a downloaded file is not the released one, or None: the published hash where there is one, else
    (DeepLab tarballs) a whole read of the archive (gzip CRC, tar structure), so a cut-off file never passes."""
    if preset.sha256_prefix:
        digest = _sha256(path)
        if not digest.startswith(preset.sha256_prefix):
            return (f"SHA-256 {digest[:16]}... does not start with {preset.sha256_prefix} as the file name "
                    "promises (an incomplete or different file)")
    elif preset.file_name.endswith(".tar.gz"):
        try:
            with tarfile.open(path, "r:gz") as archive:
                for _ in archive:
                    pass
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            return f"incomplete or corrupt .tar.gz ({error})"
    return None


def download(preset: Preset, *, base_url: str | None = None) -> Path:
    """The preset's released file in the cache, downloaded if it is not there yet; checked (hash, or a whole
    read of a tarball) both when it is downloaded and when a cached copy is reused. Safe to call from several
    processes at once."""
    with _lock(preset):
        return _download(preset, base_url)


def _download(preset: Preset, base_url: str | None) -> Path:  # the caller holds _lock(preset)
    folder = cache_dir() / "downloads"
    target = folder / preset.file_name
    if target.is_file():
        problem = _download_problem(preset, target)
        if problem is None:
            return target
        shutil.rmtree(_extracted(target), ignore_errors=True)
        _set_aside(target, problem)
    folder.mkdir(parents=True, exist_ok=True)
    origin = _origin(preset, base_url)
    remove_stale_staging(target)
    part = staging_path(target)
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout or DOWNLOAD_TIMEOUT_S)  # a stalled server fails instead of hanging
    try:
        keras.utils.get_file(fname=part.name, origin=origin, cache_dir=str(folder.parent), cache_subdir=folder.name,
                             force_download=True)
        problem = _download_problem(preset, part)
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
    if problem is not None:
        part.unlink(missing_ok=True)
        raise ValueError(f"{origin}: {problem}; nothing was kept")
    os.replace(part, target)
    return target


def _extracted(tarball: Path) -> Path:
    return tarball.with_name(tarball.name.removesuffix(".tar.gz") + ".extracted")


def _checkpoint_in_tarball(tarball: Path) -> Path:
    """Extract the TF checkpoint of an official DeepLab tarball next to it; returns its prefix."""
    folder = _extracted(tarball)
    if not folder.is_dir():
        remove_stale_staging(folder)
        staging = staging_path(folder)
        staging.mkdir(parents=True)
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
                   presets: dict | None = None, model=None) -> Path:
    """The converted ``.weights.h5`` of a preset for the inference (default) or training view, converting once
    and verified (loaded strictly, every value finite) into a model of the preset's config on every call:
    ``model`` when given (built from the preset's own config; its view decides which file), else one built."""
    config = preset_config(name, presets)
    if model is None:
        model = build_segmenter(config, auxiliary=training and config.model.aux_channels > 0)
    return _cached_weights(get_preset(name, presets), config, model, base_url)


def _cached_weights(preset: Preset, config, model, base_url: str | None) -> Path:
    """Load the preset's converted weights into ``model`` (built from ``config``, the preset's own) and return
    their file. Everything read back from the cache is checked as when it was written -- the converted file by
    the strict, finite-checked load, the download by its hash or a whole read, a cached download also by the
    strict import -- and a file that fails is moved aside (a :class:`CachedFileWarning` names it) and rebuilt
    once, never served."""
    view = "training" if isinstance(model.output, dict) else "inference"
    converted = cache_dir() / "converted" / f"{preset.name}.{view}.weights.h5"
    with _lock(preset):
        if converted.is_file():
            try:
                load_keras_weights(model, converted)
                return converted
            except ValueError as error:
                _set_aside(converted, str(error).removeprefix(f"{converted}: "))
        for attempt in range(2):
            cached = (cache_dir() / "downloads" / preset.file_name).is_file()
            source = _download(preset, base_url)
            try:
                import_checkpoint(model, _checkpoint_in_tarball(source) if preset.kind == "deeplab" else source)
                break
            except ValueError as error:  # strict: every weight, no unused tensor, no NaN
                if not cached or attempt:
                    raise
                shutil.rmtree(_extracted(source), ignore_errors=True)
                _set_aside(source, f"passed its file check but not the strict import ({error})")
        return save_weights(model, converted, config)


def from_preset(name: str, *, training: bool = False, num_classes: int | None = None, base_url: str | None = None,
                presets: dict | None = None):
    """A model of the preset's config with its released weights: the inference model (logits), or with
    ``training=True`` the training view (``{"logits", "aux_logits"}``) for fine-tuning. ``num_classes``: a
    model of that many classes instead, every weight but the classifiers from the preset, the classifiers
    initialised as the convention does (fine-tuning to your own classes). Safe to call from several processes
    at once (the workers of one run): one downloads and converts, the others wait for it."""
    config = preset_config(name, presets)
    auxiliary = training and config.model.aux_channels > 0
    model = build_segmenter(config, auxiliary=auxiliary)
    _cached_weights(get_preset(name, presets), config, model, base_url)
    if num_classes is None or num_classes == config.model.num_classes:
        return model
    target = build_segmenter(config.replace(num_classes=num_classes), auxiliary=auxiliary)
    transfer_weights(model, target, source=f"preset {name!r}", skip_classifier=True)
    return target


def preset_config(name: str, presets: dict | None = None):
    """The config a preset's weights belong to (with the overrides its published evaluation used)."""
    preset = get_preset(name, presets)
    return get_config(preset.config, **preset.overrides)
