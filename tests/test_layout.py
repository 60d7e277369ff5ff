"""The package's shape: the folder tree follows the data flow, and the public surface matches what it declares."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import alsatian_hf
from alsatian_hf import errors


PACKAGE = Path(alsatian_hf.__file__).parent

# The data flow, in order: a stage may import earlier stages, never a later one.
FLOW = ["localhub", "hub", "store", "adapters", "candidates", "plan", "engine", "scoring", "search"]
# Modules every stage may use; they import no stage themselves.
COMMON = {"errors", "_safetensors", "_progress", "_digest_cache", "_device", "_xet", "_xet_gear", "_units"}
# Applications on top of the flow: they may import anything, and no stage imports them.
APPS = {"zoo", "cli", "demo", "__init__", "__main__"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _top(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_tops(path: Path) -> set[str]:
    """The top-level alsatian_hf modules `path` imports, at any depth of its body (lazy imports too)."""
    tree = ast.parse(path.read_text())
    package_parts = ["alsatian_hf", *path.relative_to(PACKAGE).parent.parts]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
                if len(target) == 1:  # `from .. import x`: x is a top-level module
                    found.update(alias.name for alias in node.names)
                    continue
            else:
                target = (node.module or "").split(".")
            if target[0] == "alsatian_hf" and len(target) > 1:
                found.add(target[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "alsatian_hf" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_top_level_module_has_a_place_in_the_flow():
    tops = {_top(p) for p in _modules()}
    assert tops <= set(FLOW) | COMMON | APPS, tops - set(FLOW) - COMMON - APPS


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_later_stage(path):
    top = _top(path)
    if top in APPS:
        return
    imported = _imported_tops(path) - {top}
    if top in COMMON:
        assert not imported & (set(FLOW) | APPS), f"{path.name} is common but imports {imported}"
        return
    later = {m for m in imported if m in FLOW and FLOW.index(m) > FLOW.index(top)}
    assert not later, f"{path.relative_to(PACKAGE)} ({top}) imports the later stage(s) {sorted(later)}"
    assert not imported & APPS, f"{path.relative_to(PACKAGE)} imports an application module {imported & APPS}"


def test_the_checker_sees_a_late_import():
    """The rule above is not vacuous: an `alsatian_hf.search` import inside hub/ is caught."""
    fake = PACKAGE / "hub" / "_probe_for_layout_test.py"
    fake.write_text("def f():\n    from ..search import ModelSearcher\n    from alsatian_hf.engine import Executor\n")
    try:
        assert _imported_tops(fake) == {"search", "engine"}
    finally:
        fake.unlink()


def test_hub_imports_no_torch_and_no_later_stage():
    code = (
        "import sys, alsatian_hf.hub; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('alsatian_hf.search', "
        "'alsatian_hf.adapters', 'alsatian_hf.candidates', 'alsatian_hf.engine'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lazy_table_matches_the_typed_imports():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    typed: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.level == 1
                typed.update({a.name: f"alsatian_hf.{stmt.module}" for a in stmt.names})
    assert typed == alsatian_hf._LAZY
    assert set(alsatian_hf._LAZY) <= set(dir(alsatian_hf)) and "__version__" in dir(alsatian_hf)
    for name, module in alsatian_hf._LAZY.items():
        assert getattr(alsatian_hf, name).__module__.startswith(module), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        alsatian_hf.nope  # noqa: B018


def test_version_has_one_source():
    from importlib.metadata import version

    assert version("alsatian-hf") == alsatian_hf.__version__
    assert "version = " not in (PACKAGE.parent / "pyproject.toml").read_text().split("[project]")[1].split("[")[0]


def _raised_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            names.add(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
    return names


# Raised on purpose and never seen by a user: module __getattr__'s protocol, the local Hub's internal HTTP
# answer, discovery's and the executor's control-flow captures, and helpers that build one of our errors.
_INTERNAL = {"AttributeError", "_HttpError", "_Captured", "_BlockError", "_not_found", "_unsupported", "_too_many",
             "_custom_code", "_fail", "AssertionError"}  # fmt: skip


def test_every_raised_exception_comes_from_errors_py():
    ours = {name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, Exception)}
    for path in _modules():
        foreign = _raised_names(path) - ours - _INTERNAL
        assert not foreign, f"{path.relative_to(PACKAGE)} raises {foreign}; define them in errors.py"


def test_errors_have_the_library_base_and_a_stdlib_base():
    for name, obj in vars(errors).items():
        if isinstance(obj, type) and issubclass(obj, Exception) and obj is not errors.AlsatianError:
            assert issubclass(obj, errors.AlsatianError), name
            if obj is not errors.CandidateSkipped:  # control flow inside a search, never raised to the user
                stdlib = [
                    b
                    for b in obj.__mro__
                    if b.__module__ == "builtins" and b not in (Exception, BaseException, object)
                ]
                assert stdlib, f"{name} needs a stdlib base a caller would catch"
