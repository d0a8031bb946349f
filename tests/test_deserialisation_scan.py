"""No production code deserialises untrusted bytes except through a loader that cannot run code.

An AST scan (nothing is imported or run) of every module under scolio_core/, scolio_sweep/, sweeps/, scripts/
and benchmarks/. Names are resolved through the module's imports, so aliases are caught as well as the
plain spelling: `from pickle import loads`, `import pickle as p; p.load`, `torch.serialization.load`,
`getattr(pickle, "loads")`, a deserialiser bound to a new name (`fn = pickle.loads`), and a constant-named
`importlib.import_module("marshal")`. Flagged:

- anything of a pickle-like module (pickle, _pickle, cPickle, cloudpickle, dill, jsonpickle, marshal,
  shelve) but its serialising half (`dump`, `dumps`, `Pickler`, the exception types, protocol constants),
  and the module object itself escaping (`getattr(pickle, name)`);
- `torch.load` / `torch.serialization.load` without a literal `weights_only=True`;
- `numpy.load` with `allow_pickle` anything but a literal False (or with `**kwargs` that could set it);
- `yaml.load` / `yaml.load_all` without a literal safe loader; `yaml.unsafe_load`, `yaml.full_load` and the
  unsafe loader classes wherever they are named;
- `pandas.read_pickle`, `joblib.load`, `torch.jit.load`, `torch.hub.load`, the MLflow `load_model`s (pickle
  or cloudpickle underneath);
- Ray APIs that unpickle from a sweep's storage_path (`Tuner.restore`, `Trial.get_pickled_error`).

A static scan cannot follow a deserialiser's name built at run time (`import_module(variable)`); review
catches those. The self-test plants each alias in a file of a throwaway tree and checks the scan flags it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("scolio_core", "scolio_sweep", "sweeps", "scripts", "benchmarks")

PICKLE_LIKE = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "jsonpickle", "marshal", "shelve"}
# What those modules may be used for: writing, and naming their exceptions; ALL-CAPS names (opcodes,
# protocol numbers) are constants and are allowed too.
SERIALISE_ONLY = {"dump", "dumps", "Pickler", "PickleError", "PicklingError", "UnpicklingError", "PickleBuffer",
                  "version", "encode"}
ALWAYS_UNSAFE = {
    "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all", "yaml.Loader",
    "yaml.UnsafeLoader", "yaml.FullLoader", "yaml.CLoader", "yaml.CUnsafeLoader", "yaml.CFullLoader",
    "pandas.read_pickle", "pandas.io.pickle.read_pickle", "joblib.load", "torch.jit.load", "torch.hub.load",
    "torch.package.PackageImporter", "mlflow.pytorch.load_model", "mlflow.pyfunc.load_model",
    "mlflow.sklearn.load_model", "ray.tune.Tuner.restore",
}
TORCH_LOADS = {"torch.load", "torch.serialization.load"}
NUMPY_LOADS = {"numpy.load", "numpy.lib.npyio.load"}
YAML_LOADS = {"yaml.load", "yaml.load_all"}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader", "yaml.CBaseLoader",
                     "yaml.loader.SafeLoader", "yaml.loader.BaseLoader"}
CHECKED_CALLS = TORCH_LOADS | NUMPY_LOADS | YAML_LOADS
# Ray's Trial method that unpickles the trial's error file: matched by name, whatever object it is called on.
UNSAFE_METHODS = {"get_pickled_error"}
# Modules a star import could bring a deserialiser in from.
STAR_UNSAFE = PICKLE_LIKE | {"yaml", "torch", "torch.serialization", "numpy", "pandas", "joblib"}

# (file, flagged name) pairs that stay, each with why. Nothing else is allowed, and every entry must still
# match something (a stale entry fails the scan too).
ALLOWED = {
    # The restricted unpickler: it subclasses pickle's pure-Python unpickler and refuses every global outside
    # the allow-list numeric arrays need, so a data pickle's payload is never called (tests/test_safe_pickle.py
    # and the hostile-data tests in tests/test_reliability_data.py). Nothing else of pickle may load there.
    ("scolio_core/data/safe_pickle.py", "pickle._Unpickler"),
    # Not safe but a stated trust boundary: Tuner.restore unpickles tuner.pkl and the experiment state from
    # the sweep's storage_path, so write access there is code execution in the driver. docs/reliability.md
    # states it; docs/cluster.md says who alone may write storage_path. A new restore site must be added here.
    ("scolio_sweep/engine/tuner.py", "ray.tune.Tuner.restore"),
    # Same boundary, nothing beyond it: Ray reads the pickled error a trial left in its storage_path directory
    # (only when no text error file exists). Whoever can plant it there can already plant tuner.pkl.
    ("scolio_sweep/engine/callbacks.py", ".get_pickled_error"),
    # The one checked model load: registry.load_registered_model verifies the downloaded MLmodel (code-loaded
    # python_function only, no pickle/code/data path) and pyfunc_model.py's sha256 before calling it.
    ("scolio_core/tracking/registry.py", "mlflow.pyfunc.load_model"),
}


# ------------------------------------------------------------------------------------------- the scan
def _imports(tree: ast.AST) -> tuple[dict[str, str], list[ast.ImportFrom]]:
    """Local name -> the dotted name it stands for, from every import in the module (any scope); star imports."""
    names: dict[str, str] = {}
    stars = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:  # `import torch.serialization` binds `torch`
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if alias.name == "*":
                    stars.append(node)
                else:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names, stars


def _chain(node: ast.expr, names: dict[str, str]) -> list[str] | None:
    """The dotted prefixes an attribute chain resolves to (`p.load` -> ["pickle", "pickle.load"]), or None
    when its base is not an imported name."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in names:
        return None
    prefixes = [names[node.id]]
    for attr in reversed(attrs):
        prefixes.append(f"{prefixes[-1]}.{attr}")
    return prefixes


