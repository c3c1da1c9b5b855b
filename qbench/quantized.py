"""Quantized tensors as the host hands them to backends: raw integer data plus its quantization.

PyTorch's quantized tensors cannot wrap existing memory (`_make_per_tensor_quantized_tensor`
copies), so inside qbench an activation is its raw uint8/int8 tensor with scale and zero point,
and conversion to and from `torch.quint8` / `torch.qint8` happens only at the drop-in API's edge.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from qbench.errors import InvalidProblem
from qbench.problem import (ConvProblem, Pair, QDtype, QScheme, as_pair, dtype_range,
                            require_at_least_minimum)

RAW_DTYPES: dict[str, torch.dtype] = {"quint8": torch.uint8, "qint8": torch.int8}
TORCH_QDTYPES: dict[str, torch.dtype] = {"quint8": torch.quint8, "qint8": torch.qint8}
QDTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in TORCH_QDTYPES.items()}


@dataclass(frozen=True)
class ConvParams:
    """The geometry that `conv2d_prepack` receives besides weight and bias."""

    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1

    @classmethod
    def of(cls, stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
           dilation: int | Sequence[int] = 1, groups: int = 1) -> ConvParams:
        """Params from ints or (h, w) pairs, as PyTorch accepts them; raises `InvalidProblem`
        naming the first that is neither or is below its least value (`INT_MINIMUMS`)."""
        pairs: dict[str, Pair] = {}
        for name, value in (("stride", stride), ("padding", padding), ("dilation", dilation)):
            try:
                pairs[name] = as_pair(value)
            except TypeError as exc:
                raise InvalidProblem(name, str(exc)) from None
            require_at_least_minimum(name, pairs[name])
        require_at_least_minimum("groups", groups)
        return cls(**pairs, groups=groups)


@dataclass(frozen=True)
class QuantizedActivation:
    """A per-tensor affine quantized NCHW activation: value = scale * (data - zero_point).

    `data` is uint8 for quint8 and int8 for qint8, logical shape (N, C, H, W), in any memory format.
    """

    data: torch.Tensor
    scale: float
    zero_point: int
    dtype: QDtype

    @classmethod
    def from_torch(cls, tensor: torch.Tensor) -> QuantizedActivation:
        """Wrap a per-tensor quantized torch tensor (copies its integers once)."""
        if tensor.dtype not in QDTYPE_NAMES or tensor.qscheme() != torch.per_tensor_affine:
            raise ValueError(f"expected a per-tensor quint8 or qint8 tensor, got {tensor.dtype}"
                             + (f" ({tensor.qscheme()})" if tensor.is_quantized else ""))
        return cls(tensor.int_repr(), float(tensor.q_scale()), int(tensor.q_zero_point()),
                   QDTYPE_NAMES[tensor.dtype])

    def to_torch(self) -> torch.Tensor:
        """The same values as a torch quantized tensor (a copy)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # quantized tensors are deprecated in 2.13
            return torch._make_per_tensor_quantized_tensor(self.data, self.scale, self.zero_point)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The real values, exactly (data - zero_point) * scale computed in `dtype`."""
        return (self.data.to(dtype) - self.zero_point) * self.scale

    def to(self, device: torch.device | str, channels_last: bool = False) -> QuantizedActivation:
        """The same activation on `device`, NHWC in memory when `channels_last`."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return QuantizedActivation(self.data.to(device).contiguous(memory_format=fmt), self.scale,
                                   self.zero_point, self.dtype)

    @classmethod
    def output_buffer(cls, problem: ConvProblem, device: torch.device | str,
                      channels_last: bool) -> QuantizedActivation:
        """An uninitialised output (N, K, OH, OW) of `problem`, quantized as its output is."""
        oh, ow = problem.output_size
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        data = torch.empty((problem.batch, problem.out_channels, oh, ow),
                           dtype=RAW_DTYPES[problem.out_dtype], device=device, memory_format=fmt)
        return cls(data, problem.out_scale, problem.out_zero_point, problem.out_dtype)


