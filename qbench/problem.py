"""The convolution problem model: field names follow `torch.nn.Conv2d`, plus the quantization.

A `ConvProblem` describes one quantized conv completely (shapes, strides, dtypes, scales); it holds
no data. `validate()` is the one place that decides whether a problem is possible, so the suite
loader and the Python API reject the same things with the same words.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from qbench.errors import InvalidProblem

Pair = tuple[int, int]
QDtype = Literal["quint8", "qint8"]
QScheme = Literal["per_tensor", "per_channel"]

QDTYPES: dict[str, tuple[int, int]] = {"quint8": (0, 255), "qint8": (-128, 127)}
QSCHEMES = ("per_tensor", "per_channel")
WEIGHT_RANGE = QDTYPES["qint8"]
# activations quantized to 7 bits, as PyTorch's observers do with reduce_range=True (its fbgemm
# and x86 qconfigs: their kernels may add pairs of uint8 x int8 products in saturating int16)
REDUCED_QDTYPES: dict[str, tuple[int, int]] = {"quint8": (0, 127), "qint8": (-64, 63)}
# the fields that are (h, w) pairs
PAIR_FIELDS = ("kernel_size", "stride", "padding", "dilation")
# the least value of each integer field, each side of a pair field
INT_MINIMUMS = {"batch": 1, "in_channels": 1, "height": 1, "width": 1, "out_channels": 1,
                "groups": 1, "kernel_size": 1, "stride": 1, "padding": 0, "dilation": 1}
# the scales a problem may have: within them the float32 requantization terms (the inputs' weight
# scales of 0.001 to 0.01, bias, multiplier) stay finite and normal, where 1e38 made the bias
# overflow and the auto output scale NaN; real quantized tensors have scales far inside them
SCALE_BOUNDS = (1e-20, 1e20)


def dtype_range(dtype: str) -> tuple[int, int]:
    """(lowest, highest) integer of a quantized dtype name."""
    return QDTYPES[dtype]


def as_pair(value: int | tuple[int, int] | list[int]) -> Pair:
    """An int or an (h, w) sequence as an (h, w) tuple, as `torch.nn.modules.utils._pair` does."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"expected an int or an (h, w) pair of ints, got {value!r}")


