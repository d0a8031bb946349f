"""The project's import structure, read from source with `ast` (nothing is imported, so this runs in well under
a second): no import cycles, lower layers never import higher ones, and scolio_core never imports ray.

Layers, bottom to top (a module may import its own layer and any layer below it):

    scolio_core/__init__.py, errors.py, config.py -> data -> render -> models -> training -> evaluation
    -> tracking -> cli -> trainables -> sweeps

scripts/, benchmarks/ and tests/ sit above everything and may import anything (they are still checked for
cycles). Every import statement counts, function-local ones and `if TYPE_CHECKING:` ones included: a deferred
import is still a dependency, only a later one.

What an import statement depends on:
- `import a.b.c` and `from a.b import c` where `a.b.c` is a module -> the module `a.b.c`. Its ancestor
  packages' `__init__`s run first, but they are not edges: a submodule naming a sibling through its package
  is normal Python, and counting the ancestors would turn every `__init__` that re-exports a submodule into
  a false cycle.
- `from a.b import name` where `name` is not a module -> the package `a.b` (its `__init__`), since the name
  must already be bound there: that is a real dependency on the `__init__`.
- a package `__init__` importing its own submodules (`from scolio_core.render import numba_cpu`, or
  `from . import numba_cpu`) is an edge `__init__` -> submodule like any other.
- `importlib.import_module("literal")` counts as `import literal`; computed names cannot be resolved and are
  skipped (scolio_core.cli.main dispatches to its own cli modules that way).
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("scolio_core", "trainables", "sweeps")  # importable by dotted name
SCRIPT_DIRS = ("scripts", "benchmarks", "tests")  # run as scripts; their siblings are on sys.path

# Layer rank by module-name prefix; the longest matching prefix wins. Unranked modules (scripts, benchmarks,
# tests) may import anything.
LAYERS: dict[str, int] = {
    "scolio_core": 0, "scolio_core.errors": 0, "scolio_core.config": 0,
    "scolio_core.data": 1, "scolio_core.render": 2, "scolio_core.models": 3, "scolio_core.training": 4,
    "scolio_core.evaluation": 5, "scolio_core.tracking": 6, "scolio_core.cli": 7,
    "trainables": 8, "sweeps": 9,
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported project module, or the raw name for a third-party one
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in SCRIPT_DIRS:  # tests/_processes.py is imported as `_processes`; keep the dir to tell apart
        return "/".join(parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def project_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for top in PACKAGES + SCRIPT_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


def _resolve(name: str, importer: str) -> str | None:
    """The project module `import name` in `importer` loads, or None when it is not one of ours."""
    modules = project_modules()
    if "/" in importer:  # a script: a bare name is first looked up next to it (sys.path[0])
        sibling = f"{importer.rsplit('/', 1)[0]}/{name.split('.')[0]}"
        if sibling in modules:
            return sibling
    if name in modules:
        return name
    return None


def _base_package(importer: str, level: int) -> str:
    """The package a relative import of `level` dots starts from."""
    parts = importer.split(".")
    is_package = project_modules()[importer].name == "__init__.py"
    keep = len(parts) - level + (1 if is_package else 0)
    if keep <= 0 or "/" in importer:
        raise AssertionError(f"{importer}: relative import beyond the top-level package")
    return ".".join(parts[:keep])


def _imported_names(node: ast.AST, importer: str) -> Iterator[str]:
    """Dotted names an import node loads, deepest module first for `from` imports."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = _base_package(importer, node.level)
            base = f"{package}.{base}" if base else package
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            # `from pkg import sub` imports the module pkg.sub when it is one, else a name bound in pkg.
            yield candidate if alias.name != "*" and _resolve(candidate, importer) else base
    elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
          and isinstance(node.args[0].value, str) and _is_import_module(node.func)):
        yield node.args[0].value


def _is_import_module(func: ast.expr) -> bool:
    return ((isinstance(func, ast.Attribute) and func.attr == "import_module"
             and isinstance(func.value, ast.Name) and func.value.id == "importlib")
            or (isinstance(func, ast.Name) and func.id in ("import_module", "__import__")))


