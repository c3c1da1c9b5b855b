"""Timing one backend call: warm-up excluded, samples until the spread settles or time runs out.

CPU: `time.perf_counter_ns` around each call. CUDA: events around each call, with the L2 cache
flushed before it by default ("cold": a buffer larger than the L2 zeroed, as
`triton.testing.do_bench` and NVBench do; "cold-read": the same buffer read, see `l2_flush`), or
not ("hot"), or "graph": a CUDA graph of several calls captured once and replayed, each sample the
replay's time divided by the calls in it (calls back to back, as in a captured network; as
`triton.testing.do_bench_cudagraph` does). With a clock monitor (NVML), a sample taken while the
SM clock was below its floor is thrown away and counted as throttled.
On CUDA the host's launch path is kept out of every sample (`LaunchHold`): the GPU spins in a
sleep kernel while the host queues the flush, the events and the call, so that the events time the
GPU's work only, as NVBench's blocking kernel does; the host's time to queue the call is reported
on its own (`host_us`).
Statistics: median, p10, p90 and the relative spread (p90 - p10) / median, the noise of single
samples. Sampling stops once the *median* is known well: the distribution-free 95 % confidence
interval of the median (order statistics) is narrower than `target_ci` of it. On a shared machine
single samples of a microsecond call scatter widely, but their median still settles.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from qbench.clocks import ClockMonitor

TimingMode = Literal["cold", "cold-read", "hot", "graph"]
TIMING_MODES = ("cold", "cold-read", "hot", "graph")
_GRAPH_CALLS = 10
_HOLD_FIRST_CYCLES = 2**16  # about 35 us at a data-centre GPU's clock
_HOLD_TUNING_CYCLES = 2**21  # about 1.2 ms: tuning queues several runs and flushes at once
_HOLD_MAX_CYCLES = 2**24  # about 9 ms
_L2_FLUSH_BYTES = 256 * 2**20  # larger than any current GPU's L2 (H100: 50 MB, B200: 126 MB)


@dataclass(frozen=True)
class TimingPolicy:
    """When to stop sampling: at least `min_samples` and `min_time_s`, then as soon as the median's
    confidence interval is within `target_ci` of it, or when `max_time_s` of sampling has passed,
    or at `max_samples`. `warmup` calls come first (the runner's first, checked call warms up too).
    """

    warmup: int = 0
    min_samples: int = 3
    min_time_s: float = 0.0
    max_samples: int = 10_000
    max_time_s: float = 0.05
    target_ci: float = 0.02
    mode: TimingMode = "cold"


@dataclass(frozen=True)
class Timing:
    """Statistics of the samples, in microseconds; `settled` is False when time ran out first."""

    median_us: float
    p10_us: float
    p90_us: float
    min_us: float
    max_us: float
    mean_us: float
    stddev_us: float
    q1_us: float
    q3_us: float
    samples: int
    spread: float
    median_ci: float
    settled: bool
    throttled: int = 0
    launch_bound: int = 0  # samples kept although the GPU may have waited on the host in them
    host_us: float | None = None  # median host time to queue one call (CUDA, not in graphs)

    @classmethod
    def of(cls, samples_us: list[float], target_ci: float, throttled: int = 0,
           launch_bound: int = 0, host_us: list[float] | None = None) -> Timing:
        ordered = np.sort(np.asarray(samples_us))
        p10, q1, median, q3, p90 = np.percentile(ordered, [10, 25, 50, 75, 90])
        ci = median_ci(ordered) / median if median > 0 else float("inf")
        spread = float((p90 - p10) / median) if median > 0 else float("inf")
        stddev = float(np.std(ordered, ddof=1)) if len(ordered) > 1 else 0.0
        return cls(float(median), float(p10), float(p90), float(ordered[0]), float(ordered[-1]),
                   float(np.mean(ordered)), stddev, float(q1), float(q3), len(ordered), spread,
                   float(ci), bool(ci <= target_ci), throttled, launch_bound,
                   float(np.median(host_us)) if host_us else None)


def median_ci(ordered: np.ndarray) -> float:
    """Width of the distribution-free 95 % confidence interval of the median of sorted samples.

    The ranks n/2 -+ 1.96 sqrt(n)/2 bound it (binomial order statistics); infinite below 6 samples,
    where no such interval exists.
    """
    n = len(ordered)
    half = 1.96 * np.sqrt(n) / 2
    lo, hi = int(np.floor(n / 2 - half)), int(np.ceil(n / 2 + half))
    if lo < 0 or hi > n - 1:
        return float("inf")
    return float(ordered[hi] - ordered[lo])


def synchronize(device: str) -> None:
    """Wait for queued work on `device` (a no-op on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def current_stream_pointer(device_index: int) -> int:
    """The raw cudaStream_t of PyTorch's current stream on a device (0 for the legacy default
    stream), for libraries that launch on a stream of their own choosing (cuDNN, CuPy). The
    private call is what Triton's launcher uses; `torch.cuda.current_stream().cuda_stream` is
    the public route, about 1 microsecond slower per timed call, taken where the private one is
    missing."""
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return raw(device_index)
    return torch.cuda.current_stream(device_index).cuda_stream


class LaunchHold:
    """Holds the current CUDA stream in a spin kernel (`torch.cuda._sleep`) while the host queues
    the work to be timed, so that events around that work time the GPU, not the host's launch path
    (NVBench's blocking kernel). Once the work is queued, `queued_ahead(marker)`, where `marker` is
    an event recorded after the hold, says whether the GPU had not reached the marker yet: then no
    timed kernel waited on the host. Where it had, the hold doubles for the next time (to a cap)."""

    def __init__(self, cycles: int = _HOLD_FIRST_CYCLES):
        self.cycles = cycles

    @property
    def at_cap(self) -> bool:
        return self.cycles >= _HOLD_MAX_CYCLES

    def hold(self) -> None:
        torch.cuda._sleep(self.cycles)

    def queued_ahead(self, marker: torch.cuda.Event) -> bool:
        if not marker.query():
            return True
        self.cycles = min(2 * self.cycles, _HOLD_MAX_CYCLES)
        return False


def tuning_times_ms(run: Callable[[], Any], runs: int, device: torch.device) -> list[float]:
    """The sorted milliseconds of `runs` runs of `run` on PyTorch's current CUDA stream, each
    timed with events with the L2 cache flushed before it, after one untimed run (which compiles
    or warms up), queued behind a `LaunchHold` so that they time the GPU's work and not the
    host's: how a backend picks among its candidate plans or kernels on first use (a quick
    choice, not qbench's measurement). Cold, as the runner times by default and
    `triton.testing.do_bench` tunes: on an H200, ResNet-50's 3x3 of 512 at 7^2 took 17.5 us warm
    and 21.5 cold in the tiles that won warm (results/h200-2026-11-27-6b3a359), which cold
    timing would not have picked.
    """
    run()
    flush = l2_flush(device)
    hold = LaunchHold(_HOLD_TUNING_CYCLES)
    while True:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(runs)]
        hold.hold()
        for start, end in events:
            flush()
            start.record()
            run()
            end.record()
        ahead = hold.queued_ahead(events[0][0])
        torch.cuda.synchronize(device)
        if ahead or hold.at_cap:
            return sorted(start.elapsed_time(end) for start, end in events)


@functools.cache
def l2_flush_buffer(device: torch.device | str) -> torch.Tensor:
    """A buffer larger than any current GPU's L2 cache on `device`, zeroed once: writing or reading
    all of it evicts what a timed call would otherwise find in the cache. One per device, kept for
    the process."""
    return torch.zeros(_L2_FLUSH_BYTES, dtype=torch.int8, device=device)


def l2_flush(device: torch.device | str, by_reading: bool = False) -> Callable[[], Any]:
    """A call that queues, on the current stream, an eviction of the L2 cache of `device`.

    By default it zeroes `l2_flush_buffer` (as `triton.testing.do_bench` and NVBench flush), which
    leaves the L2 full of dirty lines: each line the call timed next brings in, read or written,
    may first cost a write-back of one of those, bytes not its own. `by_reading` reads the buffer
    instead (a max over it), which leaves clean lines and writes back, during the flush, what the
    previous call left dirty: the call timed next reads its inputs from memory and writes back
    only what of its own output it evicts. Either way, what of its output fits in the L2 may still
    be there when it ends.
    """
    buffer = l2_flush_buffer(device)
    if not by_reading:
        return buffer.zero_
    words = buffer.view(torch.int64)
    return words.max


def tuning_median_ms(run: Callable[[], Any], runs: int, device: torch.device) -> float:
    """The median of `tuning_times_ms`."""
    return tuning_times_ms(run, runs, device)[runs // 2]


def wall_time_ms(call: Callable[[], Any], device: str) -> tuple[Any, float]:
    """(result, milliseconds) of one call including queued device work: first-call costs."""
    synchronize(device)
    start = time.perf_counter()
    result = call()
    synchronize(device)
    return result, (time.perf_counter() - start) * 1e3


class Sample(NamedTuple):
    """One timed call: microseconds, the host's microseconds to queue it (CUDA, outside graphs),
    and what becomes of it: `kept`; `throttled` (dropped: the SM clock was below its floor);
    `unheld` (dropped: the GPU may have waited on the host, the hold is now longer);
    `launch_bound` (kept and counted: the same, with the hold at its cap)."""

    us: float
    host_us: float | None = None
    fate: Literal["kept", "throttled", "unheld", "launch_bound"] = "kept"


class Sampler:
    """Takes one timed sample of a call on one device; on CUDA, in the policy's timing mode,
    behind a `LaunchHold`.

    `monitor` (optional) judges each sample's SM clock: a sample taken below the monitor's floor
    is `throttled`.
    """

    def __init__(self, device: str, mode: TimingMode = "cold", monitor: ClockMonitor | None = None):
        self.device, self.mode, self.monitor = device, mode, monitor
        self.flush: Callable[[], Any] | None = None
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        if device == "cuda":
            if mode in ("cold", "cold-read"):
                self.flush = l2_flush(torch.device("cuda", torch.cuda.current_device()),
                                      by_reading=mode == "cold-read")
            self.start_event = torch.cuda.Event(enable_timing=True)
            self.end_event = torch.cuda.Event(enable_timing=True)
            self.hold = LaunchHold()

    def sample(self, call: Callable[[], Any]) -> Sample:
        sample = self._time(call)
        if self.monitor is not None and self.monitor.read_mhz() < self.monitor.floor_mhz:
            return Sample(sample.us, sample.host_us, "throttled")
        return sample

    def _time(self, call: Callable[[], Any]) -> Sample:
        if self.device != "cuda":
            start = time.perf_counter_ns()
            call()
            return Sample((time.perf_counter_ns() - start) / 1e3)
        replay, calls = (self._graph(call).replay, _GRAPH_CALLS) if self.mode == "graph" \
            else (call, 1)
        self.hold.hold()
        if self.flush is not None:
            self.flush()
        self.start_event.record()
        queue_start = time.perf_counter_ns()
        replay()
        host_us = (time.perf_counter_ns() - queue_start) / 1e3
        self.end_event.record()
        ahead = self.hold.queued_ahead(self.start_event)
        self.end_event.synchronize()
        us = self.start_event.elapsed_time(self.end_event) * 1e3 / calls
        host = None if self.mode == "graph" else host_us
        if ahead:
            return Sample(us, host)
        return Sample(us, host, "launch_bound" if self.hold.at_cap else "unheld")

    def _graph(self, call: Callable[[], Any]) -> torch.cuda.CUDAGraph:
        """The captured graph of `_GRAPH_CALLS` calls, made on the first sample of `call`."""
        key = id(call)
        if key not in self.graphs:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                call()  # warm-up on a side stream, as capture requires
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(_GRAPH_CALLS):
                    call()
            self.graphs = {key: graph}  # one call at a time: drop the last one's graph
        return self.graphs[key]


def measure(call: Callable[[], Any], sampler: Sampler, policy: TimingPolicy) -> Timing:
    """Time `call` by `policy`'s stopping rule, leaving out (and counting) throttled samples and
    counting the launch-bound ones (see `Sample`)."""
    for _ in range(policy.warmup):
        call()
    synchronize(sampler.device)
    samples: list[float] = []
    host_us: list[float] = []
    throttled = launch_bound = 0
    start = time.perf_counter()
    while True:
        sample = sampler.sample(call)
        if sample.fate == "throttled":
            throttled += 1
        elif sample.fate != "unheld":
            samples.append(sample.us)
            launch_bound += sample.fate == "launch_bound"
            if sample.host_us is not None:
                host_us.append(sample.host_us)
        n, elapsed = len(samples), time.perf_counter() - start
        if n >= policy.max_samples:
            break
        if n >= policy.min_samples and elapsed >= policy.min_time_s:
            # re-checked every 10 samples: cheap, and soon enough
            if (n == policy.min_samples or n % 10 == 0) and \
                    Timing.of(samples, policy.target_ci).settled:
                break
            if elapsed >= policy.max_time_s:
                break
        if throttled and elapsed >= policy.min_time_s + 10 * policy.max_time_s:
            break  # a throttled device may not recover: keep what was gathered
    if not samples:
        raise RuntimeError(f"all {throttled} samples were taken below the SM clock floor")
    return Timing.of(samples, policy.target_ci, throttled, launch_bound, host_us)
