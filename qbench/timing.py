"""Timing one backend call: warm-up excluded, samples until the spread settles or time runs out.

CPU: `time.perf_counter_ns` around each call. CUDA: events around each call, with the L2 cache
flushed before it by default ("cold", as `triton.testing.do_bench` and NVBench do) or not ("hot").
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

TimingMode = Literal["cold", "hot"]
_L2_FLUSH_BYTES = 256 * 2**20  # larger than any current GPU's L2 (H100: 50 MB, B200: 126 MB)


@dataclass(frozen=True)
class TimingPolicy:
    """When to stop sampling: at least `min_samples`, then as soon as the median's confidence
    interval is within `target_ci` of it, or when `max_time_s` of sampling has passed, or at
    `max_samples`. `warmup` calls come first (the runner's first, checked call warms up too).
    """

    warmup: int = 0
    min_samples: int = 3
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

    @classmethod
    def of(cls, samples_us: list[float], target_ci: float) -> Timing:
        ordered = np.sort(np.asarray(samples_us))
        p10, q1, median, q3, p90 = np.percentile(ordered, [10, 25, 50, 75, 90])
        ci = median_ci(ordered) / median if median > 0 else float("inf")
        spread = float((p90 - p10) / median) if median > 0 else float("inf")
        stddev = float(np.std(ordered, ddof=1)) if len(ordered) > 1 else 0.0
        return cls(float(median), float(p10), float(p90), float(ordered[0]), float(ordered[-1]),
                   float(np.mean(ordered)), stddev, float(q1), float(q3), len(ordered), spread,
                   float(ci), bool(ci <= target_ci))


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


def wall_time_ms(call: Callable[[], Any], device: str) -> tuple[Any, float]:
    """(result, milliseconds) of one call including queued device work: first-call costs."""
    synchronize(device)
    start = time.perf_counter()
    result = call()
    synchronize(device)
    return result, (time.perf_counter() - start) * 1e3


class Sampler:
    """Takes one timed sample of a call on one device."""

    def __init__(self, device: str, mode: TimingMode = "cold"):
        self.device = device
        self.flush_buffer = None
        if device == "cuda":
            if mode == "cold":
                self.flush_buffer = torch.empty(_L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
            self.start_event = torch.cuda.Event(enable_timing=True)
            self.end_event = torch.cuda.Event(enable_timing=True)

    def sample_us(self, call: Callable[[], Any]) -> float:
        if self.device != "cuda":
            start = time.perf_counter_ns()
            call()
            return (time.perf_counter_ns() - start) / 1e3
        if self.flush_buffer is not None:
            self.flush_buffer.zero_()
        self.start_event.record()
        call()
        self.end_event.record()
        self.end_event.synchronize()
        return self.start_event.elapsed_time(self.end_event) * 1e3


def measure(call: Callable[[], Any], sampler: Sampler, policy: TimingPolicy) -> Timing:
    """Time `call` by `policy`'s stopping rule."""
    for _ in range(policy.warmup):
        call()
    synchronize(sampler.device)
    samples: list[float] = []
    deadline = time.perf_counter() + policy.max_time_s
    while True:
        samples.append(sampler.sample_us(call))
        n = len(samples)
        if n >= policy.max_samples:
            break
        if n >= policy.min_samples:
            # re-checked every 10 samples: cheap, and soon enough
            if (n == policy.min_samples or n % 10 == 0) and \
                    Timing.of(samples, policy.target_ci).settled:
                break
            if time.perf_counter() >= deadline:
                break
    return Timing.of(samples, policy.target_ci)