@cache
def all_imports() -> tuple[Import, ...]:
    found = []
    for module, path in project_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):  # every statement, function bodies included
            for name in _imported_names(node, module):
                target = _resolve(name, module) or name
                if target != module:
                    found.append(Import(module, target, path, node.lineno))
    return tuple(found)


def project_edges() -> list[Import]:
    modules = project_modules()
    return [imp for imp in all_imports() if imp.target in modules]


def _layer_key(module: str) -> str | None:
    """The longest `LAYERS` prefix of `module` (None: scripts, benchmarks and tests are unranked)."""
    parts = module.split(".")
    return next((key for end in range(len(parts), 0, -1) if (key := ".".join(parts[:end])) in LAYERS), None)


def layer(module: str) -> int | None:
    key = _layer_key(module)
    return None if key is None else LAYERS[key]


def test_the_parser_sees_the_kinds_of_import_the_tree_uses() -> None:
    # Guards the test itself: were module discovery or resolution broken, every check below would pass vacuously.
    modules = project_modules()
    assert {"scolio_core", "scolio_core.render.numba_cpu", "sweeps.engine", "trainables.shared_data",
            "tests/_processes"} <= modules.keys()
    edges = {(imp.source, imp.target) for imp in project_edges()}
    assert ("trainables.baseline", "trainables.shared_data") in edges  # top-level from-import
    assert ("trainables.distributed", "trainables._tune_report") in edges  # function-local import
    assert ("tests/test_engine_resume", "tests/_processes") in edges  # a test's helper next to it
    assert ("scolio_core.render.skeleton", "scolio_core.render.numba_cpu") in edges  # from pkg import module
    assert ("tests/_sweep_driver", "sweeps.engine") in edges
    # Relative imports (none in the tree today), from a package __init__ and from a plain module.
    relative = {("scolio_core.render", "from . import numba_cpu"): ["scolio_core.render.numba_cpu"],
                ("scolio_core.render", "from .skeleton import render_skeleton_maps"): ["scolio_core.render.skeleton"],
                ("scolio_core.render.skeleton", "from .constants import PARTS"): ["scolio_core.render.constants"],
                ("scolio_core.render.skeleton", "from .. import errors"): ["scolio_core.errors"],
                ("scolio_core.render.skeleton", "from ..config import InputConfig"): ["scolio_core.config"]}
    for (importer, statement), expected in relative.items():
        names = [_resolve(n, importer) for n in _imported_names(ast.parse(statement).body[0], importer)]
        assert names == expected, statement
    assert any(imp.target == "ray" or imp.target.startswith("ray.") for imp in all_imports())


def test_no_import_cycles_among_project_modules() -> None:
    graph: dict[str, set[str]] = {module: set() for module in project_modules()}
    where: dict[tuple[str, str], str] = {}
    for imp in project_edges():
        graph[imp.source].add(imp.target)
        where.setdefault((imp.source, imp.target), imp.where())
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        # [a, b, ..., a] where each node is a predecessor (here: imported by) the next; reversed, each imports the next
        cycle = error.args[1][::-1]
        steps = [f"{cycle[i]} imports {cycle[i + 1]} ({where[(cycle[i], cycle[i + 1])]})"
                 for i in range(len(cycle) - 1)]
        print("import cycle:\n  " + "\n  ".join(steps))
        raise AssertionError("import cycle: " + "; ".join(steps)) from None


def test_lower_layers_never_import_higher_ones() -> None:
    wrong = [f"{imp.where()}: {imp.source} (layer {_layer_key(imp.source)}) imports {imp.target} "
             f"(layer {_layer_key(imp.target)})"
             for imp in project_edges()
             if layer(imp.source) is not None and layer(imp.target) is not None
             and layer(imp.target) > layer(imp.source)]
    print("\n".join(wrong))
    assert not wrong, "upward imports:\n" + "\n".join(wrong)


def test_scolio_core_never_imports_ray() -> None:
    wrong = [f"{imp.where()}: {imp.source} imports {imp.target}" for imp in all_imports()
             if imp.source.split(".")[0] == "scolio_core" and imp.target.split(".")[0] == "ray"]
    assert not wrong, "scolio_core must run without Ray:\n" + "\n".join(wrong)