def _unsafe_name(name: str, whole: bool = True) -> str | None:
    """Why naming `name` is unsafe, or None; `whole`: the name is used as a value itself, not as the start
    of a longer attribute chain (`pickle` alone escapes; in `pickle.dumps` it does not)."""
    if name in ALWAYS_UNSAFE:
        return "deserialises with pickle or runs code"
    module, _, attr = name.rpartition(".")
    if module.rpartition(".")[2] in PICKLE_LIKE and attr not in SERIALISE_ONLY and not attr.isupper():
        return "deserialises with pickle or marshal"
    if whole and attr in PICKLE_LIKE:
        return "module object escapes (its loaders can be reached by name)"
    return None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _unsafe_call(name: str, call: ast.Call, names: dict[str, str]) -> str | None:
    """Why a call to a checked loader is unsafe given its arguments, or None."""
    splat = any(k.arg is None for k in call.keywords)
    if name in TORCH_LOADS:
        return None if _is_constant(_keyword(call, "weights_only"), True) else "without a literal weights_only=True"
    if name in NUMPY_LOADS:
        flag = _keyword(call, "allow_pickle")
        if flag is None and len(call.args) >= 3:  # load(file, mmap_mode, allow_pickle, ...)
            flag = call.args[2]
        if splat or (flag is not None and not _is_constant(flag, False)):
            return "allow_pickle not a literal False"
        return None
    loader = _keyword(call, "Loader") or (call.args[1] if len(call.args) >= 2 else None)
    resolved = _chain(loader, names) if loader is not None else None
    if resolved and resolved[-1] in SAFE_YAML_LOADERS:
        return None
    return "without a literal SafeLoader (use yaml.safe_load)"


def scan_source(source: str, where: str) -> list[tuple[str, int, str, str]]:
    """(file, line, flagged name, why) for every unsafe deserialisation in one module's source."""
    tree = ast.parse(source, filename=where)
    names, stars = _imports(tree)
    found = [(where, node.lineno, f"{node.module}.*", "star import from a module with deserialisers")
             for node in stars if node.module in STAR_UNSAFE or node.module.split(".")[0] in PICKLE_LIKE]
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}  # chain links, not chain ends
    callees = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in UNSAFE_METHODS:
                found.append((where, node.lineno, f".{func.attr}", "Ray unpickles from storage_path"))
            builtin = isinstance(func, ast.Name) and func.id not in names and func.id in ("getattr", "__import__")
            dynamic = ((builtin and func.id == "__import__")
                       or (_chain(func, names) or [""])[-1] == "importlib.import_module")
            first = node.args[0] if node.args else None
            if dynamic and isinstance(first, ast.Constant) and isinstance(first.value, str) \
                    and first.value.rpartition(".")[2] in PICKLE_LIKE:
                found.append((where, node.lineno, first.value, "imports a pickle-like module by name"))
            if builtin and func.id == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                target = _chain(node.args[0], names)
                name = f"{target[-1]}.{node.args[1].value}" if target else None
                if name and (_unsafe_name(name) or name in CHECKED_CALLS):
                    found.append((where, node.lineno, name, "fetched with getattr (its arguments cannot be checked)"))
        if not isinstance(node, (ast.Attribute, ast.Name)) or id(node) in inner or isinstance(node.ctx, ast.Store):
            continue
        prefixes = _chain(node, names)
        for depth, name in enumerate(prefixes or ()):
            is_end = depth == len(prefixes) - 1
            why = _unsafe_name(name, whole=is_end)
            if why is None and name in CHECKED_CALLS:
                call = callees.get(id(node)) if is_end else None
                why = (_unsafe_call(name, call, names) if call is not None
                       else "referenced, not called (its arguments cannot be checked)")
            if why:
                found.append((where, node.lineno, name, why))
                break
    return found


