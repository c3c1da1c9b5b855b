"""report.html, the terminal summary, `qbench report`, `qbench compare` and the pytest-benchmark
export."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape

from qbench.check import exact_share_text
from qbench.compare import label
from qbench.ratios import head_to_head, networks
from qbench.peaks import peak_for
from qbench.plots import per_case_plot, roofline_plot
from qbench.report import network_times
from qbench.summary import LISTED_FAILURES, backend_stats, print_summary

from conftest import HOSTILE, TINY_SUITE

FAST = ("--max-time", "0.01", "--min-samples", "2")


def test_report_is_self_contained_with_plots_and_escaped_strings(hostile_run):
    page = (hostile_run / "report.html").read_text()
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)  # nothing fetched
    assert "@import" not in page and "url(http" not in page
    assert page.count("<svg") == 3  # time, speedup, roofline
    assert re.search(r"<title>[^<]*torch-onednn[^<]*median [0-9.]+ us", page)  # hover text
    assert "Backend &#34;faulty-raises&#34; failed in qbench_apply" in page  # messages in full
    assert "network time" in page.lower() and "geomean speedup" in page


def test_the_summary_lists_each_backends_first_failures_and_counts_the_rest(capsys):
    """A CPU without AVX-512 VNNI gave 138 mismatch lines on `suites/resnet.toml` (README.md), its
    case names without their "[batch=1]", which rich took for markup."""
    base = {"status": "mismatch", "max_err_lsb": 9, "exact_pct": 50.0, "speedup": math.nan}
    rows = [base | {"case": f"c[batch={i}]", "backend": "wrong", "error": f"off {i}"}
            for i in range(LISTED_FAILURES + 3)]
    rows.append(base | {"case": "c0", "backend": "broken", "status": "error", "error": "raised"})
    print_summary(rows, "wrong")
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith(("mismatch", "error"))]
    assert lines == [*(f"mismatch c[batch={i}] / wrong: off {i}"
                       for i in range(LISTED_FAILURES)),
                     "mismatch 3 more rows of wrong (results.csv: error)",
                     "error c0 / broken: raised"]


def test_summaries_give_each_backends_worst_error_and_say_when_the_baseline_did_not_run(
        run_cli, write_suite, tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", write_suite(TINY_SUITE), "--out", out, *FAST,
                     "--backends", "reference,torch-fp32", "--baseline", "torch-qnnpack")
    assert result.exit_code == 0, result.output
    note = ("no speedups: the baseline, torch-qnnpack, is not among this run's backends "
            "(--baseline names another)")
    assert f"note {note}" in " ".join(result.output.split())
    page = (out / "report.html").read_text()
    assert f"{escape(note)}." in page
    summary = page[page.index("<h2>Summary</h2>"):page.index("Network time")]
    for entry in backend_stats(pd.read_csv(out / "results.csv").to_dict("records")):
        cells = re.search(rf'<td class="text">{entry["backend"]}</td>(.*)</tr>', summary)[1]
        assert re.findall(r"<td[^>]*>([^<]*)</td>", cells)[-3:] == [
            f'{entry["max_err_lsb"]:.4g}', exact_share_text(entry["min_exact_pct"]), "-"]
    again = run_cli("run", write_suite(TINY_SUITE), "--out", tmp_path / "again", *FAST,
                    "--backends", "reference,torch-fp32", "--baseline", "torch-fp32")
    assert "no speedups" not in again.output
    assert "no speedups" not in (tmp_path / "again" / "report.html").read_text()


def test_qbench_report_renders_again(hostile_run, run_cli):
    (hostile_run / "report.html").unlink()
    result = run_cli("report", hostile_run)
    assert result.exit_code == 0 and (hostile_run / "report.html").exists()


def test_qbench_report_on_a_non_result_directory(run_cli, tmp_path):
    result = run_cli("report", tmp_path)
    assert result.exit_code == 2 and "not a qbench result directory" in result.output


def test_network_time_weights_by_count_and_flags_gaps():
    """The third case has no time, the fourth a time of wrong outputs: neither counts."""
    rows = pd.DataFrame({"device": "cpu", "backend": ["b"] * 4, "batch": [1] * 4,
                         "status": ["ok", "mistrusted", "error", "mismatch"],
                         "median_us": [10.0, 20.0, float("nan"), 5.0], "count": [1, 3, 1, 1]})
    assert network_times(rows) == [{"device": "cpu", "backend": "b", "batch": 1, "ms": 0.07,
                                    "cases": 2, "of": 4}]


def test_geomean_speedup_counts_only_rows_that_passed_the_check():
    rows = [{"backend": "b", "status": status, "speedup": speedup, "max_err_lsb": err,
             "exact_pct": exact}
            for status, speedup, err, exact in [("ok", 2.0, 0, 100.0), ("mistrusted", 8.0, 1, 99.0),
                                                ("mismatch", 1000.0, 9, 50.0)]]
    [stats] = backend_stats(rows)
    assert stats["speedup"] == pytest.approx(4.0)  # sqrt(2 x 8): the mismatch's 1000x left out
    assert stats["max_err_lsb"] == 9 and stats["min_exact_pct"] == 50.0  # over every checked row


def test_plots_draw_rows_that_failed_the_check_hollow():
    """A mismatch's point is hollow, says why on hover, and the legend explains hollow points;
    a plot without one has no such entry."""
    rows = pd.DataFrame({"case": ["c1", "c2"], "backend": "b", "status": ["ok", "mismatch"],
                         "median_us": [10.0, 20.0], "p10_us": [9.0, 19.0], "p90_us": [11.0, 21.0],
                         "speedup": [1.0, 0.5], "tops": [1.0, 0.5], "gbps": [10.0, 5.0]})
    for svg in (per_case_plot(rows, "median_us", "median us"), roofline_plot(rows, None)):
        assert svg.count("its outputs failed the check") == 1
        assert "hollow: outputs failed the check" in svg
        ok, mismatch = [re.search(r'<use [^>]*style="([^"]*)"', point).group(1) for point in
                        re.findall(r'<g id="pt-\d+">.*?</g>', svg, re.S)]
        assert "fill: #" in ok and "fill: #" not in mismatch and "fill-opacity: 0;" in mismatch
    passing = per_case_plot(rows[rows["status"] == "ok"], "median_us", "median us")
    assert "hollow" not in passing and "failed the check" not in passing


def test_peaks_match_cuda_device_names():
    assert peak_for("cuda: NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert peak_for("cuda: NVIDIA H100 PCIe").name == "H100 PCIe"
    assert peak_for("cuda: NVIDIA H200").bandwidth_gbs == 4800
    assert peak_for("cuda: NVIDIA L40S").name == "L40S" and peak_for("cuda: NVIDIA L4").name == "L4"
    assert peak_for("cpu: AMD EPYC") is None


def test_compare_labels():
    assert label(1.02, noise=0.01) == "SAME"  # within the 5 % threshold
    assert label(1.3, noise=0.02) == "SLOWER" and label(0.7, noise=0.02) == "FASTER"
    assert label(1.08, noise=0.09) == "SAME"  # within a small noise
    assert label(1.1, noise=0.2) == "NOISY"  # above the threshold, within a large noise
    assert label(1.3, noise=0.2) == "SLOWER"  # beyond even a large noise


def test_compare_a_run_with_itself_and_with_a_slowed_backend(run_cli, write_suite, tmp_path,
                                                             fake_plugins, monkeypatch):
    suite = write_suite(TINY_SUITE)
    args = ("--backends", "faulty-exact", "-p", "qbench_faulty", "--max-time", "0.05")
    run_cli("run", suite, "--out", tmp_path / "old", *args)
    same = run_cli("compare", tmp_path / "old", tmp_path / "old", "--fail-above", "0")
    assert same.exit_code == 0 and "SAME: 3" in same.output
    monkeypatch.setenv("QBENCH_FAULTY_DELAY_S", "0.02")  # beyond any noise of a loaded machine
    run_cli("run", suite, "--out", tmp_path / "new", *args)
    slower = run_cli("compare", tmp_path / "old", tmp_path / "new", "--fail-above", "50",
                     "--html", tmp_path / "cmp.html")
    assert "SLOWER: 3" in slower.output and slower.exit_code == 1
    page = (tmp_path / "cmp.html").read_text()
    assert page.count('class="SLOWER"') == 3


def test_compare_warns_where_the_runs_timed_a_row_differently(run_cli, write_suite, tmp_path,
                                                                fake_plugins):
    """A run against itself: no warning. Against the same rows as timed on another device with
    the L2 cache warm (its CSV's columns rewritten, as a run on an H200 with --timing hot would
    have them): a warning on stderr and on the page naming both changes, the exit status
    untouched."""
    run_cli("run", write_suite(TINY_SUITE), "--out", tmp_path / "here", "--backends",
            "faulty-exact", "-p", "qbench_faulty", "--max-time", "0.02")
    same = run_cli("compare", tmp_path / "here", tmp_path / "here")
    assert same.exit_code == 0 and "differently" not in same.output
    assert "differently" not in (tmp_path / "here" / "compare.html").read_text()
    shutil.copytree(tmp_path / "here", tmp_path / "there")
    rows = pd.read_csv(tmp_path / "there" / "results.csv", keep_default_na=False)
    device, mode = rows["device"].iloc[0], rows["timing_mode"].iloc[0]
    rows["device"], rows["timing_mode"] = "cuda: NVIDIA H200", "hot"
    rows.to_csv(tmp_path / "there" / "results.csv", index=False)
    moved = run_cli("compare", tmp_path / "here", tmp_path / "there")
    changes = f"device {device} -> cuda: NVIDIA H200; timing_mode {mode} -> hot"
    assert moved.exit_code == 0 and f"timed rows differently ({changes})" in moved.output
    page = (tmp_path / "there" / "compare.html").read_text()
    assert f'<p class="warning">Warning: the runs timed rows differently ' \
           f'({changes.replace(">", "&gt;")})' in page


def test_compare_marks_rows_whose_outputs_failed_the_check(run_cli, write_suite, tmp_path,
                                                           fake_plugins):
    """A run against its copy with one row a mismatch (its CSV rewritten): that row's `check`
    says so on stdout and the page, with a warning; --fail-above fails where NEW has the
    mismatch and OLD had not, whatever the timings, and not where only OLD has it, nor where
    both have it (a backend known to be wrong there)."""
    run_cli("run", write_suite(TINY_SUITE), "--out", tmp_path / "good", "--backends",
            "faulty-exact", "-p", "qbench_faulty", "--max-time", "0.02")
    shutil.copytree(tmp_path / "good", tmp_path / "wrong")
    rows = pd.read_csv(tmp_path / "wrong" / "results.csv", keep_default_na=False)
    rows.loc[0, "status"] = "mismatch"
    rows.to_csv(tmp_path / "wrong" / "results.csv", index=False)
    worse = run_cli("compare", tmp_path / "good", tmp_path / "wrong", "--fail-above", "1000")
    assert worse.exit_code == 1 and "ok -> mismatch" in worse.output
    assert "warning: 1 row(s) failed the check in one run or both" in worse.output
    assert f"1 row(s) failed the check in {tmp_path / 'wrong'} that passed it in " in worse.output
    page = (tmp_path / "wrong" / "compare.html").read_text()
    assert page.count('class="text failed">ok -&gt; mismatch<') == 1
    assert "Warning: 1 row(s) failed the check" in page
    mended = run_cli("compare", tmp_path / "wrong", tmp_path / "good", "--fail-above", "1000")
    assert mended.exit_code == 0 and "mismatch -> ok" in mended.output
    same = run_cli("compare", tmp_path / "good", tmp_path / "good", "--fail-above", "1000")
    assert same.exit_code == 0 and "failed the check" not in same.output
    known = run_cli("compare", tmp_path / "wrong", tmp_path / "wrong", "--fail-above", "1000")
    assert known.exit_code == 0 and "warning: 1 row(s) failed the check" in known.output


def test_compare_matches_the_same_problem_swept_in_one_run_and_set_in_the_other(
        run_cli, write_suite, tmp_path, fake_plugins):
    suite = write_suite(TINY_SUITE)
    args = ("--backends", "faulty-exact", "-p", "qbench_faulty", "--max-time", "0.02")
    run_cli("run", suite, "--out", tmp_path / "swept", *args, "--set", "batch=[1, 2]")
    run_cli("run", suite, "--out", tmp_path / "set", *args, "--set", "batch=2")
    matched = run_cli("compare", tmp_path / "swept", tmp_path / "set")
    assert matched.exit_code == 0 and "[batch=" not in matched.output
    assert sum(int(count) for count in re.findall(r"[A-Z]+: (\d+)", matched.output)) == 3
    other = run_cli("run", suite, "--out", tmp_path / "other", *args, "--set", "batch=3")
    assert other.exit_code == 0
    unmatched = run_cli("compare", tmp_path / "set", tmp_path / "other")
    assert "no problem timed on the same backend in both runs" in unmatched.output


def test_pytest_benchmark_compare_reads_the_export(run_cli, write_suite, tmp_path):
    out, exported = tmp_path / "run", tmp_path / "bench.json"
    run_cli("run", write_suite(TINY_SUITE), "--out", out, "--backends", "torch-x86",
            "--benchmark-json", exported, *FAST)
    document = json.loads(exported.read_text())
    assert len(document["benchmarks"]) == 3
    assert document["benchmarks"][0]["stats"]["median"] > 0
    tool = shutil.which("pytest-benchmark", path=str(Path(sys.executable).parent))
    proc = subprocess.run([tool, "compare", str(exported), "--columns=min,median,max"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "a[relu=false][torch-x86]" in proc.stdout


def test_rows_from_two_cards_are_shown_side_by_side(tmp_path):
    from qbench.report import render_report
    from qbench.results import COLUMNS, ResultWriter

    writer = ResultWriter(tmp_path, {"suite": "s", "started": "", "command": [],
                                     "qbench_version": "", "description": "",
                                     "settings": {"baseline": "x"},
                                     "environment": {"host": "h", "platform": "", "python": "",
                                                     "cpu": "", "cpu_count": 1,
                                                     "torch_threads": 1, "gpu": None,
                                                     "packages": {}}})
    for device, backend, median in [("cuda: NVIDIA H100 80GB HBM3", "triton", 10.0),
                                    ("cuda: NVIDIA H100 80GB HBM3", "cudnn", 20.0),
                                    ("cuda: NVIDIA L4", "triton", 90.0),
                                    ("cuda: NVIDIA L4", "cudnn", 60.0)]:
        row = dict.fromkeys(COLUMNS, float("nan")) | {
            "case": "conv", "backend": backend, "device": device, "status": "ok", "error": "",
            "median_us": median, "p10_us": median, "p90_us": median, "tops": 1.0, "gbps": 1.0,
            "speedup": 1.0, "count": 1, "batch": 1}
        writer.append(row)
    writer.finish(finished="")
    page = render_report(tmp_path).read_text()
    section = page[page.index("Cards side by side"):page.index("Plots:")]
    best = re.findall(r'<td class="text">(\w+)</td>', section)
    assert best == ["conv", "triton", "cudnn"]  # H100: triton fastest; L4: cudnn fastest
    assert page.count("<svg") == 6  # three plots per card


def test_head_to_head_counts_only_cases_where_both_rows_are_ok():
    rows = pd.DataFrame([
        {"case": case, "backend": backend, "status": status, "median_us": median}
        for case, backend, status, median in [
            ("a", "mine", "ok", 10.0), ("a", "theirs", "ok", 20.0),
            ("b", "mine", "ok", 40.0), ("b", "theirs", "ok", 10.0),
            ("c", "mine", "mismatch", 1.0), ("c", "theirs", "ok", 10.0),
            ("d", "mine", "ok", 5.0), ("d", "theirs", "unsupported", float("nan"))]])
    table, (versus,) = head_to_head(rows, "mine", ["theirs"])
    assert list(table.index) == ["a", "b", "c", "d"]
    assert table["mine / theirs"].tolist()[:2] == [0.5, 4.0]
    assert table["mine / theirs"].isna().tolist()[2:] == [True, True]
    assert (versus.cases, versus.worst, versus.worst_case, versus.faster) == (2, 4.0, "b", 1)
    assert abs(versus.geomean - 2 ** 0.5) < 1e-12
    assert versus.sentence() == "mine / theirs: geomean 1.41, worst 4.00 (b), faster on 1 of 2"


def test_head_to_head_against_a_group_takes_its_fastest_ok_member_per_case():
    rows = pd.DataFrame([
        {"case": case, "backend": backend, "status": status, "median_us": median}
        for case, backend, status, median in [
            ("a", "mine", "ok", 10.0), ("a", "fp16", "ok", 20.0), ("a", "graph", "ok", 16.0),
            ("b", "mine", "ok", 10.0), ("b", "fp16", "ok", 8.0), ("b", "graph", "error", 1.0),
            ("c", "mine", "ok", 10.0), ("c", "fp16", "mismatch", 1.0),
            ("c", "graph", "unsupported", float("nan"))]])
    table, (versus,) = head_to_head(rows, "mine", ["fp16,graph"])
    assert list(table.columns) == ["mine", "fastest of fp16, graph",
                                   "mine / fastest of fp16, graph"]
    assert table["fastest of fp16, graph"].tolist()[:2] == [16.0, 8.0]
    assert table["fastest of fp16, graph"].isna().tolist()[2]
    assert (versus.cases, versus.worst_case, versus.faster) == (2, "b", 1)


def test_head_to_head_counts_the_ratios_on_a_median_that_did_not_settle():
    rows = pd.DataFrame([
        {"case": case, "backend": backend, "status": "ok", "median_us": median,
         "settled": settled}
        for case, backend, median, settled in [
            ("a", "mine", 10.0, True), ("a", "fp16", 20.0, False), ("a", "graph", 16.0, True),
            ("b", "mine", 10.0, False), ("b", "fp16", 8.0, True), ("b", "graph", 9.0, True),
            ("c", "mine", 10.0, True), ("c", "fp16", 8.0, False), ("c", "graph", 9.0, True)]])
    _, (versus,) = head_to_head(rows, "mine", ["fp16,graph"])
    # a: the unsettled fp16 is not the fastest; b: mine is unsettled; c: the fastest, fp16, is
    assert versus.unsettled == 2
    assert versus.sentence().endswith(
        "faster on 1 of 3; 2 of these ratios on a median that did not settle")


def test_networks_sum_median_times_count_per_batch_over_the_cases_both_ran():
    rows = pd.DataFrame([
        {"case": case, "backend": backend, "status": status, "median_us": median,
         "batch": batch, "count": count}
        for case, backend, status, median, batch, count in [
            ("a", "mine", "ok", 10.0, 1, 3), ("a", "theirs", "ok", 20.0, 1, 3),
            ("b", "mine", "ok", 40.0, 1, 1), ("b", "theirs", "ok", 10.0, 1, 1),
            ("c", "mine", "ok", 500.0, 32, 2), ("c", "theirs", "ok", 1000.0, 32, 2),
            ("d", "mine", "mismatch", 1.0, 32, 1), ("d", "theirs", "ok", 1000.0, 32, 1)]])
    table, versus = head_to_head(rows, "mine", ["theirs"])
    small, large = networks(rows, table, versus)
    assert (small.batch, small.cases, small.backend_ms, small.other_ms) == (1, 2, 0.07, 0.07)
    assert (large.batch, large.cases, large.backend_ms, large.other_ms) == (32, 1, 1.0, 2.0)
    assert large.sentence() == ("network at batch 32 (median x count, 1 case): mine 1.000 ms, "
                                "theirs 2.000 ms, ratio 0.50")


def test_ratios_command_prints_markdown_and_names_an_unknown_backend(run_cli, write_suite,
                                                                     tmp_path, fake_plugins):
    suite = write_suite(TINY_SUITE)
    run_cli("run", suite, "--out", tmp_path / "run", "-p", "qbench_faulty", "--backends",
            "faulty-exact,torch-x86", *FAST)
    result = run_cli("ratios", tmp_path / "run", "faulty-exact", "--against", "torch-x86",
                     "--markdown")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "| case | faulty-exact | torch-x86 | faulty-exact / torch-x86 |"
    assert len([line for line in lines if line.startswith("| ")]) == 1 + 3
    assert "faulty-exact / torch-x86: geomean" in lines[-2] and "of 3" in lines[-2]
    assert lines[-1].startswith("- network at batch 1 (median x count, 3 cases): faulty-exact ")
    unknown = run_cli("ratios", tmp_path / "run", "faulty-exakt", "--against", "torch-x86")
    assert unknown.exit_code == 2 and "did you mean 'faulty-exact'" in unknown.output
    group = run_cli("ratios", tmp_path / "run", "faulty-exact", "--against", "torch-x86,torch-x68")
    assert group.exit_code == 2 and "did you mean 'torch-x86'" in group.output
