"""The package's shape: modules import downward only (no cycle, in-function imports counted too), and each
vocabulary is written once."""

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_mv2seg

PACKAGE = Path(keras_mv2seg.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """The package modules ``name`` imports anywhere in its file (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules.keys()
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in the module itself
                found.add(target)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [node])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [])
            if cycle:
                return cycle
    return None


def test_package_imports_downward_only():
    graph = import_graph()
    assert "keras_mv2seg.weights" in graph and "keras_mv2seg.data.sources" in graph["keras_mv2seg.training.trainer"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


# The wings, lowest first: a module imports from its own wing or from wings of a lower level, never from a wing
# above it nor from a sibling wing of its own level (weights, export and evaluation know nothing of each other);
# the base modules of level 0 may use each other (the cycle test keeps them in order).
WING_LEVELS = [
    {"version", "files", "errors", "machine", "datasets_meta", "ops", "flops", "config", "configs"},
    {"models", "data", "inference"},
    {"weights", "export", "evaluation"},
    {"training", "predictor"},
    {"cli", ""},  # "" is the package's own __init__ (the public names)
]


def wing_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def level_of(wing: str) -> int:
    return next(level for level, wings in enumerate(WING_LEVELS) if wing in wings)


def wing_violations(graph) -> list[str]:
    found = []
    for module, imported in graph.items():
        wing = wing_of(module)
        for target in imported:
            other = wing_of(target)
            if other != wing and level_of(other) >= level_of(wing) and level_of(wing) > 0:
                found.append(f"{module} imports {target} (wing {other!r} is not below {wing!r})")
    return sorted(found)


def test_no_module_imports_from_a_wing_above_or_beside_it():
    graph = import_graph()
    assert {wing_of(m) for m in graph} <= set().union(*WING_LEVELS), "a new wing needs a level in WING_LEVELS"
    assert wing_violations(graph) == []
    # the rule sees a violation when there is one
    assert wing_violations({"keras_mv2seg.data.x": {"keras_mv2seg.weights.y"}}) and \
        wing_violations({"keras_mv2seg.export.a": {"keras_mv2seg.weights.b"}})


def test_evaluation_and_inference_take_datasets_not_data_sources():
    """Scoring and predicting consume tensors and datasets; where they come from (layouts, decoding, the data
    root) is data/'s business, and the data-error convention they share with it is a base module."""
    graph = import_graph()
    for module in ["keras_mv2seg.evaluation"] + [m for m in graph if wing_of(m) == "inference"]:
        assert not {target for target in graph[module] if wing_of(target) == "data"}, graph[module]
    assert "keras_mv2seg.errors" in graph["keras_mv2seg.evaluation"]


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_head_names_are_listed_once():
    from keras_mv2seg.config import HEADS as config_heads
    from keras_mv2seg.models import heads

    assert list(heads.HEADS) == list(config_heads)
    assert all(builder.__name__ == f"{name}_head" for name, builder in heads.HEADS.items())
    assert all(config_heads[name] in keras_mv2seg.config.CONVENTIONS for name in config_heads)


def test_layer_parts_follow_the_builders_names():
    from keras_mv2seg.models.segmenter import layer_part

    model = keras_mv2seg.build_segmenter(keras_mv2seg.get_config("deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes",
                                                                 decode_channels=16, aux_channels=8),
                                         auxiliary=True)
    parts = {layer.name: layer_part(layer.name) for layer in model.layers}
    assert parts["stem_conv"] == parts["block16_project_bn"] == "backbone"
    assert parts["decode_conv_seg"] == "decode" and parts["aux_conv_seg"] == "aux"
    assert parts["images"] is None and parts["normalize"] is None and parts["logits"] is None
    assert {layer_part(name) for name in parts} == {"backbone", "decode", "aux", None}


# --- the reading path ------------------------------------------------------------------------------------------
# A reader follows one config from tools/train.py to the fit call, and one image from its file through data ->
# model -> loss. The trace below records every call into the package made by package code (calls made by Keras
# or tf.data into our callbacks are theirs, not the reader's) and names each entry into a module that the path
# had already left (not on the call stack) through a caller it had not come from before. Two kinds of entry are
# part of reading and allowed: the config's own methods (the object being followed) and the building blocks
# (models.layers and models.initializers, which every model part is made of, and ops, the one image geometry
# that the data pipeline, the model and inference share by design). Anything else is a second
# decision about the same thing in another module -- what this test exists to catch.

# leaf tables and helpers any step may consult (the dataset table: split names for the layouts, class names for
# the loss's class weights; files: the one writer every job's files go through, by design)
ALLOWED_RETURNS = {"keras_mv2seg.config", "keras_mv2seg.models.layers", "keras_mv2seg.models.initializers",
                   "keras_mv2seg.ops", "keras_mv2seg.datasets_meta", "keras_mv2seg.files"}
# the model's own record of the config it was built from (the object being followed, as the config's methods)
ALLOWED_ENTRIES = {"keras_mv2seg.models.segmenter.model_config_of"}


class ReadingPath:
    """``sys.setprofile`` hook: the package modules entered, in order, and the returns to modules already left."""

    def __init__(self):
        self.stack, self.order, self.edges, self.returns = [], [], set(), []
        self.calls = {}  # "module.function" -> how often package code (or Keras, into our code) called it

    @staticmethod
    def module(frame):
        """The package module (or ``tools.<name>``) a frame's code belongs to, by its globals: AutoGraph's
        converted copies of the data functions run from generated files but keep their module's globals."""
        name = frame.f_globals.get("__name__", "")
        if name == "keras_mv2seg" or name.startswith("keras_mv2seg."):
            return name
        if name.startswith("tool_"):  # tests.conftest.load_tool names tools/<name>.py "tool_<name>"
            return "tools." + name[len("tool_"):]
        return None

    def __call__(self, frame, event, arg):
        if event in ("call", "c_call"):
            module = self.module(frame) if event == "call" else None
            caller = self.stack[-1] if self.stack else None
            if module and module != caller:
                if caller and module in self.order and module not in self.stack and (caller, module) not in self.edges:
                    self.returns.append(f"{caller} -> {module}.{frame.f_code.co_name}")
                self.edges.add((caller, module))
                if module not in self.order:
                    self.order.append(module)
            if event == "call":
                self.stack.append(module)
                if module:
                    key = f"{module}.{frame.f_code.co_name}"
                    self.calls[key] = self.calls.get(key, 0) + 1
        elif event == "return" and self.stack:
            self.stack.pop()

    def trace(self, function, *args):
        sys.setprofile(self)
        try:
            return function(*args)
        finally:
            sys.setprofile(None)

    def unexpected(self) -> list[str]:
        entries = [text.split(" -> ")[1] for text in self.returns]
        return [text for text, entry in zip(self.returns, entries)
                if entry.rpartition(".")[0] not in ALLOWED_RETURNS and entry not in ALLOWED_ENTRIES]


# Decisions a run makes once: asking again along an edge already taken is not a return (the reader already knows
# the way), but it may be the same decision made twice -- these are counted over a whole run instead.
ONCE_PER_RUN = ("keras_mv2seg.data.sources.resolve_data_root", "keras_mv2seg.config.get_config")


def test_one_config_from_train_tool_through_fit_and_validation_never_returns(tiny_config_file, tmp_path):
    from tests.conftest import load_tool

    tool = load_tool("train")
    path = ReadingPath()
    path.trace(tool.main, [str(tiny_config_file("sepaspp", iters=2, interval=2)), "--work-dir", str(tmp_path / "run"),
                           "--quiet"])
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("mIoU") == 1  # it trained and validated
    # the path went through the tool, the trainer, the data source, the model, the fit and the validation
    for module in ("tools.train", "keras_mv2seg.training.trainer", "keras_mv2seg.data.sources",
                   "keras_mv2seg.data.pipeline", "keras_mv2seg.models.segmenter", "keras_mv2seg.training.recipe",
                   "keras_mv2seg.training.losses", "keras_mv2seg.evaluation"):
        assert module in path.order, path.order
    assert path.calls.get("keras_mv2seg.training.trainer.validate") == 1
    assert path.unexpected() == [], path.unexpected()
    assert {name: path.calls.get(name) for name in ONCE_PER_RUN} == dict.fromkeys(ONCE_PER_RUN, 1)


def test_one_image_from_file_through_model_to_loss_never_returns(tiny_config_file):
    from keras_mv2seg.config import get_config
    from keras_mv2seg.data.sources import training_data
    from keras_mv2seg.models.segmenter import build_segmenter
    from keras_mv2seg.training.recipe import compile_model

    def one_image():
        config = get_config(str(tiny_config_file("sepaspp")))
        images, labels = next(iter(training_data(config, batch_size=1)))
        model = build_segmenter(config)
        compile_model(model, config)
        return float(model.loss(labels, model(images, training=True)))

    path = ReadingPath()
    assert np.isfinite(path.trace(one_image))
    for module in ("keras_mv2seg.data.sources", "keras_mv2seg.data.pipeline", "keras_mv2seg.data.layouts",
                   "keras_mv2seg.data.decode", "keras_mv2seg.data.augment", "keras_mv2seg.models.segmenter",
                   "keras_mv2seg.training.recipe", "keras_mv2seg.training.losses"):
        assert module in path.order, path.order
    assert path.unexpected() == [], path.unexpected()


def test_reading_path_names_a_return():
    path = ReadingPath()
    path.stack, path.order = ["keras_mv2seg.training.trainer"], ["keras_mv2seg.training.trainer",
                                                                  "keras_mv2seg.data.sources"]

    class Frame:  # a call from the trainer into data.sources after it was left
        f_globals = {"__name__": "keras_mv2seg.data.sources"}

        class f_code:
            co_name = "training_data"

    path(Frame, "call", None)
    assert path.unexpected() == ["keras_mv2seg.training.trainer -> keras_mv2seg.data.sources.training_data"]