@dataclass(frozen=True)
class QuantizedWeight:
    """qint8 weights (K, C/groups, R, S): value[k] = scales[k] * (data[k] - zero_points[k]).

    `scales` (float64) and `zero_points` (int64) always have K entries; for a per-tensor weight
    they repeat one value and `qscheme` says so.
    """

    data: torch.Tensor
    scales: torch.Tensor
    zero_points: torch.Tensor
    qscheme: QScheme

    @classmethod
    def from_torch(cls, tensor: torch.Tensor) -> QuantizedWeight:
        """Wrap a qint8 torch weight, per-tensor or per-channel along axis 0."""
        if tensor.dtype != torch.qint8:
            raise ValueError(f"weights must be torch.qint8, got {tensor.dtype}")
        k = tensor.shape[0]
        if tensor.qscheme() == torch.per_tensor_affine:
            return cls(tensor.int_repr(), torch.full((k,), tensor.q_scale(), dtype=torch.float64),
                       torch.full((k,), tensor.q_zero_point(), dtype=torch.int64), "per_tensor")
        # not per_channel_affine_float_qparams (PyTorch's embedding quantization): its zero
        # points are floats, which integer sums cannot subtract; PyTorch's conv refuses it too
        if tensor.qscheme() == torch.per_channel_affine:
            if tensor.q_per_channel_axis() != 0:
                raise ValueError("per-channel weights must be quantized along axis 0 (output "
                                 f"channels), got axis {tensor.q_per_channel_axis()}")
            return cls(tensor.int_repr(), tensor.q_per_channel_scales().to(torch.float64),
                       tensor.q_per_channel_zero_points().to(torch.int64), "per_channel")
        raise ValueError(f"unsupported weight qscheme {tensor.qscheme()}; expected "
                         "torch.per_tensor_affine or torch.per_channel_affine")

    def to(self, device: torch.device | str) -> QuantizedWeight:
        """The same weights (and their scales and zero points) on `device`."""
        return QuantizedWeight(self.data.to(device), self.scales.to(device),
                               self.zero_points.to(device), self.qscheme)

    def to_torch(self) -> torch.Tensor:
        """The same weights as a torch qint8 tensor (a copy)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            if self.qscheme == "per_tensor":
                return torch._make_per_tensor_quantized_tensor(
                    self.data, float(self.scales[0]), int(self.zero_points[0]))
            device = self.data.device
            return torch._make_per_channel_quantized_tensor(
                self.data, self.scales.to(device), self.zero_points.to(device), 0)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The real weight values, computed in `dtype`."""
        view = (-1, 1, 1, 1)
        scales = self.scales.to(device=self.data.device, dtype=dtype).view(view)
        zero_points = self.zero_points.to(self.data.device).view(view)
        return (self.data.to(dtype) - zero_points.to(dtype)) * scales


def nhwc_view(data: torch.Tensor) -> torch.Tensor:
    """The (N, C, H, W) tensor `data` as a contiguous (N, H, W, C) view, for kernels that index
    NHWC memory; a ValueError when `data` is not channels_last in memory."""
    view = data.permute(0, 2, 3, 1)
    if not view.is_contiguous():
        raise ValueError("expected a channels_last (NHWC) tensor; backends whose info says "
                         "channels_last are given such tensors")
    return view


def quantize_output(values: torch.Tensor, output: QuantizedActivation) -> torch.Tensor:
    """Float outputs to `output`'s integers: clamp(round_half_even(v / scale) + zero_point).

    Used by the host for float reference backends, outside any timed region.
    """
    lo, hi = dtype_range(output.dtype)
    q = torch.round(values.float() / output.scale) + output.zero_point
    return q.clamp_(lo, hi).to(RAW_DTYPES[output.dtype])


def output_integers(result: torch.Tensor | None, output: QuantizedActivation) -> torch.Tensor:
    """What a backend's apply produced, as `output`'s integers (see `qbench_apply`'s contract).

    None: the backend wrote `output.data`. A quantized tensor: its integers. A float tensor (float
    reference backends): quantized here with the output's scale, zero point and dtype, but where
    it holds NaN, `output.data`'s value: a backend that fills its own output with NaN before the
    checked run (an element it never writes stays NaN) gets the host's poison there, which
    cannot pass.
    """
    if result is None:
        return output.data
    if result.is_quantized:
        return result.int_repr()
    if result.is_floating_point():
        return torch.where(result.isnan(), output.data, quantize_output(result, output))
    return result
