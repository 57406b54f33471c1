"""The broker boundary: only services/worker/broker touches Celery's, kombu's or billiard's
private surface, the surface it relies on is still there, and the versions are pinned."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from services.worker.broker import surface
from services.worker.broker.surface import SURFACE, Use

ROOT = Path(__file__).resolve().parents[2]
BOUNDARY = ROOT / "services" / "worker" / "broker"
UPSTREAM = ("celery", "kombu", "billiard")
#: Modules of the upstream packages that are private machinery as a whole.
PRIVATE_MODULES = ("kombu.transport", "kombu.message", "kombu.asynchronous", "celery.concurrency",
                   "celery.worker", "billiard")
PRIVATE_NAME = re.compile(r"^_[A-Za-z]\w*$")


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _upstream_private_names() -> frozenset[str]:
    """Every single-underscore name the upstream packages define or assign."""
    names: set[str] = set()
    pattern = re.compile(r"(?:def\s+|class\s+|\.)(_[A-Za-z]\w*)")
    for package in UPSTREAM:
        root = Path(importlib.import_module(package).__file__ or "").parent
        for path in root.rglob("*.py"):
            names.update(n for n in pattern.findall(path.read_text(errors="replace"))
                         if not _is_dunder(n))
    return frozenset(names)


def _project_modules() -> list[Path]:
    paths = [p for top in ("services", "ml", "benchmarks") for p in (ROOT / top).rglob("*.py")]
    return sorted(p for p in paths if BOUNDARY not in p.parents)


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _upstream_classes(module: str, class_name: str) -> list[type]:
    """The upstream classes ``module.class_name`` derives from."""
    try:
        found = getattr(importlib.import_module(module), class_name, None)
    except ImportError:  # A script, not a package module (benchmarks/).
        return []
    if not inspect.isclass(found):
        return []
    return [base for base in found.__mro__[1:]
            if base.__module__.split(".")[0] in UPSTREAM]


def _violations(source: str, where: str, module: str, private: frozenset[str]) -> list[str]:
    """What the module ``module``, whose text is ``source``, touches of ``private``."""
    tree = ast.parse(source)
    found: list[str] = []
    # Other modules imported whole (``os._exit`` is no upstream name).
    other_modules = {alias.asname or alias.name.split(".")[0]
                     for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names if alias.name.split(".")[0] not in UPSTREAM}

    def visit(node: ast.AST, derived: bool) -> None:
        if isinstance(node, ast.ClassDef):
            derived = bool(_upstream_classes(module, node.name))
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith(PRIVATE_MODULES):
                found.append(f"{where}:{node.lineno} imports from {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PRIVATE_MODULES):
                    found.append(f"{where}:{node.lineno} imports {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr in private:
            receiver = node.value.id if isinstance(node.value, ast.Name) else None
            if receiver in other_modules:
                pass
            elif receiver not in ("self", "cls") or derived:
                found.append(f"{where}:{node.lineno} touches .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and node.args[1].value in private):
            found.append(f"{where}:{node.lineno} {node.func.id}s {node.args[1].value}")
        for child in ast.iter_child_nodes(node):
            visit(child, derived)

    visit(tree, False)
    return found


def test_no_module_outside_the_boundary_touches_a_private_upstream_name() -> None:
    private = _upstream_private_names()
    assert {"_brpop_start", "_cache", "_state", "_all_inqueues"} <= private
    violations = [v for path in _project_modules()
                  for v in _violations(path.read_text(), str(path.relative_to(ROOT)),
                                       _module_name(path), private)]
    assert not violations, (
        "only services/worker/broker may touch Celery's, kombu's or billiard's private "
        "surface; move these behind it:\n" + "\n".join(violations))


def test_the_scan_finds_a_private_name_touched_outside() -> None:
    # The scan itself, on a module that breaks each rule once.
    source = ("from kombu.transport import virtual\n"
              "def f(message):\n"
              "    message._state = 'ACK'\n"
              "    return getattr(message, '_raw', None)\n")
    found = _violations(source, "probe.py", "services", frozenset({"_state", "_raw"}))
    assert [v.split(" ", 1)[1] for v in found] == [
        "imports from kombu.transport", "touches ._state", "getattrs _raw"]


def test_the_surface_the_boundary_relies_on_is_still_there() -> None:
    missing = surface.missing()
    assert not missing, (
        "the installed Celery/kombu/billiard no longer match what services/worker/broker "
        "relies on; adapt the boundary before upgrading:\n" + "\n".join(missing))


@pytest.mark.parametrize("use", [
    Use("kombu.transport.redis:Channel", "_brpop_start", ("self",), "a changed signature"),
    Use("kombu.transport.redis:Channel", "_no_such_method", ("self",), "a removed method"),
    Use("celery.concurrency.asynpool:AsynPool", "_no_such_attribute", None, "a removed one"),
    Use("kombu.transport.no_such_module:Channel", "_x", None, "a removed module"),
], ids=["signature", "method", "attribute", "module"])
def test_the_surface_check_catches_each_kind_of_change(use: Use) -> None:
    assert surface.problem(use) is not None


def test_every_override_in_the_boundary_is_listed_in_the_surface() -> None:
    from services.worker.broker import pool, transport

    listed = {use.name for use in SURFACE}
    for module in (transport, pool):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for base in cls.__mro__[1:]:
                if base.__module__.split(".")[0] not in UPSTREAM:
                    continue
                overridden = {n for n in vars(cls) if not _is_dunder(n)
                              and inspect.isfunction(vars(base).get(n))}
                assert overridden <= listed, (cls, overridden - listed)


@pytest.mark.parametrize("package", UPSTREAM)
def test_the_upstream_packages_are_pinned_to_the_minor_version_tested(package: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    (pin,) = [r for r in requirements if r.name == package]
    installed = Version(importlib.metadata.version(package))
    assert installed in pin.specifier, (package, str(installed), str(pin.specifier))
    next_minor = Version(f"{installed.major}.{installed.minor + 1}")
    assert next_minor not in pin.specifier, f"{package} {pin.specifier} admits {next_minor}"
