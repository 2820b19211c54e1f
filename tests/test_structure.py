"""Structural rules of the package, checked on its source: no import circles between the modules
of ``bitswap``, every file the package writes goes through :func:`bitswap.fileio.atomic_write`,
and the model manifest has one writer (:func:`bitswap.zoo.write_manifest`)."""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "bitswap"
MODULES = {p.stem: p for p in sorted(PACKAGE.glob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


# ---------------------------------------------------------------------------------- imports

def _imported(node: ast.AST, module: str) -> set[str]:
    """The package modules an import statement of ``module`` names."""
    out: set[str] = set()
    if isinstance(node, ast.ImportFrom):
        if node.level == 1 or (node.level == 0 and node.module and node.module.split(".")[0] == "bitswap"):
            parts = (node.module or "").split(".")
            parts = parts[1:] if node.level == 0 else parts
            if parts and parts[0]:
                out.add(parts[0])
            else:                                   # from . import a, b / from bitswap import a
                out.update(a.name for a in node.names)
    elif isinstance(node, ast.Import):
        out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("bitswap."))
    return {m for m in out if m in MODULES and m != module}


def _module_level(tree: ast.Module):
    """The statements that run at import: the module body and the bodies of its if/try/with and
    classes, not of its functions."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            stack.extend(getattr(node, field, None) or [])


def import_graph(deferred: bool) -> dict[str, set[str]]:
    """module -> the package modules it imports (``deferred``: also inside functions)."""
    graph = {}
    for name, tree in TREES.items():
        nodes = ast.walk(tree) if deferred else _module_level(tree)
        graph[name] = set().union(*(_imported(n, name) for n in nodes))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_graph_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_at_import_time():
    """The imports that run when a module is imported form no circle."""
    assert cycles(import_graph(deferred=False)) == []


# Imports inside functions run later, so a circle closed only by them still imports, but the
# layering is circular all the same (one existed: zoo <-> intbins / exact_mlp, removed by moving
# the shipped-asset lookups into zoo and the BB-ANS builder into export).
def test_no_import_circles_through_deferred_imports():
    assert cycles(import_graph(deferred=True)) == []


@pytest.mark.slow
def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported first (the package's other modules unloaded): no partially
    initialised module, whatever the order."""
    script = (
        "import importlib, sys\n"
        "import numpy, torch\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    for m in [m for m in sys.modules if m == 'bitswap' or m.startswith('bitswap.')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module('bitswap.' + name if name != '__init__' else 'bitswap')\n"
        "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


# ------------------------------------------------------------------------------ file writes

# Writing a path directly: every one of these belongs in bitswap/fileio.py only.
PATH_WRITERS = {("os", "replace"), ("os", "rename"), ("os", "link"), ("os", "symlink"), ("shutil", "move"),
                ("shutil", "copy"), ("shutil", "copy2"), ("shutil", "copyfile"), ("shutil", "copytree")}
PATH_METHODS = {"write_bytes", "write_text", "touch", "symlink_to", "hardlink_to", "rename", "replace"}
# Serialisers: fine into a file object (what atomic_write hands its callback, or a BytesIO),
# never into a path. The index of their destination argument.
SERIALISERS = {("np", "save"): 0, ("np", "savez"): 0, ("np", "savez_compressed"): 0, ("numpy", "save"): 0,
               ("torch", "save"): 1, ("json", "dump"): 1, ("pickle", "dump"): 1}
SERIALISER_METHODS = {"savefig": 0, "tofile": 0}
WRITE_MODES = set("wax+")


def _call_name(call: ast.Call) -> tuple[str, str] | None:
    f = call.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        return f.value.id, f.attr
    return None


def _mode(call: ast.Call, position: int) -> str | None:
    for kw in call.keywords:
        if kw.arg == "mode" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    if len(call.args) > position and isinstance(call.args[position], ast.Constant):
        return str(call.args[position].value)
    return None


class _Scopes(ast.NodeVisitor):
    """Walks a module keeping, per function or lambda, the names that may hold a file object:
    its parameters named or annotated as one (``f``, ``fp``, ``fileobj``, ``IO``/``BinaryIO``),
    every lambda parameter, and names bound to ``io.BytesIO()``/``io.StringIO()``."""

    FILE_PARAMS = {"f", "fp", "fileobj", "out_file"}

    def __init__(self, module: str):
        self.module = module
        self.scopes: list[set[str]] = [set()]
        self.functions: list[str] = []
        self.problems: list[str] = []
        self.manifest_writes: list[str] = []

    def _where(self, node) -> str:
        return f"bitswap/{self.module}.py:{node.lineno}"

    def _enter(self, node, names):
        bound = set(names)
        for sub in ast.walk(node):
            if (isinstance(sub, ast.Assign) and isinstance(sub.value, ast.Call)
                    and isinstance(sub.value.func, ast.Attribute) and sub.value.func.attr in ("BytesIO", "StringIO")):
                bound.update(t.id for t in sub.targets if isinstance(t, ast.Name))
        self.scopes.append(bound)

    def visit_FunctionDef(self, node):
        names = [a.arg for a in node.args.args + node.args.kwonlyargs
                 if a.arg in self.FILE_PARAMS or (a.annotation is not None and "IO" in ast.unparse(a.annotation))]
        self.functions.append(node.name)
        self._enter(node, names)
        self.generic_visit(node)
        self.scopes.pop()
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self._enter(node, [a.arg for a in node.args.args])
        self.generic_visit(node)
        self.scopes.pop()

    def _file_object(self, arg: ast.AST) -> bool:
        return isinstance(arg, ast.Name) and arg.id in self.scopes[-1]

    def visit_Call(self, node):
        name = _call_name(node)
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open" or name in (("io", "open"),):
            mode = _mode(node, 1)
            if mode is not None and WRITE_MODES & set(mode):
                self.problems.append(f"{self._where(node)}: open(..., {mode!r})")
        elif name == ("os", "open"):
            flags = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
            target = ast.unparse(node.args[0]) if node.args else ""
            if any(f in flags for f in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND")) and target != "os.devnull":
                self.problems.append(f"{self._where(node)}: os.open({target}, {flags})")
        elif name in PATH_WRITERS or (name and name[0] == "tempfile"):
            self.problems.append(f"{self._where(node)}: {name[0]}.{name[1]}")
        elif isinstance(func, ast.Attribute) and func.attr in PATH_METHODS:
            # Path.rename(target) / Path.replace(target) take one argument; str.replace two
            if func.attr not in ("rename", "replace") or (len(node.args) == 1 and not node.keywords):
                self.problems.append(f"{self._where(node)}: .{func.attr}()")
        elif isinstance(func, ast.Attribute) and func.attr == "open":
            mode = _mode(node, 0)
            if mode is not None and WRITE_MODES & set(mode):
                self.problems.append(f"{self._where(node)}: .open({mode!r})")
        position = SERIALISERS.get(name) if name else None
        if position is None and isinstance(func, ast.Attribute):
            position = SERIALISER_METHODS.get(func.attr)
            if func.attr == "save" and any(k.arg == "format" for k in node.keywords):
                position = 0                            # PIL's Image.save(fp, format=...)
        if position is not None and len(node.args) > position and not self._file_object(node.args[position]):
            self.problems.append(f"{self._where(node)}: {ast.unparse(func)}() into "
                                 f"{ast.unparse(node.args[position])}, not a file object from atomic_write")
        if (isinstance(func, ast.Name) and func.id.startswith("atomic_write")
                or isinstance(func, ast.Attribute) and func.attr.startswith("atomic_write")):
            if node.args and "MANIFEST" in ast.unparse(node.args[0]):
                self.manifest_writes.append(f"{self.module}.{'.'.join(self.functions) or '<module>'}")
        self.generic_visit(node)


@functools.lru_cache(maxsize=1)
def _scan() -> dict[str, _Scopes]:
    out = {}
    for name, tree in TREES.items():
        if name == "fileio":                            # the one module that writes paths itself
            continue
        scan = _Scopes(name)
        scan.visit(tree)
        out[name] = scan
    return out


def test_every_file_the_package_writes_goes_through_atomic_write():
    problems = [p for scan in _scan().values() for p in scan.problems]
    assert problems == []


def test_the_write_check_catches_direct_writes():
    tree = ast.parse("import numpy as np, os, torch, io\n"
                     "def bad(path, x):\n"
                     "    open(path, 'wb').write(x)\n"
                     "    np.save(path, x)\n"
                     "    torch.save(x, path)\n"
                     "    os.replace(path, path + '.old')\n"
                     "    path.write_bytes(x)\n"
                     "def good(path, x):\n"
                     "    buf = io.BytesIO()\n"
                     "    torch.save(x, buf)\n"
                     "    atomic_write(path, lambda f: np.save(f, x))\n"
                     "    open(path, 'rb').read()\n"
                     "    'a-b'.replace('-', '_')\n")
    scan = _Scopes("example")
    scan.visit(tree)
    assert [p.split(": ", 1)[1].split(" ")[0] for p in scan.problems] == [
        "open(...,", "np.save()", "torch.save()", "os.replace", ".write_bytes()"]


def test_every_save_function_writes_atomically():
    """Each function or method named ``save*``/``write*``/``export*`` that takes a path writes it
    through atomic_write (directly or through another such function of the package)."""
    writers = {"atomic_write", "atomic_write_bytes", "save_network", "write_manifest", "save", "save_model",
               "export_bundle", "write_bundle", "write_results", "save_results"}
    missing = []
    for name, tree in TREES.items():
        if name == "fileio":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith(("save", "write", "export")):
                continue
            params = [a.arg for a in node.args.args]
            if not any(p in ("path", "dest", "out", "target", "filename") for p in params):
                continue                                # writes into a file object it is given
            called = {(c.func.id if isinstance(c.func, ast.Name) else c.func.attr)
                      for c in ast.walk(node) if isinstance(c, ast.Call)
                      and isinstance(c.func, (ast.Name, ast.Attribute))}
            if not called & writers:
                missing.append(f"bitswap/{name}.py: {node.name}")
    assert missing == []


# ------------------------------------------------------------------------------- the manifest

def test_the_manifest_has_one_writer():
    """manifest.json is written only by zoo.write_manifest; everything else that records in it
    (exported bins, exact networks) calls that."""
    writes = sorted(w for scan in _scan().values() for w in scan.manifest_writes)
    assert writes == ["zoo.write_manifest"]
    named = []
    for path in [*MODULES.values(), *ROOT.glob("*.py"), *ROOT.glob("model/*.py"), *ROOT.glob("benchmarks/*.py")]:
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for n in ast.walk(tree):
            if (isinstance(n, ast.Constant) and isinstance(n.value, str) and "manifest.json" in n.value
                    and id(n) not in docstrings and not (isinstance(n, ast.Constant) and " " in n.value)):
                named.append(f"{path.relative_to(ROOT)}:{n.lineno}")
    assert [n.split(":")[0] for n in named] == ["bitswap/zoo.py"], named    # MANIFEST = ASSETS / "manifest.json"
