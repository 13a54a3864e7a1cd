"""The benchmarks' kit (not part of the installed package): the head -> config table the benchmarks use, toy-trained
weights for the deployment accuracy checks, the parsers of their command lines, and the runner for the PyTorch
reference kit (``../shared/reference``) whose scripts print JSON lines, so that speed is reported as a ratio to
PyTorch measured in the same run. The timing primitives (the reference's method, the matmul yardstick) are the
library's own, in :mod:`keras_mv2seg.machine`, shared with tools/benchmark.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# The four M-V2-D8 heads by the reference kit's names (``../shared/reference/mmseg_cfgs.py`` HEADS).
HEAD_CONFIGS = {"fcn": "fcn_m-v2-d8_512x1024_80k_cityscapes", "psp": "pspnet_m-v2-d8_512x1024_80k_cityscapes",
                "aspp": "deeplabv3_m-v2-d8_512x1024_80k_cityscapes",
                "sepaspp": "deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes"}
HEAD_TITLES = {"fcn": "FCN", "psp": "PSPNet", "aspp": "DeepLabV3", "sepaspp": "DeepLabV3+"}

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"
DEFAULT_REFERENCE_VENV = Path.home() / ".cache" / "keras_mv2seg" / "mmseg-ref"


def toy_trained(head: str, max_iters: int = 300, work_root="work_dirs", verbose: int = 0, load_from: str = ""):
    """(config, best weights) of the head's full M-V2-D8 Cityscapes architecture (or of a Cityscapes config named
    ``head``, e.g. ``deeplab_mnv2_cityscapes``) trained on the toy dataset with the toy recipe (128x128 crops,
    batch 8, ``max_iters``; fine-tuned from ``load_from`` where given): real weights with real class margins for
    the deployment accuracy checks, at no download. Resumes or reuses ``<work_root>/toy_m-v2-d8_<head>``
    (``<work_root>/toy_<config>``)."""
    from keras_mv2seg.config import get_config
    from keras_mv2seg.training import train

    toy = get_config("toy")
    name = f"toy_m-v2-d8_{head}" if head in HEAD_CONFIGS else f"toy_{head}"
    config = get_config(HEAD_CONFIGS.get(head, head)).replace(
        name=name, dataset="toy", load_from=load_from, data_root=toy.data.data_root, crop_size=toy.data.crop_size,
        base_scale=toy.data.base_scale, max_iters=max_iters, batch_size=toy.train.batch_size,
        eval_interval=min(toy.train.eval_interval, max_iters), checkpoint_interval=min(toy.train.eval_interval,
                                                                                       max_iters))
    work_dir = Path(work_root) / config.name
    train(config, work_dir, verbose=verbose)
    return config, work_dir / "best.weights.h5"


def parse_size(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> (512, 1024); ValueError naming the text otherwise."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected a size HxW like 512x1024, received {text!r}") from None
    return height, width


def parse_path(text: str) -> tuple[str, str, int]:
    """``backend:precision[+wM]`` -> (backend, precision, Winograd tile M or 0): ``openvino:float32+w4`` is the
    float32 OpenVINO graph with Winograd F(4x4, 3x3) dense 3x3 convolutions, ``openvino:float32`` the direct one."""
    backend, _, precision = text.partition(":")
    precision, _, tile = precision.partition("+w")
    if not backend or not precision or (tile and not tile.isdigit()):
        raise ValueError(f"expected a path like onnxruntime:int8 or openvino:float32+w4, received {text!r}")
    return backend, precision, int(tile or 0)


def path_name(backend: str, precision: str, tile: int) -> str:
    return f"{backend} {precision}" + (f" wino{tile}" if tile else "")


class Reference:
    """The PyTorch reference kit: ``python`` is its venv's interpreter (made by its ``setup.sh``), ``folder``
    holds ``infer.py``/``train.py``/``train_toy.py``. :meth:`find` returns None with the reason in
    :attr:`missing_reason` when it is not set up."""

    missing_reason = ""

    def __init__(self, python: Path, folder: Path):
        self.python, self.folder = Path(python), Path(folder)

    @classmethod
    def find(cls, python=None, folder=None):
        folder = Path(folder or os.environ.get("MMSEG_REF_DIR") or DEFAULT_REFERENCE_DIR)
        if python is None:
            venv = Path(os.environ.get("MMSEG_REF_VENV") or DEFAULT_REFERENCE_VENV)
            python = venv / "bin" / "python"
        python = Path(python)
        if not (folder / "infer.py").is_file():
            cls.missing_reason = (f"the PyTorch reference kit is not at {folder} (set MMSEG_REF_DIR or "
                                  "--reference-dir)")
            return None
        if not python.is_file():
            cls.missing_reason = (f"the reference venv's python {python} does not exist: run "
                                  f"`bash {folder / 'setup.sh'}` once (or set MMSEG_REF_VENV / --reference-python)")
            return None
        return cls(python, folder)

    def run(self, script: str, *args, timeout: float | None = None) -> list[dict]:
        """Run ``script`` with ``args``; returns its JSON lines. RuntimeError with the tail of stderr on failure."""
        command = [str(self.python), str(self.folder / script), *map(str, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    def version(self) -> str:
        done = subprocess.run([str(self.python), "-c", "import torch, mmseg; print(f'mmseg {mmseg.__version__}, "
                               "PyTorch {torch.__version__}')"], capture_output=True, text=True)
        return done.stdout.strip() or "unknown version"


def add_reference_arguments(parser):
    """The reference kit's command-line options, as every benchmark that runs it spells them."""
    parser.add_argument("--reference-python", help="python of the reference venv (default: MMSEG_REF_VENV)")
    parser.add_argument("--reference-dir", help="the reference kit (default: ../shared/reference)")
    parser.add_argument("--no-reference", action="store_true")


