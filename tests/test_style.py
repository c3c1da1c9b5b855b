"""The tree keeps its style: ruff's pycodestyle and pyflakes rules (pyproject.toml's [tool.ruff])
over every Python file, lines within 100 columns."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                    reason="needs ruff (the test extra: pip install -e '.[test]')")
def test_the_tree_passes_ruff():
    check = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
