"""The dependency rules of ARCHITECTURE.md, enforced over every import statement in the source, including
imports inside functions (lazy imports count: they run in the same process)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cultureclip", "synth", "eval_suite", "demo", "world")
APP_ONLY = ("gradio",)
# package (or module) -> top-level names it must never import
FORBIDDEN = {
    "cultureclip": ("synth", "eval_suite", "demo", "world", "gradio", "diffusers", "plotly"),
    "synth": ("eval_suite", "demo", "world", "gradio", "plotly"),
    "eval_suite": ("demo", "world", "gradio", "diffusers"),
    "demo": ("world",),
    "world": ("demo", "gradio"),
}
# cultureclip.loss is pure math: torch and the standard library only
PURE = {"cultureclip/loss.py": ("torch",)}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute top-level module) for every import in a file; relative imports are resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = path.relative_to(ROOT).parts[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
    return out


def _sources(top: str) -> list[Path]:
    folder = ROOT / top
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts) if folder.is_dir() else []


def test_dependency_rules_hold_for_every_import():
    bad = []
    for top, forbidden in FORBIDDEN.items():
        for path in _sources(top):
            for line, mod in _imports(path):
                if mod.split(".")[0] in forbidden:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod} ({top} must not import {mod.split('.')[0]})")
    assert not bad, "dependency rules broken (see ARCHITECTURE.md):\n" + "\n".join(bad)


def test_gradio_only_in_the_app_layer():
    bad = [f"{p.relative_to(ROOT)}:{line}" for top in PACKAGES if top != "demo" for p in _sources(top)
           for line, mod in _imports(p) if mod.split(".")[0] in APP_ONLY]
    assert not bad, bad


@pytest.mark.parametrize("rel,allowed", sorted(PURE.items()))
def test_pure_modules_import_only_the_standard_library_and(rel, allowed):
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    mods = {m.split(".")[0] for _, m in _imports(ROOT / rel)}
    assert mods <= stdlib | set(allowed), sorted(mods - stdlib - set(allowed))


def test_the_checker_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The checker must catch an import hidden inside a function and a relative one (or it proves nothing)."""
    path = tmp_path / "cultureclip" / "x.py"
    path.parent.mkdir()
    path.write_text("def f():\n    import eval_suite.run\n    from ..demo import ui\n    from .loss import y\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _imports(path) == [(2, "eval_suite.run"), (3, "demo"), (4, "cultureclip.loss")]