def toy_runs_setup(args):
    """(the toy data root, made on first use; the :class:`Reference` or None with ``--no-reference``) for the
    benchmarks that train the toy recipe on both sides."""
    import keras_mv2seg
    from keras_mv2seg.data.sources import resolve_data_root

    data_root = Path(resolve_data_root(keras_mv2seg.get_config("toy"))).resolve()
    reference = None if args.no_reference else Reference.find(args.reference_python, args.reference_dir)
    return data_root, reference


def run_checked(command, env=None) -> str:
    """Run ``command`` in the checkout with ``env`` added to the environment; its stdout. RuntimeError with the
    tail of stderr on failure."""
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def train_toy_ours(work, seed: int, max_iters: int, options=(), val_interval: int = 100) -> list[dict]:
    """``tools/train.py toy`` in ``work`` (validation every ``val_interval`` iterations, ``options`` as
    ``--cfg-options``), unless it finished there before; its metrics.jsonl records."""
    work = Path(work).resolve()  # the tool runs in the checkout; the work dir is the caller's
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "summary.json").is_file():
        run_checked([sys.executable, str(ROOT / "tools" / "train.py"), "toy", "--work-dir", str(work), "--seed", str(seed),
              "--quiet", "--max-iters", str(max_iters), "--cfg-options", f"eval_interval={min(val_interval, max_iters)}",
              *options], {"TF_CPP_MIN_LOG_LEVEL": "2"})
    return [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if line.strip()]


def train_toy_reference(reference: "Reference", work, seed: int, data_root, max_iters: int, env=None,
                        val_interval: int = 100) -> dict:
    """The reference kit's ``train_toy.py`` in ``work`` (validation every ``val_interval`` iterations, the
    training loss logged every iteration, ``env`` its other settings: DECODE_LOSS, SAMPLER, ...), unless it
    finished there before; its result.json."""
    work = Path(work).resolve()
    result = work / "result.json"
    if not result.is_file():
        run_checked([str(reference.python), str(reference.folder / "train_toy.py"), str(data_root), str(work), str(seed)],
             {"MAX_ITERS": str(max_iters), "VAL_INTERVAL": str(min(val_interval, max_iters)), "LOG_INTERVAL": "1",
              **(env or {})})
    return json.loads(result.read_text())
