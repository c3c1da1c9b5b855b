"""Timing statistics, the stopping rule, the poison and the trust check."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch

from conftest import requires_cuda
from qbench.check import compare, exact_share_text, mistrust_reason, poison
from qbench.timing import (TIMING_MODES, LaunchHold, Sample, Sampler, Timing, TimingPolicy,
                           measure, median_ci)


def test_median_ci_uses_order_statistics():
    assert median_ci(np.arange(7.0)) == float("inf")  # too few samples for a 95 % interval
    assert median_ci(np.arange(100.0)) == 20.0  # ranks 40 and 60


def test_timing_statistics():
    t = Timing.of([10.0] * 50 + [11.0] * 50, target_ci=0.2)
    assert t.median_us == 10.5 and t.p10_us == 10.0 and t.p90_us == 11.0 and t.settled


def test_measure_stops_when_settled_or_out_of_time():
    calls = []
    steady = measure(lambda: calls.append(1), Sampler("cpu"), TimingPolicy(max_time_s=5.0,
                                                                          target_ci=10.0))
    assert steady.settled and steady.samples < 100 and len(calls) == steady.samples
    rng = random.Random(0)
    jittery = lambda: time.sleep(rng.random() * 1e-4)  # noqa: E731
    never = measure(jittery, Sampler("cpu"), TimingPolicy(max_time_s=0.02, target_ci=0.0))
    assert not never.settled and never.samples >= 3


def test_poison_is_128_lsb_away_everywhere():
    for dtype, lo, hi in ((torch.uint8, 0, 256), (torch.int8, -128, 128)):
        ref = torch.arange(lo, hi).to(dtype)
        assert compare(poison(ref), ref).max_err_lsb == 128
        assert compare(poison(ref), ref).exact_pct == 0.0


def test_compare_counts_exact_share():
    ref = torch.zeros(100, dtype=torch.uint8)
    out = ref.clone()
    out[:3] = 1
    result = compare(out, ref.to(torch.int16))
    assert result.max_err_lsb == 1 and result.exact_pct == 97.0 and result.within_tolerance


def test_an_exact_share_reads_100_only_when_every_output_matched():
    """Two decimals showed shares such as the H200 runs' 99.99988 % as 100.00 in the summary,
    beside a max error of 1: the share shows the decimals it takes (here 3 outputs of 2.6
    million 1 LSB off)."""
    ref = torch.zeros(2_600_000, dtype=torch.uint8)
    out = ref.clone()
    out[:3] = 1
    shown = exact_share_text(compare(out, ref.to(torch.int16)).exact_pct)
    assert shown == "99.99988"
    assert [exact_share_text(share) for share in (100.0, 97.0, 99.5, 99.99)] == [
        "100", "97.00", "99.50", "99.990"]
    assert exact_share_text(float("nan")) == "-"
    assert float(exact_share_text(100 - 1e-12)) < 100


def test_mistrust_flags_clamped_or_constant_outputs():
    spread = torch.arange(256).to(torch.uint8)
    assert mistrust_reason(spread, 0, 255) is None
    assert "clamped" in mistrust_reason(torch.tensor([0] * 80 + list(range(20))).to(torch.uint8),
                                        0, 255)
    assert "distinct" in mistrust_reason(torch.tensor([5, 6, 5, 6]).to(torch.uint8), 0, 255)


class FakeMonitor:
    """Every third reading is below the floor, as a throttling GPU's would be."""

    floor_mhz = 1500.0

    def __init__(self):
        self.readings = 0

    def read_mhz(self) -> float:
        self.readings += 1
        return 900.0 if self.readings % 3 == 0 else 1980.0


def test_samples_below_the_clock_floor_are_dropped_and_counted():
    monitor = FakeMonitor()
    timing = measure(lambda: None, Sampler("cpu", monitor=monitor),
                     TimingPolicy(min_samples=20, target_ci=10.0))
    assert timing.samples == 20 and timing.throttled == monitor.readings // 3 > 0


