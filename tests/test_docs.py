"""The README's plugin is complete: extracted, loaded with -p, listed and run, with no change to
qbench; the README's quick start names the main job."""

from __future__ import annotations

import json
import re

import pandas as pd

from conftest import ROOT, TINY_SUITE


def test_readme_plugin_runs_and_appears_in_results(tmp_path, monkeypatch, run_cli, write_suite):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# qbench_example\.py\n.*?)```", readme, re.S).group(1)
    (tmp_path / "qbench_example.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    listed = json.loads(run_cli("backends", "--json", "-p", "qbench_example").output)
    assert {"name": "example-f64", "available": True} == {
        k: v for r in listed if r["name"] == "example-f64" for k, v in r.items()
        if k in ("name", "available")}
    out = tmp_path / "out"
    result = run_cli("run", write_suite(TINY_SUITE), "--out", out, "-p", "qbench_example",
                     "--backends", "example-f64,torch-x86", "--max-time", "0.01")
    rows = pd.read_csv(out / "results.csv")
    assert set(rows[rows.backend == "example-f64"].status) == {"ok"}
    assert result.exit_code == 0


def test_readme_quick_start_runs_the_resnet_suite():
    readme = (ROOT / "README.md").read_text()
    assert "qbench run suites/resnet.toml" in readme
