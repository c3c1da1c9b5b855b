"""Timing one backend call: warm-up excluded, samples until the spread settles or time runs out.

CPU: `time.perf_counter_ns` around each call. CUDA: events around each call, with the L2 cache
flushed before it by default ("cold", as `triton.testing.do_bench` and NVBench do), or not ("hot"),
or "graph": a CUDA graph of several calls captured once and replayed, each sample the replay's time
divided by the calls in it, so that microsecond kernels are not measured as launch overhead
(as `triton.testing.do_bench_cudagraph` does). With a clock monitor (NVML), a sample taken while the
SM clock was below its floor is thrown away and counted as throttled.
Statistics: median, p10, p90 and the relative spread (p90 - p10) / median, the noise of single
samples. Sampling stops once the *median* is known well: the distribution-free 95 % confidence
interval of the median (order statistics) is narrower than `target_ci` of it. On a shared machine
single samples of a microsecond call scatter widely, but their median still settles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from qbench.clocks import ClockMonitor

TimingMode = Literal["cold", "hot", "graph"]
TIMING_MODES = ("cold", "hot", "graph")
_GRAPH_CALLS = 10
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

    @classmethod
    def of(cls, samples_us: list[float], target_ci: float, throttled: int = 0) -> Timing:
        ordered = np.sort(np.asarray(samples_us))
        p10, q1, median, q3, p90 = np.percentile(ordered, [10, 25, 50, 75, 90])
        ci = median_ci(ordered) / median if median > 0 else float("inf")
        spread = float((p90 - p10) / median) if median > 0 else float("inf")
        stddev = float(np.std(ordered, ddof=1)) if len(ordered) > 1 else 0.0
        return cls(float(median), float(p10), float(p90), float(ordered[0]), float(ordered[-1]),
                   float(np.mean(ordered)), stddev, float(q1), float(q3), len(ordered), spread,
                   float(ci), bool(ci <= target_ci), throttled)


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


def tuning_median_ms(run: Callable[[], Any], runs: int, device: torch.device) -> float:
    """The median milliseconds of `runs` back-to-back runs of `run` on PyTorch's current CUDA
    stream, timed with events after one untimed run: how a backend picks among its candidate plans
    or kernels on first use (a quick choice, not qbench's measurement)."""
    run()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(runs)]
    for start, end in events:
        start.record()
        run()
        end.record()
    torch.cuda.synchronize(device)
    return sorted(start.elapsed_time(end) for start, end in events)[runs // 2]


def wall_time_ms(call: Callable[[], Any], device: str) -> tuple[Any, float]:
    """(result, milliseconds) of one call including queued device work: first-call costs."""
    synchronize(device)
    start = time.perf_counter()
    result = call()
    synchronize(device)
    return result, (time.perf_counter() - start) * 1e3


class Sampler:
    """Takes one timed sample of a call on one device; on CUDA, in the policy's timing mode.

    `monitor` (optional) judges each sample's SM clock: `sample_us` returns None for a sample taken
    below the monitor's floor.
    """

    def __init__(self, device: str, mode: TimingMode = "cold", monitor: ClockMonitor | None = None):
        self.device, self.mode, self.monitor = device, mode, monitor
        self.flush_buffer = None
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        if device == "cuda":
            if mode == "cold":
                self.flush_buffer = torch.empty(_L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
            self.start_event = torch.cuda.Event(enable_timing=True)
            self.end_event = torch.cuda.Event(enable_timing=True)

    def sample_us(self, call: Callable[[], Any]) -> float | None:
        elapsed = self._time_us(call)
        if self.monitor is not None and self.monitor.read_mhz() < self.monitor.floor_mhz:
            return None
        return elapsed

    def _time_us(self, call: Callable[[], Any]) -> float:
        if self.device != "cuda":
            start = time.perf_counter_ns()
            call()
            return (time.perf_counter_ns() - start) / 1e3
        if self.flush_buffer is not None:
            self.flush_buffer.zero_()
        replay, calls = (self._graph(call).replay, _GRAPH_CALLS) if self.mode == "graph" \
            else (call, 1)
        self.start_event.record()
        replay()
        self.end_event.record()
        self.end_event.synchronize()
        return self.start_event.elapsed_time(self.end_event) * 1e3 / calls

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
    """Time `call` by `policy`'s stopping rule, leaving out (and counting) throttled samples."""
    for _ in range(policy.warmup):
        call()
    synchronize(sampler.device)
    samples: list[float] = []
    throttled = 0
    start = time.perf_counter()
    while True:
        sample = sampler.sample_us(call)
        if sample is None:
            throttled += 1
        else:
            samples.append(sample)
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
    return Timing.of(samples, policy.target_ci, throttled)
