"""Seeded test data for a problem, and the "auto" output quantization.

Data covers the whole integer range of its dtype (narrow ranges hide int16-saturation bugs, see
shared/DESIGN.md), or with `reduce_range` the 7 bits' range that PyTorch's fbgemm and x86
qconfigs give activations, and is never all zeros; weight scales and bias are drawn so that bias
matters.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch

from qbench.problem import ConvProblem, dtype_range
from qbench.quantized import RAW_DTYPES, ConvParams, QuantizedActivation, QuantizedWeight
from qbench.reference import effective_scales

# Percentiles of the real-valued output that the auto scale maps onto the output range: a few
# outliers saturate, as with a calibrated model, while the bulk spreads over the whole range.
_AUTO_LOW, _AUTO_HIGH = 0.001, 0.999
_AUTO_SAMPLE = 200_000


@dataclass(frozen=True)
class ConvInputs:
    """Everything a backend is given for one problem: activation, weight, bias and geometry."""

    input: QuantizedActivation
    weight: QuantizedWeight
    bias: torch.Tensor | None
    params: ConvParams


def case_seed(seed: int, case_name: str) -> int:
    """A per-case seed: stable when other cases are added or removed from a suite."""
    return (seed * 1_000_003 + zlib.crc32(case_name.encode())) % 2**63


def make_inputs(problem: ConvProblem, seed: int) -> ConvInputs:
    """Random integers over the activations' range (`ConvProblem.activation_range`) and the
    weights' whole one, random positive weight scales and a bias of realistic size."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = problem.activation_range
    shape = (problem.batch, problem.in_channels, problem.height, problem.width)
    x = torch.randint(lo, hi + 1, shape, generator=gen, dtype=torch.int16).to(
        RAW_DTYPES[problem.in_dtype])
    k, r, s = problem.out_channels, *problem.kernel_size
    w = torch.randint(-128, 128, (k, problem.in_channels // problem.groups, r, s), generator=gen,
                      dtype=torch.int16).to(torch.int8)
    if problem.weight_qscheme == "per_channel":
        scales = 0.001 + 0.009 * torch.rand(k, generator=gen, dtype=torch.float64)
    else:
        scales = torch.full((k,), 0.001 + 0.009 * torch.rand(1, generator=gen).item(),
                            dtype=torch.float64)
    zero_points = torch.full((k,), problem.weight_zero_point, dtype=torch.int64)
    weight = QuantizedWeight(w, scales, zero_points, problem.weight_qscheme)
    bias = None
    if problem.bias:
        # About one accumulator standard deviation (uniform terms: sd ~74 * 74 each over the
        # full ranges, half that over 7 bits' activations).
        activation_sd = 74.0 * (hi - lo + 1) / 256
        acc_sd = activation_sd * 74.0 * math.sqrt(problem.reduction_size)
        aw = effective_scales(problem.in_scale, scales)
        bias = torch.randn(k, generator=gen, dtype=torch.float32) * acc_sd * aw
    params = ConvParams(problem.stride, problem.padding, problem.dilation, problem.groups)
    activation = QuantizedActivation(x, problem.in_scale, problem.in_zero_point, problem.in_dtype)
    return ConvInputs(activation, weight, bias, params)


def auto_output_quantization(acc: torch.Tensor, inputs: ConvInputs,
                             problem: ConvProblem) -> tuple[float, int]:
    """(scale, zero point) so that the reference output spreads over the output dtype's range.

    Zero stays exactly representable, as PyTorch's observers keep it; with ReLU only the positive
    side is mapped and the zero point is the dtype's minimum.
    """
    flat = acc.flatten()
    if flat.numel() > _AUTO_SAMPLE:  # quantiles of a sample are as good and much cheaper
        gen = torch.Generator().manual_seed(0)
        flat_index = torch.randint(flat.numel(), (_AUTO_SAMPLE,), generator=gen)
    else:
        flat_index = torch.arange(flat.numel())
    channel = flat_index // (acc.shape[2] * acc.shape[3]) % acc.shape[1]
    aw = effective_scales(inputs.input.scale, inputs.weight.scales).to(torch.float64)
    real = flat[flat_index].to(torch.float64) * aw[channel]
    if inputs.bias is not None:
        real = real + inputs.bias.to(torch.float64)[channel]
    low, high = torch.quantile(real, torch.tensor([_AUTO_LOW, _AUTO_HIGH], dtype=real.dtype))
    low = 0.0 if problem.relu else min(float(low), 0.0)
    high = max(float(high), 0.0)
    qlo, qhi = dtype_range(problem.out_dtype)
    scale = (high - low) / (qhi - qlo)
    if scale <= 0 or not math.isfinite(scale):
        scale = 1.0  # an all-zero output: nothing to spread; the check will call it mistrusted
    zero_point = int(min(max(qlo - round(low / scale), qlo), qhi))
    return scale, zero_point
