"""The shape of the code: files of one concept (under 500 lines), imports that only run down
the floors (commands -> serving and TFRecord tools -> the library), and no import cycle."""

import ast

import pytest
from support import ROOT

PACKAGES = ("spade_tf", "serving", "spade_cli", "tfrecords_tools")
# Which packages each package may import: the commands sit on top, the library at the bottom.
MAY_IMPORT = {
    "spade_tf": {"spade_tf"},
    "tfrecords_tools": {"spade_tf", "tfrecords_tools"},
    "serving": {"spade_tf", "serving"},
    "spade_cli": set(PACKAGES),
}
# Inside the library: the work built on the networks (training, evaluation, converting,
# the PyTorch ground truth) sits above them; nothing below imports it.
UPPER_LIBRARY = ("spade_tf.training", "spade_tf.evaluation", "spade_tf.convert",
                 "spade_tf.testing")
MAX_LINES = 500


def _modules() -> dict[str, ast.Module]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = (path, ast.parse(path.read_text(), str(path)))
    return modules


MODULES = _modules()


def _imported(name: str, tree: ast.Module, top_level_only: bool) -> set[str]:
    """The project's modules ``name`` imports (at its top level only, or anywhere)."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from pkg import mod" imports pkg.mod when that is a module.
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in MODULES and target != name}
    return found


def test_no_package_file_is_over_500_lines():
    long = {str(path.relative_to(ROOT)): count for path, _ in MODULES.values()
            if (count := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these into modules of one concept each: {long}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_floors(module):
    package = module.split(".")[0]
    upward = sorted(target for target in _imported(module, MODULES[module][1], False)
                    if target.split(".")[0] not in MAY_IMPORT[package])
    assert not upward, f"{module} imports {upward}: a floor above its own"
    if package == "spade_tf" and module != "spade_tf" and not module.startswith(UPPER_LIBRARY):
        upward = sorted(target for target in _imported(module, MODULES[module][1], False)
                        if target.startswith(UPPER_LIBRARY))
        assert not upward, f"{module} imports {upward}: built on the networks, not under them"


def test_no_import_cycle_between_modules():
    graph = {name: _imported(name, tree, top_level_only=True)
             for name, (_, tree) in MODULES.items()}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = "open"
        for target in sorted(graph[name]):
            # A package importing its own submodules (its public API) is not a cycle.
            if target.startswith(name + "."):
                continue
            if state.get(target) == "open":
                return [*path, name, target]
            if target not in state and (cycle := visit(target, [*path, name])):
                return cycle
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [])
            assert cycle is None, " -> ".join(cycle)


def test_every_end_to_end_entry_names_a_test_that_exists():
    """tests/conftest.py's tier list: a renamed file or test would silently join the default
    suite (and its time) again."""
    from conftest import END_TO_END

    tests = ROOT / "tests"
    for entry in END_TO_END:
        path, _, test = entry.partition("::")
        assert (tests / path).is_file(), entry
        if test:
            tree = ast.parse((tests / path).read_text())
            names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
            assert test in names, entry
