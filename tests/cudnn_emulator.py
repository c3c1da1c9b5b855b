"""A CPU stand-in for cuDNN that runs a `GraphSpec` the way cuDNN reads it: from each buffer's
storage with the spec's own dims and NHWC strides (not the tensor's shape), int8 x int8 summed
exactly, converted to float32, pointwise ops in float32, then rounded half-to-even and saturated
to int8; an `Fp16GraphSpec` (cudnn-fp16) as fp16 in, float sums, bias and ReLU, fp16 out. It
checks the backend's arithmetic and buffer layouts without a GPU; whether cuDNN agrees is the GPU
tests' question."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from qbench import UnsupportedError
from qbench_cudnn.fp16 import Fp16GraphSpec
from qbench_cudnn.graph import GraphSpec, TensorSpec


_DTYPES = {"INT8": torch.int8, "FLOAT": torch.float32, "HALF": torch.float16}


def _view(tensor: torch.Tensor, spec: TensorSpec) -> torch.Tensor:
    """`tensor`'s storage as cuDNN would see it through `spec` (raises if it does not fit; cuDNN
    would misread a buffer of another dtype)."""
    assert tensor.dtype == _DTYPES[spec.data_type], (spec.name, tensor.dtype)
    return torch.as_strided(tensor, spec.dims, spec.strides, tensor.storage_offset())


def emulated_executor_for(channel_multiple: int = 1, scale_first_only: bool = False):
    """An `executor_for` replacement. As cuDNN's engines may, it refuses channel counts that are
    not multiples of `channel_multiple` and, if asked, the "offset first" form of the graph."""

    def executor_for(spec: GraphSpec | Fp16GraphSpec, pack: dict[int, torch.Tensor],
                     build=None):  # build: cuDNN's graph builder, which the emulator needs not
        if spec.x.dims[1] % channel_multiple or spec.y.dims[1] % channel_multiple:
            raise UnsupportedError(f"emulated: channels must be multiples of {channel_multiple}")
        if isinstance(spec, Fp16GraphSpec):
            return _fp16_execute(spec), {"plans": 1, "runnable": 1, "plan": "emulated"}
        if scale_first_only and spec.form != "scale first":
            raise UnsupportedError("emulated: no engine for this pointwise chain")

        def execute(variant_pack: dict[int, torch.Tensor]) -> None:
            value = _conv(spec, variant_pack).to(torch.float32)
            offset = _view(variant_pack[spec.offset.uid], spec.offset)
            scale = _view(variant_pack[spec.scale.uid], spec.scale)
            if spec.form == "offset first":
                value = (value + offset) * scale
                if spec.relu:
                    value = value.clamp_min(0)
                value = value + _view(variant_pack[spec.zero_point.uid], spec.zero_point)
            else:
                value = value * scale + offset
                if spec.relu:
                    value = value.clamp_min(spec.relu_floor)
            y = _view(variant_pack[spec.y.uid], spec.y)
            y.copy_(torch.round(value).clamp_(-128, 127).to(torch.int8))

        return execute, {"plans": 1, "runnable": 1, "plan": "emulated"}

    return executor_for


def _conv(spec: GraphSpec | Fp16GraphSpec, variant_pack: dict[int, torch.Tensor]) -> torch.Tensor:
    x = _view(variant_pack[spec.x.uid], spec.x).to(torch.float64)
    w = _view(variant_pack[spec.w.uid], spec.w).to(torch.float64)
    groups = spec.x.dims[1] // spec.w.dims[1]
    return F.conv2d(x, w, None, spec.stride, spec.padding, spec.dilation, groups)


def _fp16_execute(spec: Fp16GraphSpec):
    def execute(variant_pack: dict[int, torch.Tensor]) -> None:
        value = _conv(spec, variant_pack).to(torch.float32)
        if spec.bias is not None:
            value = value + _view(variant_pack[spec.bias.uid], spec.bias).float()
        if spec.relu:
            value = value.clamp_min(0)
        _view(variant_pack[spec.y.uid], spec.y).copy_(value.to(torch.float16))

    return execute
