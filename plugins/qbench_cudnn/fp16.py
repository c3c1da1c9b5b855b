"""The fp16 conv graph of the `cudnn-fp16` backend: the float figure that int8 is held to, as fast
as cuDNN makes it, built and autotuned as the int8 graph is (plans.py):

    y = fp16( [relu]( f32(conv(x, w)) + bias ) )

x, w and y are fp16 NHWC, the dequantized tensors; bias is (1, K, 1, 1) fp16, absent without one.
The conv and the pointwise ops compute in FLOAT. One graph: no pass over the output of its own
for the bias or the ReLU (as PyTorch's F.conv2d then relu_ runs), and no output read back as a
zero-weighted addend (as PyTorch's fused `cudnn_convolution_relu` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qbench_cudnn.graph import W, X, Y, TensorSpec, finish

BIAS = 7  # after the int8 graph's uids, so that a variant pack's X, W and Y are the same keys


@dataclass(frozen=True)
class Fp16GraphSpec:
    """Everything cuDNN needs to build the fp16 graph; equal specs build the same graph."""

    x: TensorSpec
    w: TensorSpec
    bias: TensorSpec | None
    y: TensorSpec
    padding: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    relu: bool


def describe(x_dims: tuple[int, int, int, int], w_dims: tuple[int, int, int, int],
             y_dims: tuple[int, int, int, int], padding: tuple[int, int],
             stride: tuple[int, int], dilation: tuple[int, int], relu: bool,
             bias: bool) -> Fp16GraphSpec:
    """The graph for these shapes (groups: x's channels over w's)."""
    return Fp16GraphSpec(
        x=TensorSpec(X, "x", x_dims, "HALF"), w=TensorSpec(W, "w", w_dims, "HALF"),
        bias=TensorSpec(BIAS, "bias", (1, y_dims[1], 1, 1), "HALF") if bias else None,
        y=TensorSpec(Y, "y", y_dims, "HALF"), padding=padding, stride=stride,
        dilation=dilation, relu=relu)


def build(spec: Fp16GraphSpec, cudnn: Any, handle: int) -> Any:
    """A cudnn-frontend `pygraph` of `spec`, validated and lowered to an operation graph; raises
    cudnn's own error when cuDNN refuses it."""
    types = cudnn.data_type
    graph = cudnn.pygraph(io_data_type=types.HALF, intermediate_data_type=types.FLOAT,
                          compute_data_type=types.FLOAT, handle=handle)

    def tensor(t: TensorSpec) -> Any:
        return graph.tensor(name=t.name, dim=list(t.dims), stride=list(t.strides),
                            data_type=types.HALF, uid=t.uid)

    y = graph.conv_fprop(image=tensor(spec.x), weight=tensor(spec.w),
                         padding=list(spec.padding), stride=list(spec.stride),
                         dilation=list(spec.dilation), compute_data_type=types.FLOAT,
                         name="conv")
    if spec.bias is not None:
        y.set_data_type(types.FLOAT)
        y = graph.add(a=y, b=tensor(spec.bias), compute_data_type=types.FLOAT, name="bias")
    if spec.relu:
        y.set_data_type(types.FLOAT)
        y = graph.relu(input=y, compute_data_type=types.FLOAT, name="relu")
    return finish(graph, y, spec.y, types.HALF)
