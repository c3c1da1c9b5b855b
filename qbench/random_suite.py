"""A suite of random problems (`qbench random-suite`): correctness over more of the problem space
than hand-written suites reach. Every field of the problem model but the batch (the suite's), the
scales (their defaults) and `reduce_range` (false unless set) is drawn (`DRAWN_FIELDS`): dense,
grouped and depthwise convs (with channel multipliers), kernel sizes, strides, paddings and
dilations, each pair square or not, both activation dtypes with their zero points, both weight
schemes with or without a zero point, bias, output dtype and ReLU. Fields may be set instead
(`fixed`, `SETTABLE_FIELDS`), the rest drawn around them: channel counts as multiples of a set
`groups`, zero points within a set dtype's range, or its 7 bits' with `reduce_range` set (the bounds
bound what is drawn; a set field may go past them). The output's scale and zero point stay `auto`,
so that outputs cover their range. Problems too large for int32 sums or indices at the suite's
largest batch are drawn again, and so are problems where most outputs read nothing but padding (all
equal to the output's zero point: a case that tests little, and that the check mistrusts). The same
seed, bounds and set fields write the same suite.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qbench.errors import InvalidProblem, QbenchError
from qbench.problem import (INT_MINIMUMS, QDTYPES, QSCHEMES, REDUCED_QDTYPES, WEIGHT_RANGE,
                            ConvProblem, int32_limits, require_at_least_minimum)
from qbench.suite_writer import Layer

DRAWN_FIELDS = ("in_channels", "out_channels", "groups", "height", "width", "kernel_size",
                "stride", "padding", "dilation", "in_dtype", "in_zero_point", "weight_qscheme",
                "weight_zero_point", "out_dtype", "bias", "relu")
SETTABLE_FIELDS = (*DRAWN_FIELDS, "reduce_range")  # reduce_range: 7 bits' activations if true
_KERNELS = (1, 1, 2, 3, 3, 3, 5, 7)
_STRIDES = (1, 1, 1, 2, 2, 3)
_DILATIONS = (1, 1, 1, 2, 3)
_GROUPS = (2, 3, 4, 8, 32)
_MULTIPLIERS = (1, 1, 1, 2)  # a depthwise conv's output channels per input channel
_TRIES = 1000  # draws of one problem before its set fields are called impossible
MAX_PADDING_ONLY_SHARE = 0.5  # of a drawn problem's outputs whose window reads only padding


@dataclass(frozen=True)
class Bounds:
    """The largest channel count (input or output) and image side a drawn problem may have."""

    max_channels: int = 64
    max_size: int = 32


class NoProblemDrawn(QbenchError):
    """Set fields and bounds that no draw made a valid problem of."""


def random_layers(count: int, seed: int, bounds: Bounds, fixed: Mapping[str, Any] | None = None,
                  batch: int = 1) -> list[Layer]:
    """`count` valid problems drawn from `seed`, as cases `random-1`, `random-2`, ..., with the
    SETTABLE_FIELDS in `fixed` (of the problem model's types, as `qbench.suite.coerce_field` makes
    them) set instead of drawn, each within int32 kernels' limits at `batch`. Raises
    InvalidProblem where a set integer field is below its least value, NoProblemDrawn where no
    draw around `fixed` makes a problem."""
    for name, value in (fixed or {}).items():
        if name in INT_MINIMUMS:  # before drawing around it: groups = 0 would divide by zero
            require_at_least_minimum(name, value)
    rng = random.Random(seed)
    width = len(str(count))
    return [Layer(f"random-{index:0{width}d}", _draw(rng, bounds, dict(fixed or {}), batch), ())
            for index in range(1, count + 1)]


def _draw(rng: random.Random, bounds: Bounds, fixed: dict[str, Any], batch: int) -> dict[str, Any]:
    """One problem's suite fields, drawn until they make a valid problem that int32 kernels can do
    at `batch` and whose outputs mostly read the image (a draw whose image is too small for its
    kernel, or lies mostly in its padding, is drawn again)."""
    for _ in range(_TRIES):
        fields = _shape(rng, bounds, fixed) | _quantization(rng, fixed)
        try:
            problem = ConvProblem(batch=batch, **fields).validate()
        except InvalidProblem as exc:
            reason = str(exc)
        else:
            reason = int32_limits(problem) or _mostly_padding(problem)
        if reason is None:
            return fields
    raise NoProblemDrawn(f"no valid problem within the bounds and set fields in {_TRIES} draws; "
                         f"the last: {reason}")


def _shape(rng: random.Random, bounds: Bounds, fixed: dict[str, Any]) -> dict[str, Any]:
    most = bounds.max_channels
    kind = rng.choice(("dense", "dense", "grouped", "depthwise"))
    if "groups" in fixed:
        groups = fixed["groups"]
    elif kind == "depthwise":
        groups = fixed.get("in_channels", rng.randint(1, most))
    else:
        fitting = [g for g in _GROUPS if g <= most]
        groups = rng.choice(fitting) if kind == "grouped" and fitting else 1
    per_group = max(1, most // groups)
    in_channels = groups * rng.randint(1, per_group)
    out_channels = groups * rng.randint(1, per_group)
    if kind == "depthwise" and "groups" not in fixed:
        in_channels = groups
        out_channels = groups * rng.choice([m for m in _MULTIPLIERS if groups * m <= most] or [1])
    kernel = fixed.get("kernel_size") or _pair(rng, _KERNELS)
    dilation = fixed.get("dilation") or _pair(rng, _DILATIONS)
    drawn = {"in_channels": in_channels, "out_channels": out_channels, "groups": groups,
             "height": rng.randint(1, bounds.max_size), "width": rng.randint(1, bounds.max_size),
             "kernel_size": kernel, "stride": _pair(rng, _STRIDES), "dilation": dilation,
             "padding": tuple(rng.randint(0, (k - 1) * d // 2 + 1)
                              for k, d in zip(kernel, dilation))}
    return drawn | {name: value for name, value in fixed.items() if name in drawn}


def _quantization(rng: random.Random, fixed: dict[str, Any]) -> dict[str, Any]:
    in_dtype = fixed.get("in_dtype") or rng.choice(tuple(QDTYPES))
    activations = (REDUCED_QDTYPES if fixed.get("reduce_range") else QDTYPES)[in_dtype]
    drawn = {"in_dtype": in_dtype, "in_zero_point": rng.randint(*activations),
             "weight_qscheme": rng.choice(QSCHEMES), "out_dtype": rng.choice(tuple(QDTYPES)),
             "bias": rng.random() < 0.75, "relu": rng.random() < 0.5,
             "weight_zero_point": rng.randint(*WEIGHT_RANGE) if rng.random() < 0.25 else 0}
    fields = drawn | {name: value for name, value in fixed.items()
                      if name in drawn or name == "reduce_range"}
    # On data over the whole range, the sums' mean is the terms times the mean of (x - zx)
    # times the mean of (w - zw), which dwarfs their spread: where it is negative, ReLU clamps
    # almost every output to the zero point, which the check mistrusts. With ReLU, a drawn zw
    # other than 0 takes its mirror image about the weights' mean (-0.5) where that makes the
    # mean positive (with zw = 0 the weights' mean is too small to matter).
    if fields["relu"] and fields["weight_zero_point"] and "weight_zero_point" not in fixed:
        mean_x = sum(activations) / 2 - fields["in_zero_point"]
        if mean_x * (-0.5 - fields["weight_zero_point"]) < 0:
            fields["weight_zero_point"] = -1 - fields["weight_zero_point"]
    return fields


def _mostly_padding(problem: ConvProblem) -> str | None:
    """Why `problem` tests little, where more than MAX_PADDING_ONLY_SHARE of its outputs have a
    window that reads no input pixel (a row or a column of taps all in the padding); else None."""
    reading = 1.0  # the share of outputs whose window reads the image: rows' share x columns'
    for size, out, k, s, p, d in zip((problem.height, problem.width), problem.output_size,
                                     problem.kernel_size, problem.stride, problem.padding,
                                     problem.dilation):
        reads = sum(any(0 <= o * s - p + r * d < size for r in range(k)) for o in range(out))
        reading *= reads / out
    if 1 - reading > MAX_PADDING_ONLY_SHARE:
        return f"{1 - reading:.0%} of the outputs read only padding"
    return None


def _pair(rng: random.Random, values: tuple[int, ...]) -> tuple[int, int]:
    """Two values from `values`: the same one twice in three draws of four."""
    first = rng.choice(values)
    return (first, first) if rng.random() < 0.75 else (first, rng.choice(values))
