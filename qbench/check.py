"""Judging a backend's output against the reference: poison, LSB error, exact share, trust."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TOLERANCE_LSB = 1
# The reference output is not worth trusting when most of it sits at the clamp bounds or it
# takes almost no distinct values: any backend would "pass" (benchdnn's MISTRUSTED).
MAX_CLAMPED_SHARE = 0.75
MIN_DISTINCT_VALUES = 4


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing one output with the reference."""

    max_err_lsb: int
    exact_pct: float

    @property
    def within_tolerance(self) -> bool:
        return self.max_err_lsb <= TOLERANCE_LSB


def exact_share_text(percent: float) -> str:
    """An exact-match share (`exact_pct`) for people: "100" only when every output matched, else
    with the decimals it takes to read below 100 (99.99988, where two decimals would round it to
    100.00 beside a max error of 1 LSB); NaN (not checked) as "-"."""
    if math.isnan(percent):
        return "-"
    if percent >= 100:
        return "100"
    # the first digit where it departs from 100, and the next (1e-6: 100 - 99.999 is 0.00099...)
    decimals = min(8, max(2, 1 - math.floor(math.log10(100 - percent) + 1e-6)))
    text = f"{percent:.{decimals}f}"
    return text if float(text) < 100 else "99." + "9" * decimals


def poison(reference: torch.Tensor) -> torch.Tensor:
    """A buffer that differs from the reference by 128 LSB everywhere (top bit flipped).

    An output element the backend never writes keeps this value and so can never pass.
    """
    return reference ^ torch.tensor(-128, dtype=torch.int8).view(reference.dtype)


def compare(output: torch.Tensor, reference: torch.Tensor) -> Comparison:
    """Max absolute difference in LSB and the share of bit-identical elements (percent).

    `reference` may be given already widened to int16 (the runner does so once per case).
    """
    if output.shape != reference.shape:
        raise ValueError(f"output shape {tuple(output.shape)} != expected {tuple(reference.shape)}")
    diff = output.to(device=reference.device, dtype=torch.int16).sub_(reference).abs_()
    mismatched = int(torch.count_nonzero(diff))
    return Comparison(int(diff.max()), 100.0 * (1 - mismatched / diff.numel()))


def worst_of(*comparisons: Comparison) -> Comparison:
    """The largest error and the smallest exact share of several checked runs."""
    return Comparison(max(c.max_err_lsb for c in comparisons),
                      min(c.exact_pct for c in comparisons))


def mistrust_reason(reference: torch.Tensor, floor: int, ceiling: int) -> str | None:
    """Why a pass on this reference output would mean little, or None when it is informative.

    floor / ceiling: the lowest and highest attainable outputs (with ReLU the floor is the output
    zero point, so ReLU's zeros count as clamped too: a mostly negative layer tests little).
    """
    clamped = torch.count_nonzero(reference == floor) + torch.count_nonzero(reference == ceiling)
    clamped_share = float(clamped) / reference.numel()
    if clamped_share > MAX_CLAMPED_SHARE:
        return f"{clamped_share:.0%} of reference outputs are clamped at {floor} or {ceiling}"
    # viewed as uint8, int8 values map one to one, so the count of distinct values is the same
    distinct = int(torch.count_nonzero(torch.bincount(reference.flatten().view(torch.uint8))))
    if distinct < MIN_DISTINCT_VALUES:
        return f"the reference output takes only {distinct} distinct value(s)"
    return None
