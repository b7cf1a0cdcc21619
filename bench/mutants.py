"""A small mutation sample: how many changed-operator bugs in a module do its tests let through?

For each module, every place one of a few classic mutations applies (a comparison made lax or strict, a
sign or product flipped, `mean` <-> `sum`, `max` <-> `min`, `partition` <-> `rpartition`, `and` <-> `or`,
a `not` dropped, a constant nudged) is listed from the AST; a seeded sample is applied one at a time to a
copy of the checkout, and the module's tests run against it. A mutant whose tests still pass survives.

    python bench/mutants.py [--per-module 10] [--seed 0] [--tests-from COMMIT] [--drop FILE] [--deselect NODE]

`--tests-from` runs the tests of an earlier commit; `--drop` leaves a test file out and `--deselect` one
test (the "before" of new tests). Prints one line per mutant and a table of survivors per module.
"""
from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> the tests that cover it (fast ones: the two-process loss test is left out)
TARGETS: dict[str, list[str]] = {
    "cultureclip/loss.py": ["tests/test_loss.py", "-k", "not two_processes"],
    "cultureclip/data.py": ["tests/test_data.py"],
    "cultureclip/inference.py": ["tests/test_inference.py"],
    "eval_suite/metrics.py": ["tests/test_metrics.py"],
    "cultureclip/twins.py": ["tests/test_twins.py", "tests/test_world_study.py", "tests/test_benchmarks.py",
                             "tests/test_eval_run.py", "-k", "twin or score or group"],
}

SWAPS = {ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
         ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.And: ast.Or, ast.Or: ast.And,
         ast.In: ast.NotIn, ast.NotIn: ast.In}
NAMES = {"mean": "sum", "sum": "mean", "max": "min", "min": "max", "partition": "rpartition",
         "rpartition": "partition", "argmax": "argmin", "any": "all", "all": "any"}


@dataclass(frozen=True)
class Mutant:
    path: str
    line: int
    what: str
    index: int  # the index of this site among the module's sites


def _sites(tree: ast.AST) -> list[tuple[ast.AST, str, str]]:
    """(node, kind, description) for every mutable site, in a fixed walk order."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in SWAPS:
                    out.append((node, f"cmp{i}", f"{type(op).__name__} -> {SWAPS[type(op)].__name__}"))
        elif isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in SWAPS:
            out.append((node, "op", f"{type(node.op).__name__} -> {SWAPS[type(node.op)].__name__}"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append((node, "not", "drop `not`"))
        elif isinstance(node, ast.Attribute) and node.attr in NAMES:
            out.append((node, "attr", f".{node.attr} -> .{NAMES[node.attr]}"))
        elif isinstance(node, ast.Name) and node.id in ("max", "min", "any", "all"):
            out.append((node, "name", f"{node.id} -> {NAMES[node.id]}"))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float) and not isinstance(node.value, bool):
            out.append((node, "const", f"{node.value!r} -> {node.value!r} + 1"))
    return out


class _Apply(ast.NodeTransformer):
    def __init__(self, target: ast.AST, kind: str):
        self.target, self.kind = target, kind

    def generic_visit(self, node):
        node = super().generic_visit(node)
        if node is not self.target:
            return node
        k = self.kind
        if k.startswith("cmp"):
            i = int(k[3:])
            node.ops[i] = SWAPS[type(node.ops[i])]()
        elif k == "op":
            node.op = SWAPS[type(node.op)]()
        elif k == "not":
            return node.operand
        elif k == "attr":
            node.attr = NAMES[node.attr]
        elif k == "name":
            node.id = NAMES[node.id]
        elif k == "const":
            node.value = node.value + 1
        return node


def _in_docstring_or_annotation(tree: ast.AST) -> set[int]:
    """Ids of nodes not worth mutating: docstrings, annotations, the `__all__` list."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for a in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                if a.annotation is not None:
                    skip.update(id(n) for n in ast.walk(a.annotation))
            if node.returns is not None:
                skip.update(id(n) for n in ast.walk(node.returns))
        elif isinstance(node, ast.AnnAssign):
            skip.update(id(n) for n in ast.walk(node.annotation))
    return skip


def list_mutants(path: str, base: Path = ROOT) -> list[Mutant]:
    tree = ast.parse((base / path).read_text(encoding="utf-8"))
    skip = _in_docstring_or_annotation(tree)
    return [Mutant(path, getattr(n, "lineno", 0), what, i) for i, (n, _, what) in enumerate(_sites(tree))
            if id(n) not in skip]


def mutated_source(m: Mutant, base: Path = ROOT) -> str:
    tree = ast.parse((base / m.path).read_text(encoding="utf-8"))
    node, kind, _ = _sites(tree)[m.index]
    return ast.unparse(ast.fix_missing_locations(_Apply(node, kind).visit(tree)))


def _copy_checkout(dst: Path, tests_from: str | None, drop: list[str]) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("cultureclip", "synth", "eval_suite", "demo", "world", "configs", "tests"):
        shutil.copytree(ROOT / d, dst / d, ignore=ignore)
    for f in ("pytest.ini",):
        shutil.copy(ROOT / f, dst / f)
    if tests_from:
        shutil.rmtree(dst / "tests")
        (dst / "tests").mkdir()
        tar = subprocess.run(["git", "archive", tests_from, "tests"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dst)], input=tar, check=True)
    for f in drop:
        (dst / f).unlink(missing_ok=True)


def run_tests(work: Path, args: list[str], timeout: int) -> bool:
    """True when the tests pass (the mutant survives)."""
    args = [a for a in args if a.startswith("-") or (work / a).exists() or not a.startswith("tests/")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONPATH": str(work)}
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args], cwd=work,
                           env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False  # a hang is a detected mutant
    return r.returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-module", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tests-from", default=None, help="take tests/ from this commit")
    ap.add_argument("--drop", action="append", default=[], help="a test file to leave out")
    ap.add_argument("--deselect", action="append", default=[], help="a test (pytest node id) to leave out")
    ap.add_argument("--modules", nargs="*", default=list(TARGETS))
    ap.add_argument("--timeout", type=int, default=300)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    survivors: dict[str, list[Mutant]] = {}
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        work = Path(tmp)
        _copy_checkout(work, args.tests_from, args.drop)
        for path in args.modules:
            tests = TARGETS[path] + [f"--deselect={d}" for d in args.deselect]
            if not run_tests(work, tests, args.timeout):
                print(f"{path}: its tests fail unmutated; skipped", flush=True)
                continue
            pool = list_mutants(path, work)  # the copy: edits to the checkout during a run change nothing
            sample = sorted(rng.sample(pool, min(args.per_module, len(pool))), key=lambda m: m.index)
            original = (work / path).read_text(encoding="utf-8")
            survivors[path] = []
            for m in sample:
                (work / path).write_text(mutated_source(m, work), encoding="utf-8")
                alive = run_tests(work, tests, args.timeout)
                (work / path).write_text(original, encoding="utf-8")
                print(f"{'SURVIVED' if alive else 'killed  '} {path}:{m.line} {m.what}", flush=True)
                if alive:
                    survivors[path].append(m)
            print(f"{path}: {len(survivors[path])}/{len(sample)} survived (of {len(pool)} sites)", flush=True)
        print("\n| module | mutants | survived |\n|---|---:|---:|")
        for path, s in survivors.items():
            n = min(args.per_module, len(list_mutants(path, work)))
            print(f"| {path} | {n} | {len(s)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
