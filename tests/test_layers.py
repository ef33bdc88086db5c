"""kdlib's modules stand in layers: each imports only modules of lower layers, at the top
of the file (an import inside a function is how a cycle hides), and the analysis wing
(settings, run records, figures, statistics) imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

KDLIB = Path(__file__).resolve().parents[1] / "kdlib"

# Lowest first. A package (data, models, methods, figures) is one unit: its modules may
# import each other; what it imports from outside must be lower.
LAYERS = [
    {"kdlib", "errors", "faults", "method_catalogue", "stats", "allocator"},
    {"io", "paths", "paper"},
    {"locks", "config"},
    {"runs", "speed", "models", "resume", "notebook_exec", "data", "flops"},
    {"environment", "evaluate", "methods", "figures", "tensorboard"},
    {"plan", "loop", "notebooks", "precision_check"},
    {"claim"},
    {"train"},
    {"bench", "sweep"},
    {"cli"},
    {"__main__"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
# The command line imports lazily so that `kdlib --help` and `kdlib runs` start fast;
# nothing imports it, so no cycle can hide there.
LAZY_OK = {"cli"}
TORCH_FREE = ("config", "runs", "figures", "stats", "paper", "method_catalogue", "notebooks")


def _unit(module: str) -> str:
    parts = module.split(".")
    return "kdlib" if len(parts) == 1 else parts[1]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(KDLIB.rglob("*.py")):
        parts = path.relative_to(KDLIB.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def _kdlib_imports(tree: ast.Module) -> list[tuple[ast.AST, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "kdlib":  # a submodule, or a name of kdlib/__init__.py
                found += [
                    (
                        node,
                        f"kdlib.{a.name}"
                        if (KDLIB / a.name).exists() or (KDLIB / f"{a.name}.py").exists()
                        else "kdlib",
                    )
                    for a in node.names
                ]
            elif node.module.startswith("kdlib."):
                found.append((node, node.module))
        elif isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names if a.name.startswith("kdlib")]
    return found


def _inside_function(tree: ast.Module) -> set[int]:
    """ids of the import nodes that sit inside a function body."""
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            inside |= {id(n) for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)}
    return inside


def test_every_module_has_a_layer() -> None:
    units = {_unit(name) for name, _ in _modules()}
    assert units - set(RANK) == set(), "add the new module to LAYERS"


@pytest.mark.parametrize("name,path", _modules(), ids=[n for n, _ in _modules()])
def test_imports_go_down_and_sit_at_the_top(name: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    unit = _unit(name)
    lazy = _inside_function(tree)
    for node, target in _kdlib_imports(tree):
        other = _unit(target)
        if other == unit:
            continue
        assert RANK[other] < RANK[unit], f"{name} imports {target}, a module of a higher layer"
        if unit not in LAZY_OK:
            assert id(node) not in lazy, f"{name} imports {target} inside a function"


def test_the_analysis_wing_imports_no_torch() -> None:
    code = (
        "import sys\n"
        + "".join(f"import kdlib.{m}\n" for m in TORCH_FREE)
        + "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
