"""The runner end to end through the CLI: files, columns, statuses and exit codes; failing backends
lose no other rows; the poison catches unwritten outputs."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch

import qbench
from qbench.cli import _new_directory
from qbench.environment import cpu_int8_dot_instructions
from qbench.results import COLUMNS, SCHEMA_VERSION, load_results
from qbench.errors import QbenchError
from qbench.suite import slug

from conftest import ROOT, TINY_SUITE
from cpu_engines import ADDING_PAIRS_IN_INT16

FAST = ("--max-time", "0.01", "--min-samples", "2")


def test_smoke_suite_on_the_cpu_engines(run_cli, tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", ROOT / "suites" / "smoke.toml", "--out", out, *FAST)
    rows = pd.read_csv(out / "results.csv")
    assert list(rows.columns) == list(COLUMNS)
    engines = {"torch-x86", "torch-fbgemm", "torch-onednn", "torch-qnnpack", "torch-fp32"}
    assert set(rows.backend) == engines
    assert len(rows) == 12 * len(engines)
    checked = rows[rows.status.isin(["ok", "mismatch"])]
    assert (checked.median_us > 0).all() and (checked.first_call_ms > 0).all()
    assert (rows[rows.backend == "torch-x86"].dropna(subset=["speedup"]).speedup == 1.0).all()
    # PyTorch refuses qint8 activations on every CPU engine, in its own words
    refused = rows[(rows.case.str.startswith("qint8")) & (rows.backend == "torch-x86")]
    assert set(refused.status) == {"unsupported"}
    assert refused.error.str.contains("QUint8|QUInt8").all()
    # fbgemm's depthwise kernel saturates int16 on full-range data (shared/DESIGN.md), and so do
    # the engines that add pairs of products in int16 on this CPU (`cpu_engines`) on plain convs
    fbgemm_dw = rows.case.str.startswith("depthwise") & (rows.backend == "torch-fbgemm")
    assert set(rows[fbgemm_dw].status) == {"mismatch"} and (rows[fbgemm_dw].max_err_lsb > 1).all()
    saturating = rows.backend.isin([f"torch-{engine}" for engine in ADDING_PAIRS_IN_INT16])
    assert set(rows[saturating & rows.case.str.startswith("3x3")].status) <= {"mismatch"}
    exact = rows[~saturating & ~fbgemm_dw & (rows.status != "unsupported")]
    assert set(exact.status) == {"ok"} and (exact.max_err_lsb <= 1).all()
    assert len(exact) >= 22  # qnnpack's 10 rows and torch-fp32's 12 at least
    assert result.exit_code == 1  # the mismatches fail the run
    first = rows[(rows.backend == "torch-fbgemm") & (rows.status == "mismatch")].iloc[0]
    assert f"mismatch {first.case} / torch-fbgemm: {first.error}" in result.output


def test_reduce_range_gives_fbgemm_the_activations_it_is_made_for(run_cli, tmp_path):
    """With 7 bits' activations (`--set reduce_range=true`) fbgemm's depthwise rows, `mismatch`
    on full-range data (above), are exact within 1 LSB."""
    out = tmp_path / "out"
    result = run_cli("run", ROOT / "suites" / "smoke.toml", "--out", out, "--backends",
                     "torch-fbgemm", "--set", "reduce_range=true", *FAST)
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 12 and rows.reduce_range.all()
    assert set(rows[rows.case.str.startswith("depthwise")].status) == {"ok"}
    assert set(rows.status) == {"ok", "unsupported"}  # PyTorch refuses the qint8 cases
    assert result.exit_code == 0, result.output
    table = (out / "report.html").read_text().split("<thead>")[-1]  # the rows' table
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", table.split("</thead>")[0])
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table.split("</tr>", 2)[1])
    assert dict(zip(headers, cells))["reduce_range"] == "yes"


def test_results_json_has_schema_environment_and_rows(run_cli, write_suite, tmp_path,
                                                      monkeypatch):
    monkeypatch.setenv("QBENCH_TRITON_STREAM_K", "1")  # qbench's variables are recorded
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")  # others are not
    out = tmp_path / "out"
    result = run_cli("run", write_suite(TINY_SUITE), "--out", out, "--backends", "torch-x86",
                     *FAST)
    assert result.exit_code == 0, result.output
    header, rows = load_results(out)
    assert header["schema_version"] == SCHEMA_VERSION
    assert header["environment"]["cpu"] and header["environment"]["packages"]["torch"]
    assert header["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "cpu_int8_dot" in header["environment"]
    assert header["environment"]["variables"]["QBENCH_TRITON_STREAM_K"] == "1"
    assert "UNRELATED_VARIABLE" not in header["environment"]["variables"]
    page = (out / "report.html").read_text()
    assert "QBENCH_TRITON_STREAM_K=1" in page and "PyTorch's vector code: " in page
    assert header["settings"]["baseline"] == "torch-x86" and header["finished"]
    assert len(json.loads((out / "results.json").read_text())["rows"]) == len(rows) == 3
    assert set(rows.status) == {"ok"}


def test_the_cpus_int8_dot_product_instructions_are_read_off_linuxs_flags(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n\n"
                   "processor\t: 1\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    older = tmp_path / "older"
    older.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert cpu_int8_dot_instructions(str(x86)) == ["avx512_vnni"]
    assert cpu_int8_dot_instructions(str(older)) == []
    assert cpu_int8_dot_instructions(str(arm)) is None
    assert cpu_int8_dot_instructions(str(tmp_path / "missing")) is None


def test_unknown_schema_version_is_refused(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(QbenchError, match="schema version 999"):
        load_results(tmp_path)


def test_failing_backends_lose_no_rows(run_cli, write_suite, tmp_path, fake_plugins):
    out = tmp_path / "out"
    backends = ("faulty-raises,faulty-lazy,faulty-off-by-two,faulty-refuses,faulty-exact,"
                "faulty-stale,torch-x86")
    result = run_cli("run", write_suite(TINY_SUITE), "--out", out, "--backends", backends,
                     "-p", "qbench_faulty", *FAST)
    rows = pd.read_csv(out / "results.csv").set_index(["case", "backend"])
    assert len(rows) == 3 * 7  # every (case, backend) has its row
    status = rows.status.groupby(level="backend").agg(set).to_dict()
    assert status == {"faulty-raises": {"error"}, "faulty-lazy": {"mismatch"},
                      "faulty-off-by-two": {"mismatch"}, "faulty-refuses": {"unsupported"},
                      "faulty-exact": {"ok"}, "faulty-stale": {"mismatch"}, "torch-x86": {"ok"}}
    errors = rows.xs("faulty-raises", level="backend").error
    assert errors.str.contains('Backend "faulty-raises" failed in qbench_apply').all()
    lazy = rows.xs("faulty-lazy", level="backend")
    assert (lazy.max_err_lsb == 128).all() and (lazy.exact_pct == 0).all()  # the poison shows
    assert lazy.error.str.endswith("% exact").all()  # its first call failed already
    stale = rows.xs("faulty-stale", level="backend")  # its timed calls write nothing
    assert (stale.max_err_lsb == 128).all() and (stale.exact_pct == 0).all()
    assert stale.error.str.endswith(
        "in the call after timing (the first call was within 1 LSB)").all()
    assert (rows.xs("faulty-off-by-two", level="backend").max_err_lsb == 2).all()
    assert result.exit_code == 1


def test_exit_status_zero_when_all_rows_pass(run_cli, write_suite, tmp_path):
    result = run_cli("run", write_suite(TINY_SUITE), "--out", tmp_path / "o",
                     "--backends", "torch-x86,torch-onednn,reference", *FAST)
    assert result.exit_code == 0, result.output


def test_unavailable_backends_are_rows_not_failures(run_cli, write_suite, tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", write_suite(TINY_SUITE), "--out", out,
                     "--backends", "torch-x86,cudnn,cupy", *FAST)
    rows = pd.read_csv(out / "results.csv")
    assert set(rows[rows.backend.isin(["cudnn", "cupy"])].status) == {"unavailable"}
    assert result.exit_code == 0


def test_a_run_never_overwrites_another(run_cli, write_suite, tmp_path):
    out = tmp_path / "out"
    run_cli("run", write_suite(TINY_SUITE), "--out", out, "--backends", "torch-x86", *FAST)
    before = (out / "results.csv").read_text()
    result = run_cli("run", write_suite(TINY_SUITE), "--out", out, "--backends", "torch-onednn")
    assert result.exit_code == 2
    assert (f"--out: {out} already holds a run (results.json, results.csv): continue it with "
            f"--resume {out}") in result.output
    assert (out / "results.csv").read_text() == before


def test_runs_started_in_the_same_second_get_directories_of_their_own(tmp_path):
    default = tmp_path / "results" / "tiny-cpu-20261207-120000"
    made = [_new_directory(default) for _ in range(3)]
    assert [p.name for p in made] == [default.name, f"{default.name}-2", f"{default.name}-3"]
    assert all(p.is_dir() for p in made)


def test_the_default_directory_lies_in_results_whatever_the_suites_name(
        run_cli, write_suite, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = TINY_SUITE.replace('name = "tiny"', 'name = "../../out of/results"')
    result = run_cli("run", write_suite(suite), "--backends", "torch-x86", "--case", "a", *FAST)
    assert result.exit_code == 0, result.output
    [made] = (tmp_path / "results").iterdir()
    assert made.name.startswith("out-of-results-cpu-") and (made / "results.csv").exists()


def test_a_slug_is_a_file_names_part():
    assert slug("../../out of/results") == "out-of-results"
    assert slug('create_model("resnet50", pretrained=False)') == (
        "create_model-resnet50-pretrained-False")
    assert slug("..") == "suite" and slug("resnet50") == "resnet50"


def test_unknown_backend_option_is_bad_input(run_cli, write_suite):
    result = run_cli("run", write_suite(TINY_SUITE), "--backends", "torch-x68")
    assert result.exit_code == 2 and "unknown backend 'torch-x68'" in result.output


def test_case_option_runs_the_cases_it_names(run_cli, write_suite, tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", write_suite(TINY_SUITE), "--out", out, "--backends", "torch-x86",
                     "--case", "a", *FAST)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out / "results.csv").case.tolist() == ["a[relu=false]", "a[relu=true]"]
    assert json.loads((out / "results.json").read_text())["settings"]["cases"] == ["a"]
    result = run_cli("run", write_suite(TINY_SUITE), "--case", "c*")
    assert result.exit_code == 2 and "--case 'c*' names none of its 3 cases" in result.output


def test_version_and_python_m(run_cli):
    assert run_cli("--version").output.strip() == f"qbench, version {qbench.__version__}"
    proc = subprocess.run([sys.executable, "-m", "qbench", "--version"], capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == f"qbench, version {qbench.__version__}"


def test_a_case_runner_does_not_confuse_same_named_cases():
    from qbench.problem import ConvProblem
    from qbench.registry import load_backends
    from qbench.runner import CaseRunner, RunSettings
    from qbench.suite import Case
    from qbench.timing import TimingPolicy

    runner = CaseRunner(RunSettings(policy=TimingPolicy(min_samples=1, max_time_s=0.0)))
    x86 = load_backends()["torch-x86"]
    for channels in (8, 16):  # one name, two problems, as two suites could have
        problem = ConvProblem(1, channels, 6, 6, 8, (3, 3), reduce_range=True)  # `TINY_SUITE`
        row = runner.row("s", Case("c", problem), x86)
        assert row["status"] == "ok" and row["in_channels"] == channels
