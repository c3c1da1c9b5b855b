"""Mirrors of `torch.ops.quantized.conv2d_prepack` / `conv2d` / `conv2d_relu`, with a backend
choice.

    packed = qbench.ops.conv2d_prepack(w, b, [1, 1], [1, 1], [1, 1], 1, backend="torch-x86")
    y = qbench.ops.conv2d(x, packed, scale=0.1, zero_point=0)        # y has x's dtype, as in torch

Tensors are PyTorch's quantized tensors: activations quint8 or qint8 (per-tensor), weights qint8
per-tensor or per-channel along axis 0, bias float or None. A backend that cannot do a problem
raises `qbench.UnsupportedError` with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from qbench.errors import UnsupportedError
from qbench.problem import ConvProblem
from qbench.quantized import (QDTYPE_NAMES, ConvParams, QuantizedActivation, QuantizedWeight,
                              output_integers)
from qbench.registry import Backend, get_backend

DEFAULT_BACKEND = "reference"


@dataclass(frozen=True)
class PackedConv:
    """Prepacked weights for one backend (what `torch.ops.quantized.conv2d_prepack` returns)."""

    backend: Backend
    weight: QuantizedWeight
    bias: torch.Tensor | None
    params: ConvParams
    packed: Any

    def unpack(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) as torch tensors, like PyTorch's `packed.unpack()`."""
        return self.weight.to_torch(), self.bias


def conv2d_prepack(weight: torch.Tensor, bias: torch.Tensor | None,
                   stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                   dilation: int | Sequence[int] = 1, groups: int = 1, *,
                   backend: str = DEFAULT_BACKEND) -> PackedConv:
    """Prepare qint8 weights (K, C/groups, R, S) and float bias (K,) for `backend`."""
    chosen = get_backend(backend)
    if weight.dim() != 4:
        raise ValueError(f"weight must be 4-D (K, C/groups, R, S), got shape {tuple(weight.shape)}")
    params = ConvParams.of(stride, padding, dilation, groups)
    device = chosen.info.device
    w = QuantizedWeight.from_torch(weight).to(device)
    if bias is not None:
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        bias = bias.detach().to(device=device, dtype=torch.float32)
    return PackedConv(chosen, w, bias, params, chosen.prepack(w, bias, params))


def conv2d(input: torch.Tensor, packed: PackedConv, scale: float, zero_point: int) -> torch.Tensor:
    """The quantized conv; the output has the input's dtype, `scale` and `zero_point`."""
    return apply(input, packed, scale, zero_point, QDTYPE_NAMES.get(input.dtype, ""), relu=False)


def conv2d_relu(input: torch.Tensor, packed: PackedConv, scale: float,
                zero_point: int) -> torch.Tensor:
    """As `conv2d` with ReLU fused."""
    return apply(input, packed, scale, zero_point, QDTYPE_NAMES.get(input.dtype, ""), relu=True)


def apply(input: torch.Tensor, packed: PackedConv, scale: float, zero_point: int, dtype: str,
          relu: bool) -> torch.Tensor:
    """Run `packed` on a quantized NCHW `input`, output quantized as `dtype` ("quint8"/"qint8")."""
    if not input.is_quantized or input.dim() != 4:
        raise ValueError("input must be a 4-D (N, C, H, W) quantized tensor (torch.quint8 or "
                         f"torch.qint8), got {input.dtype} of shape {tuple(input.shape)}")
    backend = packed.backend
    x = QuantizedActivation.from_torch(input).to(backend.info.device, backend.info.channels_last)
    problem = _problem(x, packed, float(scale), int(zero_point), dtype, relu)
    verdict = backend.supports(problem)
    if not verdict.ok:
        raise UnsupportedError(f'backend "{backend.name}": {verdict.reason}')
    output = QuantizedActivation.output_buffer(problem, x.data.device, backend.info.channels_last)
    result = backend.apply_function(relu)(packed.packed, backend.prepare_input(x), output)
    integers = output_integers(result, output)
    return QuantizedActivation(integers, output.scale, output.zero_point, output.dtype).to_torch()


def _problem(x: QuantizedActivation, packed: PackedConv, scale: float, zero_point: int,
             dtype: str, relu: bool) -> ConvProblem:
    n, c, h, w = x.data.shape
    k, c_per_group, r, s = packed.weight.data.shape
    if c != c_per_group * packed.params.groups:
        raise ValueError(f"input has {c} channels; weight expects {c_per_group} x groups "
                         f"{packed.params.groups} = {c_per_group * packed.params.groups}")
    # One weight zero point stands for all: the first non-zero one, so a backend's support check
    # sees asymmetric weights; the backend itself receives every channel's.
    weight_zero_point = next((int(z) for z in packed.weight.zero_points.tolist() if z), 0)
    p = packed.params
    return ConvProblem(
        batch=n, in_channels=c, height=h, width=w, out_channels=k, kernel_size=(r, s),
        stride=p.stride, padding=p.padding, dilation=p.dilation, groups=p.groups,
        in_dtype=x.dtype, in_scale=x.scale, in_zero_point=x.zero_point,
        weight_qscheme=packed.weight.qscheme, weight_zero_point=weight_zero_point,
        bias=packed.bias is not None, out_dtype=dtype, out_scale=scale,  # type: ignore[arg-type]
        out_zero_point=zero_point, relu=relu).validate()
