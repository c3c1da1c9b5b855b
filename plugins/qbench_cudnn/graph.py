"""The fused int8 conv graph: described in plain Python, then built with cudnn-frontend.

Two forms of the same requantization (see numerics.py for what the operands hold):
  "offset first", fbgemm's order, as the reference rounds:
      y = int8_sat( [relu]( (f32(conv_int32(x, w)) + offset) * scale ) + zero_point )
  "scale first", the shape of PyTorch's own cuDNN graph (mul, add, relu), tried when cuDNN has no
  engine for the first; the zero point rides in the offset and is ReLU's lower clip:
      y = int8_sat( max( f32(conv_int32(x, w)) * scale + offset', zero_point ) )
      offset' = f32(f32(offset * scale) + zero_point); rounding may differ by 1 LSB at ties.
x, w and y are int8 NHWC; offset is (1, K, OH, OW) or (1, K, 1, 1), scale and zero_point are
(1, K, 1, 1), all float32. The conv computes in INT32 and hands FLOAT on; every pointwise op must be
told to compute in FLOAT: left to inherit the graph's INT32, cuDNN finds no engine
("mathPrec != CUDNN_DATA_FLOAT", shared/DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Tensor uids, so that a call's variant pack is a small dict of ints.
X, W, OFFSET, SCALE, ZERO_POINT, Y = range(1, 7)
FORMS = ("offset first", "scale first")


@dataclass(frozen=True)
class TensorSpec:
    uid: int
    name: str
    dims: tuple[int, int, int, int]
    data_type: str  # a cudnn.data_type member name: "INT8", "FLOAT" or "HALF" (fp16.py)

    @property
    def strides(self) -> tuple[int, int, int, int]:
        """NHWC (channels_last) strides of the logical NCHW dims."""
        _, c, h, w = self.dims
        return (h * w * c, 1, w * c, c)


@dataclass(frozen=True)
class GraphSpec:
    """Everything cuDNN needs to build the graph; equal specs build the same graph."""

    x: TensorSpec
    w: TensorSpec
    offset: TensorSpec
    scale: TensorSpec
    zero_point: TensorSpec | None  # "offset first" only
    y: TensorSpec
    padding: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    relu: bool
    form: str  # one of FORMS
    relu_floor: float  # "scale first": ReLU's lower clip, the output zero point

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The tensors the caller provides, in the order build() declares them."""
        return tuple(t for t in (self.x, self.w, self.offset, self.scale, self.zero_point)
                     if t is not None)


def describe(x_dims: tuple[int, int, int, int], w_dims: tuple[int, int, int, int],
             y_dims: tuple[int, int, int, int], padding: tuple[int, int],
             stride: tuple[int, int], dilation: tuple[int, int], relu: bool,
             form: str = FORMS[0], relu_floor: float = 0.0) -> GraphSpec:
    """The graph for these (possibly channel-padded) shapes."""
    if form not in FORMS:
        raise ValueError(f"unknown graph form {form!r}")
    per_channel = (1, y_dims[1], 1, 1)
    return GraphSpec(
        x=TensorSpec(X, "x", x_dims, "INT8"),
        w=TensorSpec(W, "w", w_dims, "INT8"),
        offset=TensorSpec(OFFSET, "offset", per_channel, "FLOAT"),
        scale=TensorSpec(SCALE, "scale", per_channel, "FLOAT"),
        zero_point=(TensorSpec(ZERO_POINT, "zero_point", per_channel, "FLOAT")
                    if form == FORMS[0] else None),
        y=TensorSpec(Y, "y", y_dims, "INT8"),
        padding=padding, stride=stride, dilation=dilation, relu=relu, form=form,
        relu_floor=relu_floor)


def build(spec: GraphSpec, cudnn: Any, handle: int) -> Any:
    """A cudnn-frontend `pygraph` of `spec`, validated and lowered to an operation graph.

    `cudnn` is the imported module (passed in so that importing this file needs no cuDNN).
    Raises cudnn's own error when cuDNN refuses the graph.
    """
    types = cudnn.data_type
    graph = cudnn.pygraph(io_data_type=types.INT8, intermediate_data_type=types.FLOAT,
                          compute_data_type=types.INT32, handle=handle)

    def tensor(t: TensorSpec) -> Any:
        return graph.tensor(name=t.name, dim=list(t.dims), stride=list(t.strides),
                            data_type=getattr(types, t.data_type), uid=t.uid)

    x, w, offset, scale, *zero_point = (tensor(t) for t in spec.inputs)
    acc = graph.conv_fprop(image=x, weight=w, padding=list(spec.padding),
                           stride=list(spec.stride), dilation=list(spec.dilation),
                           compute_data_type=types.INT32, name="conv")
    acc.set_data_type(types.FLOAT)
    if spec.form == FORMS[0]:
        value = graph.add(a=acc, b=offset, compute_data_type=types.FLOAT, name="add_offset")
        value = graph.mul(a=value, b=scale, compute_data_type=types.FLOAT, name="scale")
        if spec.relu:
            value = graph.relu(input=value, compute_data_type=types.FLOAT, name="relu")
        y = graph.add(a=value, b=zero_point[0], compute_data_type=types.FLOAT,
                      name="add_zero_point")
    else:
        value = graph.mul(a=acc, b=scale, compute_data_type=types.FLOAT, name="scale")
        y = graph.add(a=value, b=offset, compute_data_type=types.FLOAT, name="add_offset")
        if spec.relu:
            y = graph.relu(input=y, lower_clip=spec.relu_floor, compute_data_type=types.FLOAT,
                           name="relu")
    return finish(graph, y, spec.y, types.INT8)


def finish(graph: Any, y: Any, output: TensorSpec, data_type: Any) -> Any:
    """`graph` with `y` made its output as `output` describes it (uid, name, NHWC dims and
    strides) in `data_type`, validated and lowered to an operation graph."""
    y.set_output(True).set_data_type(data_type)
    y.set_uid(output.uid)
    y.set_name(output.name)
    y.set_dim(list(output.dims))
    y.set_stride(list(output.strides))
    graph.validate()
    graph.build_operation_graph()
    return graph
