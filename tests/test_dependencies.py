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


def _module_graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports (lazy imports included; `from a import b` counts as
    importing the module a.b when that is a module of the package)."""
    top = ROOT.joinpath(*package.split("."))
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in top.rglob("*.py") if "__pycache__" not in p.parts}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            deps |= {n for n in names if n in files and n != mod}
        graph[mod] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                found.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


@pytest.mark.parametrize("package", ["cultureclip", "synth", "eval_suite", "demo", "world"])
def test_no_import_cycles(package):
    """No circle in eval_suite: task shapes, readers and errors sit below the Benchmark base class, embedding
    and scoring; the atlas frame layout (atlas_frames) sits below both the atlas and its figures. None in the
    demo: its config and state holders sit below the services that compose them, and the live evaluation
    gets the holders it needs, not the services."""
    cycles = _cycles(_module_graph(package))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _cycles(_module_graph("pkg")) == [["pkg.a", "pkg.b", "pkg.a"]]


def _private(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def _private_uses(path: Path, top: str) -> list[str]:
    """Private names (`_name`, a `_module` in the path) this file takes from another top-level package: imported
    (`from eval_suite.run import _Dist`, `import cultureclip._x`), or read off an imported module
    (`import eval_suite.run as R` ... `R._Dist`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    foreign = lambda mod: mod.split(".")[0] in PACKAGES and mod.split(".")[0] != top  # noqa: E731
    bad, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if foreign(a.name):
                    modules[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                    if _private(a.name):
                        bad.append(f"{node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and not node.level and foreign(node.module or ""):
            for a in node.names:
                if _private(node.module) or _private(a.name):
                    bad.append(f"{node.lineno}: from {node.module} import {a.name}")
                modules[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):  # attributes read off an imported foreign module (or a package's submodule)
        if isinstance(node, ast.Attribute) and _private(node.attr) and not node.attr.startswith("__"):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                bad.append(f"{node.lineno}: {base.id}.{'.'.join(reversed(chain))} ({modules[base.id]})")
    return bad


def test_no_package_uses_another_packages_private_names():
    """A `_name` is its package's own business: another package uses only its public API (so a private helper
    can change without breaking a caller it does not know about). Tests and benches may reach in."""
    bad = [f"{path.relative_to(ROOT)}:{use}" for top in PACKAGES for path in _sources(top)
           for use in _private_uses(path, top)]
    bad += [f"app.py:{use}" for use in _private_uses(ROOT / "app.py", "app")]
    assert not bad, "private names used across packages (make them public or add a public API):\n" + "\n".join(bad)


def test_the_private_name_checker_sees_every_form(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("from eval_suite.run import EvalConfig, _Dist\nimport eval_suite.run as R\nfrom cultureclip import "
                    "checkpoint\nfrom demo.services import _mine\n\n\ndef f():\n    import cultureclip._hidden\n"
                    "    R._existing_ok(1)\n    checkpoint._memo.clear()\n    R.evaluate_one()\n    R.__doc__\n")
    assert _private_uses(path, "demo") == [
        "1: from eval_suite.run import _Dist", "8: import cultureclip._hidden",
        "9: R._existing_ok (eval_suite.run)", "10: checkpoint._memo (cultureclip.checkpoint)"]


# heavy or optional third-party libraries a function may import when it needs them (a CLI's --help, a module
# that runs without the optional extra); everything else (the standard library, our own modules) at the top
LAZY_OK = {"torch", "torchvision", "open_clip", "open_clip_train", "transformers", "diffusers", "gradio",
           "gradio_client", "plotly", "kaleido", "pandas", "pyarrow", "PIL", "numpy", "huggingface_hub",
           "safetensors", "peft", "spaces", "webdataset", "accelerate", "datasets", "playwright", "tqdm", "yaml",
           "httpx", "starlette", "uvicorn", "fastapi", "ctypes", "psutil", "openai", "requests", "matplotlib",
           "tokenizers"}


def _function_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of each import inside a function body, except the optional ones in a `try` that catches
    ImportError (or a broader exception) and deliberate ones marked `# lazy: <reason>` (the app's entry point
    imports the app after its starting page is up)."""
    text = path.read_text()
    tree = ast.parse(text, filename=str(path))
    lines = text.splitlines()
    optional: set[int] = set()
    for t in ast.walk(tree):
        if isinstance(t, ast.Try) and any(h.type is None or any(k in ast.unparse(h.type) for k in (
                "ImportError", "ModuleNotFoundError", "Exception")) for h in t.handlers):
            optional |= {id(n) for s in t.body for n in ast.walk(s)}
    found: dict[int, tuple[int, str]] = {}
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) and func.name != "__getattr__":
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in optional \
                        and "# lazy:" not in lines[node.lineno - 1]:  # a deliberate one, with its reason
                    mod = ("." * node.level + (node.module or "")) if isinstance(node, ast.ImportFrom) \
                        else node.names[0].name
                    found[id(node)] = (node.lineno, mod)
    return sorted(found.values())


def test_imports_sit_at_module_top():
    """A module's dependencies are read at its top (ARCHITECTURE.md's arrows are checked on them): only heavy or
    optional third-party libraries are imported inside functions."""
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod} inside a function" for top in PACKAGES for p in _sources(top)
           for line, mod in _function_imports(p)
           if mod.startswith(".") or mod.split(".")[0] not in LAZY_OK]
    assert not bad, "\n".join(bad)


def test_the_top_import_checker_sees_lazy_project_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\n\n\ndef f():\n    import json\n    from .x import y\n    import torch\n    try:\n"
                    "        import peft\n    except ImportError:\n        peft = None\n    import z  # lazy: why\n")
    assert _function_imports(path) == [(5, "json"), (6, ".x"), (7, "torch")]


# ARCHITECTURE.md's arrows at module level: the other packages' modules each package may import (a new
# arrow is a decision: add it here and there together)
CROSS_MODULES = {
    "demo": {"cultureclip.backbone", "cultureclip.bankcache", "cultureclip.checkpoint", "cultureclip.data",
             "cultureclip.fileio", "cultureclip.image", "cultureclip.inference", "cultureclip.lora", "eval_suite",
             "eval_suite.benchmarks", "eval_suite.confusions", "eval_suite.figures", "eval_suite.results",
             "eval_suite.run", "eval_suite.tables", "synth.catalog", "synth.world"},
    "eval_suite": {"cultureclip.backbone", "cultureclip.checkpoint", "cultureclip.config", "cultureclip.data",
                   "cultureclip.fileio", "cultureclip.image", "cultureclip.inference", "cultureclip.steps",
                   "cultureclip.twins", "synth.catalog"},
    "synth": {"cultureclip.backbone", "cultureclip.config", "cultureclip.data", "cultureclip.fileio",
              "cultureclip.image", "cultureclip.inference", "cultureclip.steps"},
    "world": {"cultureclip.backbone", "cultureclip.config", "cultureclip.data", "cultureclip.fileio",
              "cultureclip.inference", "cultureclip.lora", "cultureclip.steps", "cultureclip.train",
              "cultureclip.twins", "eval_suite", "eval_suite.benchmarks", "eval_suite.figures", "eval_suite.run",
              "eval_suite.tables", "synth.catalog", "synth.llm", "synth.run", "synth.world"},
    "cultureclip": set(),
}


def test_each_package_imports_only_the_modules_architecture_md_names():
    bad = []
    for top, allowed in CROSS_MODULES.items():
        for path in _sources(top):
            for line, mod in _imports(path):
                head = mod.split(".")[0]
                if head in PACKAGES and head != top and ".".join(mod.split(".")[:2]) not in allowed:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "imports ARCHITECTURE.md does not name (add the arrow there and here, or remove it):\n" + "\n".join(bad)
