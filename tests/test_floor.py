"""Floors: a layer's ops and bytes at its card's measured rates, in every row of that card, in the
report and in `qbench ratios --floor`."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import pytest
import torch

import qbench.cli
import qbench.floor
from qbench.environment import device_name
from qbench.floor import CardRates, measure_rates, rates_for_run
from qbench.ratios import head_to_head
from qbench.results import load_results

from conftest import TINY_SUITE, requires_cuda

FAST = ("--max-time", "0.01", "--min-samples", "2")


def test_the_floor_is_the_longer_of_compute_and_memory():
    rates = CardRates("cuda: card", int8_tops=1000.0, copy_gbps=2000.0, how="")
    assert rates.floor_us(ops=10**12, bytes_moved=10**6) == pytest.approx(1000.0)  # ops: 1 ms
    assert rates.floor_us(ops=10**6, bytes_moved=4 * 10**9) == pytest.approx(2000.0)  # bytes: 2 ms


def test_a_cpu_run_measures_no_rates():
    assert rates_for_run("cpu") == (None, None)


def test_a_failed_measurement_is_recorded_and_costs_no_run(monkeypatch):
    def fail(device):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(qbench.floor, "measure_rates", fail)
    assert rates_for_run("cuda") == (None, {"error": "RuntimeError: out of memory"})


def test_rows_of_the_measured_card_carry_their_floor(run_cli, write_suite, tmp_path, monkeypatch):
    # rates for this CPU, slow enough that every case is compute-bound at 1 million ops a second,
    # sent to the worker processes in the run's settings
    rates = CardRates(device_name("cpu"), int8_tops=1e-6, copy_gbps=1e9, how="made up")
    monkeypatch.setattr(qbench.cli, "rates_for_run", lambda device: (rates, asdict(rates)))
    out = tmp_path / "run"
    result = run_cli("run", write_suite(TINY_SUITE), "--out", out, "--backends", "torch-x86",
                     *FAST)
    assert result.exit_code == 0, result.output
    header, rows = load_results(out)
    assert header["card_rates"] == asdict(rates)
    ops = {"a": 2 * 8 * 6 * 6 * 4 * 3 * 3, "b": 2 * 6 * 4 * 4 * 2 * 3 * 3}  # N K OH OW C/g R S
    assert rows.floor_us.tolist() == pytest.approx([ops[case[0]] for case in rows.case])
    assert "made up" in (out / "report.html").read_text()

    ratios = run_cli("ratios", out, "torch-x86", "--floor", "--markdown")
    assert ratios.exit_code == 0, ratios.output
    lines = ratios.output.splitlines()
    assert lines[0] == "| case | torch-x86 | floor | torch-x86 / floor |"
    table = [line.split(" | ") for line in lines[2:5]]
    for (case, median, floor, ratio), row in zip(table, rows.itertuples()):
        assert (case, float(floor)) == ("| " + row.case, round(row.floor_us, 1))
        assert float(ratio.rstrip(" |")) == pytest.approx(row.median_us / row.floor_us, abs=0.01)
    assert lines[-2].startswith("- torch-x86 / floor: geomean")
    within = int((rows.median_us <= 2 * rows.floor_us).sum())  # the rows' own times: no speed
    unsettled = int((~rows.settled.astype(bool)).sum())  # the rows' own: a CPU's may not settle
    noise = f"; {unsettled} of these ratios on a median that did not settle" if unsettled else ""
    assert lines[-2].endswith(f"within 2x on {within} of 3{noise}")
    network_ms = (rows.median_us * rows["count"]).sum() / 1e3, rows.floor_us.sum() / 1e3
    assert lines[-1] == (f"- network at batch 1 (median x count, 3 cases): torch-x86 "
                         f"{network_ms[0]:.3f} ms, floor {network_ms[1]:.3f} ms, ratio "
                         f"{network_ms[0] / network_ms[1]:.2f}")


def test_head_to_head_with_floors_counts_the_cases_within_2x():
    rows = pd.DataFrame([
        {"case": case, "backend": backend, "status": status, "median_us": median, "floor_us": 10.0}
        for case, backend, status, median in [
            ("a", "mine", "ok", 15.0), ("a", "theirs", "ok", 30.0),
            ("b", "mine", "ok", 40.0), ("b", "theirs", "ok", 20.0),
            ("c", "mine", "mismatch", 10.0), ("c", "theirs", "ok", 10.0)]])
    table, (versus, floor) = head_to_head(rows, "mine", ["theirs"], floor=True)
    assert list(table.columns) == ["mine", "theirs", "floor", "mine / theirs", "mine / floor"]
    assert table["floor"].tolist()[:2] == [10.0, 10.0] and pd.isna(table["floor"]["c"])
    assert (floor.cases, floor.worst, floor.worst_case, floor.within_2x) == (2, 4.0, "b", 1)
    assert floor.sentence() == "mine / floor: geomean 2.45, worst 4.00 (b), within 2x on 1 of 2"
    assert versus.sentence().endswith("faster on 1 of 2")


def test_ratios_asks_for_something_to_compare_with_and_for_floors_that_exist(
        run_cli, write_suite, tmp_path):
    out = tmp_path / "run"
    run_cli("run", write_suite(TINY_SUITE), "--out", out, "--backends", "torch-x86", *FAST)
    assert pd.read_csv(out / "results.csv").floor_us.isna().all()  # a CPU run: no floors
    neither = run_cli("ratios", out, "torch-x86")
    assert neither.exit_code == 2 and "--against NAME" in neither.output
    missing = run_cli("ratios", out, "torch-x86", "--floor")
    assert missing.exit_code == 2 and "no floors for 'torch-x86'" in missing.output


@requires_cuda
def test_the_card_rates_are_measured_on_the_card():
    rates = measure_rates(torch.device("cuda", torch.cuda.current_device()))
    assert rates.card == device_name("cuda")
    # a data-centre card's int8 tensor cores and memory: tens to thousands of TOPS and GB/s
    assert 10 < rates.int8_tops < 10_000 and 100 < rates.copy_gbps < 20_000