def scan_tree(root: Path) -> tuple[list[tuple[str, int, str, str]], int]:
    """Every finding under root's scanned folders, and how many files were read."""
    files = sorted(p for package in SCANNED for p in (root / package).rglob("*.py"))
    found = []
    for path in files:
        found += scan_source(path.read_text(), path.relative_to(root).as_posix())
    return found, len(files)


# ------------------------------------------------------------------------------------------- tests
def test_production_code_deserialises_only_through_safe_loaders():
    found, files = scan_tree(ROOT)
    assert files > 50 and all((ROOT / package).is_dir() for package in SCANNED), files
    problems = [f"{where}:{line}: {name}: {why}" for where, line, name, why in found if (where, name) not in ALLOWED]
    assert problems == []
    stale = ALLOWED - {(where, name) for where, _, name, _ in found}
    assert not stale, f"allow-list entries that match nothing any more (remove them): {sorted(stale)}"


def test_the_scan_resolves_the_real_torch_loads():
    # Guards against a scan that passes because it resolves nothing: turn each real weights_only=True into
    # False and the scan must flag the torch.load calls on those lines (docstrings mention it too).
    flagged = 0
    for path in sorted(p for package in SCANNED for p in (ROOT / package).rglob("*.py")):
        source = path.read_text()
        lines = {n for n, line in enumerate(source.splitlines(), 1) if "weights_only=True" in line}
        if lines:
            found = scan_source(source.replace("weights_only=True", "weights_only=False"), path.name)
            hits = {line for _, line, name, _ in found if name in TORCH_LOADS}
            assert hits <= lines, (path, found)
            flagged += len(hits)
    assert flagged >= 2, "fewer than two torch.load(weights_only=True) calls resolved: is the scan broken?"


