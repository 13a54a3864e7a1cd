"""The package's shape: modules import downward only (no cycle, in-function imports counted too), and each
vocabulary is written once."""

import ast
from pathlib import Path

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
