"""A layer's floor: the least time the card it ran on could take for it, by the card's own rates.

A conv must do its multiply-adds and move its bytes (input, weights and output, once each:
`ConvProblem.ops` and `bytes_moved`). Its floor is the longer of the two at the rates this card
reaches, measured once per run on the card itself (`measure_rates`): a large int8 GEMM through
`torch._int_mm` (cuBLASLt) and a large device-to-device copy. That is shared/DESIGN.md's "physical
floor" (ops at ~1,000 TOPS or bytes at ~3 TB/s on an H100), measured instead of assumed, so that
it holds for whichever card ran. A kernel may beat these rates a little (a tuned Triton GEMM beat
cuBLASLt by 8 % on an H100), so a time just under its floor is possible: the ratio says how much
room is left, it is no law of physics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from qbench.environment import device_name
from qbench.timing import tuning_median_ms

GEMM_SIZE = 8192  # M = N = K: large enough for cuBLASLt to reach its peak (~1 ms on an H100)
COPY_BYTES = 2**30  # read once and written once: 2 GiB moved, far beyond any L2
RUNS = 10


@dataclass(frozen=True)
class CardRates:
    """What `card` (as a row's device column names it) reaches: int8 tensor-core TOPS and copy
    bandwidth in GB/s (bytes read plus bytes written, per second), with how they were measured."""

    card: str
    int8_tops: float
    copy_gbps: float
    how: str

    def floor_us(self, ops: int, bytes_moved: int) -> float:
        """The longer of `ops` at `int8_tops` and `bytes_moved` at `copy_gbps`, in µs."""
        return max(ops / (self.int8_tops * 1e12), bytes_moved / (self.copy_gbps * 1e9)) * 1e6


def _gemm_ms(device: torch.device) -> float:
    """The median ms of an int8 GEMM of GEMM_SIZE^3 on `device` through `torch._int_mm`."""
    a = torch.randint(-128, 128, (GEMM_SIZE, GEMM_SIZE), dtype=torch.int8, device=device)
    b = torch.randint(-128, 128, (GEMM_SIZE, GEMM_SIZE), dtype=torch.int8, device=device)
    product = torch.empty(GEMM_SIZE, GEMM_SIZE, dtype=torch.int32, device=device)
    # b transposed: column-major, the layout of cuBLASLt's int8 kernels
    return tuning_median_ms(lambda: torch._int_mm(a, b.t(), out=product), RUNS, device)


def _copy_ms(device: torch.device) -> float:
    """The median ms of a device-to-device copy of COPY_BYTES on `device`."""
    source = torch.empty(COPY_BYTES, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    return tuning_median_ms(lambda: target.copy_(source), RUNS, device)


def measure_rates(device: torch.device) -> CardRates:
    """The rates of the CUDA `device`: medians of `RUNS` runs each, timed as backends time their
    tuning candidates (`qbench.timing.tuning_median_ms`), after an untimed one. Each run takes
    about a millisecond at an H100's rates; the tensors take 2.4 GiB of the card's memory, given
    back at the end."""
    with torch.cuda.device(device):
        gemm_ms = _gemm_ms(device)
        copy_ms = _copy_ms(device)
        torch.cuda.empty_cache()
    return CardRates(
        card=device_name("cuda"),
        int8_tops=2 * GEMM_SIZE**3 / (gemm_ms * 1e-3) / 1e12,
        copy_gbps=2 * COPY_BYTES / (copy_ms * 1e-3) / 1e9,
        how=f"median of {RUNS}: torch._int_mm int8 {GEMM_SIZE}^3 (cuBLASLt); a {COPY_BYTES >> 30} "
            f"GiB device copy (read + written)")


def rates_for_run(device: str) -> tuple[CardRates | None, dict[str, Any] | None]:
    """(rates, what results.json records of them) for a run on `device`: the current CUDA card's
    `measure_rates`; none for a CPU run (whose backends' rates no GEMM of PyTorch's stands for).
    A measurement that fails is recorded with its error and gives no floors, not a failed run."""
    if device != "cuda" or not torch.cuda.is_available():
        return None, None
    try:
        rates = measure_rates(torch.device("cuda", torch.cuda.current_device()))
    except Exception as exc:  # the floors are a reading aid: the run goes on without them
        return None, {"error": f"{type(exc).__name__}: {exc}"}
    return rates, asdict(rates)
