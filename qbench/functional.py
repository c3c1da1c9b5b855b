"""A drop-in for `torch.ao.nn.quantized.functional.conv2d`, with a backend choice.

Unlike PyTorch's, `dtype` is honoured: the output is quantized as `dtype` (torch.quint8 or
torch.qint8) whatever the input's dtype, and qint8 activations are accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qbench import ops
from qbench.quantized import QDTYPE_NAMES


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
           dilation: int | Sequence[int] = 1, groups: int = 1, padding_mode: str = "zeros",
           scale: float = 1.0, zero_point: int = 0, dtype: torch.dtype = torch.quint8, *,
           backend: str = ops.DEFAULT_BACKEND) -> torch.Tensor:
    """Quantized 2D convolution of `input` (N, C, H, W) with qint8 `weight` (K, C/groups, R, S).

    Returns a quantized tensor with `scale`, `zero_point` and `dtype`. Raises
    `qbench.UnsupportedError` when `backend` cannot compute this problem.
    """
    if padding_mode != "zeros":
        raise NotImplementedError("Only zero-padding is supported!")
    if dtype not in QDTYPE_NAMES:
        raise ValueError(f"dtype must be torch.quint8 or torch.qint8, got {dtype}")
    packed = ops.conv2d_prepack(weight, bias, stride, padding, dilation, groups, backend=backend)
    return ops.apply(input, packed, scale, zero_point, QDTYPE_NAMES[dtype], relu=False)
