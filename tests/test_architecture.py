"""The layout holds: the import direction of docs/architecture.md, and framing names stay inside framing/."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "charlstm"


def test_the_import_contract_holds():
    """import-linter checks the layers written in pyproject.toml ([tool.importlinter])."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is missing: pip install -e '.[dev]' installs import-linter")
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_module_outside_framing_compares_framing_names():
    """Adding a framing touches framing/ (and its name in the choices), nothing else."""
    compare = re.compile(r"""framing(?:\.name)?\s*[!=]=\s*(?:["']|FramingName\.)""")
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in PACKAGE.rglob("*.py")
                 if "framing" not in path.relative_to(PACKAGE).parts[:1]
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if compare.search(line)]
    assert offenders == []


def test_modules_stay_readable_in_one_sitting():
    too_long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > 300}
    assert too_long == {}


def _imports_of(path: Path, module: str, modules: set[str]) -> set[str]:
    """The charlstm modules ``path`` imports anywhere in it (TYPE_CHECKING blocks and functions too)."""
    import ast

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                      for alias in node.names}
    return {name for name in found if name in modules and name != module}


def test_no_module_imports_one_that_imports_it_back():
    """No import circle in the package, however long, whether under TYPE_CHECKING or not."""

    def name(path: Path) -> str:
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        return ".".join(("charlstm", *parts)).removesuffix(".__init__")

    paths = {name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {module: _imports_of(path, module, set(paths)) for module, path in paths.items()}
    cycles, done = [], set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycles.append(" -> ".join([*trail[trail.index(module):], module]))
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*trail, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == [], "\n".join(cycles)