PLANTED = {
    "from-pickle-import-loads": "from pickle import loads\nloads(b'')",
    "from-pickle-import-as": "from pickle import load as fetch\nfetch(handle)",
    "import-pickle-as": "import pickle as p\np.load(handle)",
    "pickle-unpickler": "import pickle\npickle.Unpickler(handle).load()",
    "c-pickle": "import _pickle\n_pickle.loads(b'')",
    "pickle-private-loads": "import pickle\npickle._loads(b'')",
    "pickle-private-unpickler": "import pickle\nclass Loader(pickle._Unpickler):\n    pass",
    "pickle-bound-to-a-name": "import pickle\nfn = pickle.loads\nfn(b'')",
    "getattr-pickle": "import pickle\ngetattr(pickle, 'loads')(b'')",
    "getattr-torch-load": "import torch\ngetattr(torch, 'load')(path)",
    "import-module-marshal": "import importlib\nimportlib.import_module('marshal').loads(b'')",
    "dunder-import-pickle": "__import__('pickle').loads(b'')",
    "star-import-pickle": "from pickle import *\nloads(b'')",
    "marshal": "import marshal\nmarshal.loads(b'')",
    "shelve": "import shelve\nshelve.open('db')",
    "dill": "import dill\ndill.loads(b'')",
    "cloudpickle": "import cloudpickle\ncloudpickle.load(handle)",
    "ray-cloudpickle": "from ray import cloudpickle\ncloudpickle.loads(b'')",
    "jsonpickle": "import jsonpickle\njsonpickle.decode(text)",
    "yaml-unsafe-load": "import yaml\nyaml.unsafe_load(text)",
    "yaml-full-load": "import yaml\nyaml.full_load(text)",
    "yaml-load-no-loader": "import yaml\nyaml.load(text)",
    "yaml-load-unsafe-loader": "import yaml\nyaml.load(text, Loader=yaml.UnsafeLoader)",
    "yaml-load-positional-loader": "import yaml\nyaml.load(text, yaml.Loader)",
    "yaml-from-import": "from yaml import load, FullLoader\nload(text, Loader=FullLoader)",
    "yaml-load-all": "import yaml\nyaml.load_all(text, Loader=yaml.FullLoader)",
    "torch-load-bare": "import torch\ntorch.load(path)",
    "torch-load-weights-false": "import torch\ntorch.load(path, weights_only=False)",
    "torch-load-weights-variable": "import torch\nflag = True\ntorch.load(path, weights_only=flag)",
    "torch-load-splat": "import torch\ntorch.load(path, **options)",
    "torch-serialization-load": "import torch\ntorch.serialization.load(path)",
    "import-torch-serialization": "import torch.serialization\ntorch.serialization.load(path)",
    "from-torch-serialization": "from torch.serialization import load\nload(path)",
    "torch-serialization-as": "from torch import serialization as s\ns.load(path)",
    "torch-load-as-value": "import torch\nfrom functools import partial\nloader = partial(torch.load, map_location='cpu')",
    "torch-jit-load": "import torch\ntorch.jit.load(path)",
    "numpy-allow-pickle": "import numpy as np\nnp.load(path, allow_pickle=True)",
    "numpy-from-import": "from numpy import load\nload(path, allow_pickle=True)",
    "numpy-allow-pickle-variable": "import numpy\nnumpy.load(path, allow_pickle=flag)",
    "numpy-allow-pickle-positional": "import numpy as np\nnp.load(path, None, True)",
    "numpy-splat": "import numpy as np\nnp.load(path, **options)",
    "pandas-read-pickle": "import pandas as pd\npd.read_pickle(path)",
    "pandas-from-import": "from pandas import read_pickle\nread_pickle(path)",
    "joblib": "import joblib\njoblib.load(path)",
    "mlflow-pytorch": "import mlflow.pytorch\nmlflow.pytorch.load_model(uri)",
    "tuner-restore": "from ray import tune\ntune.Tuner.restore(path, trainable=fn)",
    "pickled-error": "error = trial.get_pickled_error()",
    "inside-a-function": "def read(handle):\n    import pickle as q\n    return q.load(handle)",
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_the_scan_flags_a_planted_deserialiser(name, tmp_path):
    # Each alias is planted in a file of a throwaway tree, in each scanned folder in turn (so scripts/ and
    # benchmarks/ are walked too), and must be flagged there, allow-listed file name or not.
    package = SCANNED[sorted(PLANTED).index(name) % len(SCANNED)]
    targets = [tmp_path / package / "planted.py"]
    if name != "pickle-private-unpickler":  # the one name safe_pickle.py may use; all else is flagged there too
        targets.append(tmp_path / "scolio_core" / "data" / "safe_pickle.py")
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(PLANTED[name] + "\n")
        found, files = scan_tree(tmp_path)
        where = target.relative_to(tmp_path).as_posix()
        flagged = [f for f in found if f[0] == where and (f[0], f[2]) not in ALLOWED]
        assert flagged, f"{name} planted in {where} was not flagged: {found}"
        target.unlink()


SAFE = {
    "torch-weights-only": "import torch\ntorch.load(path, map_location='cpu', weights_only=True)",
    "torch-serialization-weights-only": "from torch import serialization\nserialization.load(path, weights_only=True)",
    "yaml-safe-load": "import yaml\nyaml.safe_load(text)",
    "yaml-safe-loader": "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "numpy-default": "import numpy as np\nnp.load(path)\nnp.load(path, allow_pickle=False)",
    "pickle-dump": "import pickle\npickle.dump(x, handle, protocol=pickle.HIGHEST_PROTOCOL)\npickle.dumps(x)",
    "pickle-exception": "import pickle\ntry:\n    pass\nexcept pickle.UnpicklingError:\n    pass",
    "json": "import json\njson.load(handle)\njson.loads(text)",
    "own-load": "def load(path):\n    return path\nload('x')",
    "import-module-dynamic-project": "import importlib\nimportlib.import_module(f'scolio_core.cli.{name}')",
}


@pytest.mark.parametrize("name", sorted(SAFE))
def test_the_scan_passes_safe_loading(name):
    assert scan_source(SAFE[name] + "\n", "planted.py") == []