def test_minimum_time_is_honoured():
    start = time.perf_counter()
    timing = measure(lambda: time.sleep(1e-4), Sampler("cpu"),
                     TimingPolicy(min_time_s=0.05, target_ci=1.0))
    assert time.perf_counter() - start >= 0.05 and timing.samples > 3


class FinishedEvent:
    """A CUDA event the GPU has already passed: the host queued too slowly."""

    def query(self) -> bool:
        return True


class PendingEvent:
    def query(self) -> bool:
        return False


def test_launch_hold_lengthens_until_the_host_queues_ahead_of_the_gpu():
    hold = LaunchHold(cycles=1000)
    assert hold.queued_ahead(PendingEvent()) and hold.cycles == 1000
    assert not hold.queued_ahead(FinishedEvent()) and hold.cycles == 2000
    while not hold.at_cap:
        hold.queued_ahead(FinishedEvent())
    capped = hold.cycles
    hold.queued_ahead(FinishedEvent())
    assert hold.cycles == capped


class ScriptedSampler:
    """Hands out the given samples in turn, then kept ones of 5 us."""

    device = "cpu"

    def __init__(self, script: list[Sample]):
        self.script = list(script)

    def sample(self, call) -> Sample:
        call()
        return self.script.pop(0) if self.script else Sample(5.0, 2.0)


def test_unheld_samples_are_dropped_and_launch_bound_ones_kept_and_counted():
    script = [Sample(500.0, 400.0, "unheld"), Sample(480.0, 400.0, "unheld"),
              Sample(300.0, 380.0, "launch_bound"), Sample(900.0, 1.0, "throttled")]
    timing = measure(lambda: None, ScriptedSampler(script),
                     TimingPolicy(min_samples=11, max_samples=11))
    assert timing.samples == 11 and timing.max_us == 300.0 and timing.median_us == 5.0
    assert timing.launch_bound == 1 and timing.throttled == 1
    assert timing.host_us == 2.0  # the median over the kept samples


def test_cpu_samples_have_no_separate_host_time():
    timing = measure(lambda: None, Sampler("cpu"), TimingPolicy(min_samples=5, target_ci=10.0))
    assert timing.host_us is None and timing.launch_bound == 0


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("mode", TIMING_MODES)
def test_cuda_samples_leave_out_the_hosts_time_to_launch(mode):
    x = torch.zeros(1024, device="cuda")

    def slow_to_launch():  # 0.5 ms of host work before a kernel of a few microseconds
        time.sleep(5e-4)
        x.add_(1)

    timing = measure(slow_to_launch, Sampler("cuda", mode),
                     TimingPolicy(warmup=1, min_samples=20, max_time_s=1.0, target_ci=1.0))
    assert timing.median_us < 100, timing
    assert timing.launch_bound == 0
    if mode != "graph":
        assert timing.host_us >= 500


def test_the_summary_names_rows_with_launch_bound_samples(capsys):
    from qbench.summary import print_summary

    base = {"status": "ok", "error": "", "max_err_lsb": 0, "exact_pct": 100.0, "speedup": 1.0,
            "samples": 40, "host_us": 12000.0}
    print_summary([base | {"case": "a", "backend": "slow-host", "launch_bound_samples": 7},
                   base | {"case": "a", "backend": "fine", "launch_bound_samples": 0}], "fine")
    out = capsys.readouterr().out
    assert "launch-bound a / slow-host: 7 of 40 samples may include the host's 12000 us" in out
    assert "a / fine" not in out


def test_the_flush_probe_tables_each_call_size_and_mode():
    from qbench.flush_probe import MODES, probe_table

    table = probe_table("cpu", (1, 2), TimingPolicy(min_samples=3, max_time_s=0.01)).splitlines()
    assert MODES == ("cold", "cold-read", "hot")
    assert table[0].startswith("| call | MiB | cold us (GB/s) | cold-read us (GB/s) | hot us")
    assert [row.split(" | ")[:2] for row in table[2:]] == [
        ["| read", "1"], ["| write", "1"], ["| copy", "1"],
        ["| read", "2"], ["| write", "2"], ["| copy", "2"]]
    assert all(row.count("|") == table[0].count("|") for row in table)