@dataclass(frozen=True)
class ConvProblem:
    """One quantized 2D convolution, NCHW in and out, weights (K, C/groups, R, S).

    `out_scale` / `out_zero_point` of None mean "auto": the runner picks them from the reference
    accumulator so that outputs cover the output dtype (shared/DESIGN.md, numerics contract).
    `reduce_range`: the activations (and their zero point) lie in 7 bits' range
    (`activation_range`), as PyTorch's fbgemm and x86 qconfigs quantize them, instead of the
    whole dtype's.
    """

    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel_size: Pair
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    in_dtype: QDtype = "quint8"
    in_scale: float = 0.05
    in_zero_point: int = 0
    weight_qscheme: QScheme = "per_channel"
    weight_zero_point: int = 0
    bias: bool = True
    out_dtype: QDtype = "quint8"
    out_scale: float | None = None
    out_zero_point: int | None = None
    relu: bool = False
    reduce_range: bool = False

    def replace(self, **changes: object) -> ConvProblem:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def activation_range(self) -> tuple[int, int]:
        """(lowest, highest) activation integer: the in_dtype's, or 7 bits' with reduce_range."""
        return (REDUCED_QDTYPES if self.reduce_range else QDTYPES)[self.in_dtype]

    @property
    def output_size(self) -> Pair:
        """(OH, OW) as `torch.nn.Conv2d` computes them; may be < 1 for an invalid problem."""
        sizes = []
        for size, k, s, p, d in zip((self.height, self.width), self.kernel_size, self.stride,
                                    self.padding, self.dilation):
            sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return (sizes[0], sizes[1])

    @property
    def reduction_size(self) -> int:
        """Terms summed per output element: (C / groups) * R * S."""
        return self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]

    @property
    def ops(self) -> int:
        """Arithmetic operations (a multiply-add counts 2): 2 * N * K * OH * OW * (C/g) * R * S."""
        return 2 * self.output_elements * self.reduction_size

    @property
    def input_elements(self) -> int:
        """Elements of the input activations: N * C * H * W."""
        return self.batch * self.in_channels * self.height * self.width

    @property
    def output_elements(self) -> int:
        """Elements of the output: N * K * OH * OW."""
        oh, ow = self.output_size
        return self.batch * self.out_channels * oh * ow

    @property
    def bytes_moved(self) -> int:
        """Bytes that must move at least once: int8 input + int8 weight + int8 output."""
        return self.input_elements + self.out_channels * self.reduction_size + self.output_elements

    def validate(self) -> ConvProblem:
        """Return self, or raise `InvalidProblem` naming the first impossible field."""
        for name in INT_MINIMUMS:
            require_at_least_minimum(name, getattr(self, name))
        if self.in_channels % self.groups:
            raise InvalidProblem("groups", f"in_channels={self.in_channels} is not divisible by "
                                 f"groups={self.groups}")
        if self.out_channels % self.groups:
            raise InvalidProblem("groups", f"out_channels={self.out_channels} is not divisible by "
                                 f"groups={self.groups}")
        oh, ow = self.output_size
        if oh < 1 or ow < 1:
            raise InvalidProblem("kernel_size", f"the output would be empty ({oh}x{ow}) for input "
                                 f"{self.height}x{self.width}, padding {self.padding}, dilation "
                                 f"{self.dilation}")
        for name in ("in_dtype", "out_dtype"):
            if getattr(self, name) not in QDTYPES:
                raise InvalidProblem(name, f"unknown dtype {getattr(self, name)!r}; expected one "
                                     f"of {sorted(QDTYPES)}")
        if self.weight_qscheme not in QSCHEMES:
            raise InvalidProblem("weight_qscheme", f"unknown qscheme {self.weight_qscheme!r}; "
                                 f"expected one of {list(QSCHEMES)}")
        for name in ("bias", "relu", "reduce_range"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidProblem(name, f"expected true or false, got {getattr(self, name)!r}")
        _require_scale("in_scale", self.in_scale)
        _require_zero_point("in_zero_point", self.in_zero_point, self.activation_range,
                            "with reduce_range" if self.reduce_range else "")
        _require_zero_point("weight_zero_point", self.weight_zero_point, WEIGHT_RANGE)
        if self.out_scale is not None:
            _require_scale("out_scale", self.out_scale)
        if self.out_zero_point is not None:
            _require_zero_point("out_zero_point", self.out_zero_point, dtype_range(self.out_dtype))
        return self


def int32_limits(problem: ConvProblem) -> str | None:
    """Why kernels that sum and index in int32 cannot do `problem` exactly, or None when they
    can: each term (x - zx)(w - zw) is at most 255 * 255, so the sums stay within int32 up to
    33,025 terms whatever the data; offsets into the input and the output must fit too."""
    terms = problem.reduction_size
    if 255 * 255 * terms >= 2**31:
        return f"a reduction of {terms} terms may overflow the int32 accumulator"
    for what, elements in (("input", problem.input_elements),
                           ("output", problem.output_elements)):
        if elements >= 2**31:
            return f"the {what} has {elements} elements; the kernels index with int32"
    return None


def require_at_least_minimum(field: str, value: int | Pair) -> None:
    """Raise `InvalidProblem` unless `value` (each side of a pair field's (h, w)) is an integer no
    less than the least value of the integer field `field` (`INT_MINIMUMS`)."""
    for side in value if field in PAIR_FIELDS else (value,):
        _require_int(field, side, minimum=INT_MINIMUMS[field])


def _require_int(field: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidProblem(field, f"expected an integer, got {value!r}")
    if value < minimum:
        raise InvalidProblem(field, f"must be >= {minimum}, got {value}")


def _require_scale(field: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidProblem(field, f"expected a number, got {value!r}")
    low, high = SCALE_BOUNDS
    if not (math.isfinite(value) and value > 0):
        raise InvalidProblem(field, f"must be a finite number > 0, got {value}")
    if not low <= value <= high:
        raise InvalidProblem(field, f"must lie in [{low:g}, {high:g}], where float32 "
                             f"requantization stays finite, got {value:g}")


def _require_zero_point(field: str, value: object, bounds: tuple[int, int],
                        condition: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidProblem(field, f"expected an integer, got {value!r}")
    if not bounds[0] <= value <= bounds[1]:
        where = f" {condition}" if condition else ""
        raise InvalidProblem(field, f"must lie in [{bounds[0]}, {bounds[1]}]{where}, got {value}")
