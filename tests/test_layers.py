"""The project's import structure, read from source with `ast` (nothing is imported, so this runs in well under
a second): no import cycles, lower layers never import higher ones, and scolio_core never imports ray.

Layers, bottom to top (a module may import its own layer and any layer below it):

    scolio_core/__init__.py, errors.py, config.py, names.py -> data -> render -> models -> training -> evaluation
    -> tracking -> cli -> scolio_sweep.trainables -> scolio_sweep.search -> scolio_sweep.settings
    -> scolio_sweep.engine -> scolio_sweep.stages -> scolio_sweep.studies -> scolio_sweep.cli

sweeps/ (the entry scripts users run), scripts/, benchmarks/ and tests/ sit above everything and may import
any package module (they are still checked for cycles), with two more rules: no module imports an entry script
(`sweeps/*.py`: study logic lives in `scolio_sweep.studies`), and no library or driver module imports
argparse code (`argparse` or `scolio_sweep.cli`) outside the `cli` packages: the driver takes typed
settings, never a parsed command line. Every import statement counts, function-local ones and `if TYPE_CHECKING:` ones included: a deferred
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
PACKAGES = ("scolio_core", "scolio_sweep")  # importable by dotted name
SCRIPT_DIRS = ("sweeps", "scripts", "benchmarks", "tests")  # run as scripts; their siblings are on sys.path
ENTRY_SCRIPTS = "sweeps"  # what users run; nothing imports them
ARGPARSE_ALLOWED = ("scolio_core.cli", "scolio_sweep.cli")  # the only package modules that may parse a command line

# Layer rank by module-name prefix; the longest matching prefix wins. Unranked modules (scripts, benchmarks,
# tests) may import anything.
LAYERS: dict[str, int] = {
    "scolio_core": 0, "scolio_core.errors": 0, "scolio_core.config": 0, "scolio_core.names": 0,
    "scolio_core.data": 1, "scolio_core.render": 2, "scolio_core.models": 3, "scolio_core.training": 4,
    "scolio_core.evaluation": 5, "scolio_core.tracking": 6, "scolio_core.cli": 7,
    "scolio_sweep": 8, "scolio_sweep.trainables": 8, "scolio_sweep.search": 9, "scolio_sweep.settings": 10,
    "scolio_sweep.engine": 11, "scolio_sweep.stages": 12, "scolio_sweep.studies": 13, "scolio_sweep.cli": 14,
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
    assert {"scolio_core", "scolio_core.render.numba_cpu", "scolio_sweep.engine.tuner", "scolio_sweep.trainables.shared_data",
            "tests/_processes"} <= modules.keys()
    edges = {(imp.source, imp.target) for imp in project_edges()}
    assert ("scolio_sweep.trainables.baseline", "scolio_sweep.trainables.shared_data") in edges  # top-level from-import
    assert ("scolio_sweep.trainables.distributed", "scolio_sweep.trainables._tune_report") in edges  # function-local import
    assert ("tests/test_engine_resume", "tests/_processes") in edges  # a test's helper next to it
    assert ("scolio_core.render.skeleton", "scolio_core.render.numba_cpu") in edges  # from pkg import module
    assert ("tests/_sweep_driver", "scolio_sweep.engine.tuner") in edges
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


def import_cycle(edges: list[Import]) -> list[str]:
    """The steps of one import cycle among `edges` ("a imports b (file:line)"), or [] when there is none."""
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for imp in edges:
        graph.setdefault(imp.source, set()).add(imp.target)
        where.setdefault((imp.source, imp.target), imp.where())
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        # [a, b, ..., a] where each node is a predecessor (here: imported by) the next; reversed, each imports the next
        cycle = error.args[1][::-1]
        return [f"{cycle[i]} imports {cycle[i + 1]} ({where[(cycle[i], cycle[i + 1])]})" for i in range(len(cycle) - 1)]
    return []


def upward_imports(edges: list[Import]) -> list[str]:
    return [f"{imp.where()}: {imp.source} (layer {_layer_key(imp.source)}) imports {imp.target} "
            f"(layer {_layer_key(imp.target)})"
            for imp in edges
            if layer(imp.source) is not None and layer(imp.target) is not None
            and layer(imp.target) > layer(imp.source)]


def ray_in_core(imports: list[Import]) -> list[str]:
    return [f"{imp.where()}: {imp.source} imports {imp.target}" for imp in imports
            if imp.source.split(".")[0] == "scolio_core" and imp.target.split(".")[0] == "ray"]


def script_imports(edges: list[Import]) -> list[str]:
    """Imports of an entry script (sweeps/*.py) by anything: scripts stay thin, their logic is importable."""
    return [f"{imp.where()}: {imp.source} imports the entry script {imp.target}" for imp in edges
            if imp.target.startswith(f"{ENTRY_SCRIPTS}/")]


def argparse_outside_cli(imports: list[Import]) -> list[str]:
    """Package modules outside the cli packages that import argparse or the sweep command line."""
    return [f"{imp.where()}: {imp.source} imports {imp.target}" for imp in imports
            if "/" not in imp.source and not imp.source.startswith(ARGPARSE_ALLOWED)
            and (imp.target == "argparse" or imp.target.startswith("scolio_sweep.cli"))]


def _planted(source: str, target: str) -> Import:
    return Import(source, target, ROOT / "tests" / "test_layers.py", 0)


def test_no_import_cycles_among_project_modules() -> None:
    steps = import_cycle(project_edges())
    assert not steps, "import cycle: " + "; ".join(steps)
    planted = [_planted("scolio_core.data.splits", "scolio_core.data.release"),
               _planted("scolio_core.data.release", "scolio_core.data.splits")]
    assert import_cycle(project_edges() + planted), "a planted cycle went unnoticed"


def test_lower_layers_never_import_higher_ones() -> None:
    wrong = upward_imports(project_edges())
    assert not wrong, "upward imports:\n" + "\n".join(wrong)
    planted = {("scolio_core.training.loop", "scolio_core.tracking.lookups"),  # training reads tracking
               ("scolio_sweep.trainables.baseline", "scolio_sweep.stages.finish"),  # a trial imports the driver
               ("scolio_sweep.settings.profile", "scolio_sweep.engine.tuner"),  # settings need Ray's engine
               ("scolio_sweep.stages.prepare", "scolio_sweep.studies.table")}  # a stage imports a study
    for source, target in planted:
        assert len(upward_imports([_planted(source, target)])) == 1, (source, target)


def test_scolio_core_never_imports_ray() -> None:
    wrong = ray_in_core(list(all_imports()))
    assert not wrong, "scolio_core must run without Ray:\n" + "\n".join(wrong)
    assert ray_in_core([_planted("scolio_core.training.loop", "ray.tune")])


def test_entry_scripts_are_never_imported() -> None:
    assert {"sweeps/representation", "sweeps/table"} <= project_modules().keys()  # the rule sees them
    wrong = script_imports(project_edges())
    assert not wrong, "\n".join(wrong)
    assert script_imports([_planted("sweeps/representation", "sweeps/finetune")])
    assert script_imports([_planted("benchmarks/search", "sweeps/table")])


def test_the_driver_never_imports_argparse_code() -> None:
    wrong = argparse_outside_cli(list(all_imports()))
    assert not wrong, "\n".join(wrong)
    assert argparse_outside_cli([_planted("scolio_sweep.stages.prepare", "scolio_sweep.cli")])
    assert argparse_outside_cli([_planted("scolio_sweep.studies.table", "argparse")])
    assert not argparse_outside_cli([_planted("sweeps/table", "scolio_sweep.cli")])  # a script may
