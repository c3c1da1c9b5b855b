"""The exact integer reference (shared/DESIGN.md, "Numerics contract").

acc[n,k,oh,ow] = sum (x - zp_x) * (w - zp_w[k]) over the window, exact; padded positions hold
x = zp_x and so contribute 0. The sum is computed as a float64 convolution, which is exact because
every term and every partial sum is an integer of magnitude below 2^53 (|term| <= 255 * 255 and at
most 2^27 terms would be needed to leave that range). Requantization then follows fbgemm's order in
float32:
    aw = f32(s_x * s_w[k]);  M = f32(aw / s_y);  v = f32(f32(acc + f32(b[k] / aw)) * M)
    q  = clamp(round_half_even(v) + zp_y, lo, hi),  lo = zp_y when ReLU is fused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qbench.problem import QDtype, dtype_range
from qbench.quantized import RAW_DTYPES, ConvParams, QuantizedActivation, QuantizedWeight

_EXACT_TERMS_F64 = 2**53 // (255 * 255)


def reference_accumulator(x: QuantizedActivation, w: QuantizedWeight,
                          params: ConvParams) -> torch.Tensor:
    """The exact int64 accumulator (N, K, OH, OW) of the zero-point-corrected integers."""
    terms = w.data.shape[1] * w.data.shape[2] * w.data.shape[3]
    if terms > _EXACT_TERMS_F64:
        raise ValueError(f"a reduction of {terms} terms may exceed float64's exact integer range")
    xs = x.data.to(torch.float64) - x.zero_point
    ws = w.data.to(torch.float64) - w.zero_points.to(w.data.device).view(-1, 1, 1, 1)
    acc = F.conv2d(xs, ws, None, params.stride, params.padding, params.dilation, params.groups)
    return acc.round_().to(torch.int64)


def window_weight_sums(weight: torch.Tensor, params: ConvParams, height: int,
                       width: int) -> torch.Tensor:
    """sum of `weight` over the taps of each window that fall inside the height x width image:
    (K, OH, OW) int64 on the CPU, exact. What a kernel that reads padding as 0 instead of the
    zero point must subtract, times the zero point. `weight`: (K, C/groups, R, S), integers."""
    w = weight.to(device="cpu", dtype=torch.float64)
    ones = torch.ones((1, w.shape[1] * params.groups, height, width), dtype=torch.float64)
    sums = F.conv2d(ones, w, None, params.stride, params.padding, params.dilation, params.groups)
    return sums[0].round_().to(torch.int64)


def effective_scales(x_scale: float, w_scales: torch.Tensor) -> torch.Tensor:
    """aw[k] = f32(f32(s_x) * f32(s_w[k])), the scale of one accumulator unit, per channel."""
    return torch.tensor(x_scale, dtype=torch.float32) * w_scales.to(torch.float32)


def requantization_terms(x_scale: float, w_scales: torch.Tensor, bias: torch.Tensor | None,
                         out_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(f32(b[k] / aw[k]), M[k] = f32(aw[k] / s_y)), float32 on the CPU, as `requantize` uses
    them: what an epilogue adds to f32(acc) and then multiplies by (zeros when there is no bias)."""
    aw = effective_scales(x_scale, w_scales.cpu())
    multiplier = aw / torch.tensor(out_scale, dtype=torch.float32)
    if bias is None:
        return torch.zeros_like(aw), multiplier
    return bias.detach().to(device="cpu", dtype=torch.float32) / aw, multiplier


def requantize(acc: torch.Tensor, x_scale: float, w_scales: torch.Tensor,
               bias: torch.Tensor | None, out_scale: float, out_zero_point: int,
               out_dtype: QDtype, relu: bool) -> torch.Tensor:
    """int64 accumulators (N, K, OH, OW) -> output integers, in fbgemm's float32 order."""
    bias_terms, multiplier = requantization_terms(x_scale, w_scales, bias, out_scale)
    v = acc.to(torch.float32)
    if bias is not None:
        v = v + bias_terms.to(acc.device).view(1, -1, 1, 1)
    v = v * multiplier.to(acc.device).view(1, -1, 1, 1)
    lo, hi = dtype_range(out_dtype)
    if relu:
        lo = out_zero_point
    q = torch.round(v) + out_zero_point  # round half to even; exact in float32 below 2^24
    return q.clamp_(lo, hi).to(RAW_DTYPES[out_dtype])


def reference_conv2d(x: QuantizedActivation, w: QuantizedWeight, bias: torch.Tensor | None,
                     params: ConvParams, out_scale: float, out_zero_point: int,
                     out_dtype: QDtype, relu: bool = False) -> torch.Tensor:
    """The reference output integers (NCHW, uint8 for quint8 or int8 for qint8)."""
    acc = reference_accumulator(x, w, params)
    return requantize(acc, x.scale, w.scales, bias, out_scale, out_zero_point, out_dtype, relu)
