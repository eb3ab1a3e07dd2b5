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
