"""Host-side planning for the CUDA C kernels in kernels/: which kernels fit a problem, their
template arguments, the weights repacked for each, the launch grid and the scalar arguments.

Plain Python and PyTorch, no CuPy: the CPU tests run these plans through the kernels' own
__host__ __device__ functions (tests/cuda/host_check.cu) and against the exact reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from qbench.problem import dtype_range
from qbench.quantized import ConvParams

KERNEL_DIR = Path(__file__).parent / "kernels"
C_TYPES = {"quint8": "unsigned char", "qint8": "signed char"}
SIGN_FLIP = 128  # quint8 bytes are used as int8 bytes v ^ 0x80 = v - 128
MMA_DEPTH = 32  # channels per tensor-core step (m16n8k32)
MMA_MIN_GROUP_IN = 16  # below this a 32-deep MMA step is mostly padding: the direct kernel runs
DIRECT_THREADS = 256  # the direct and depthwise kernels' __launch_bounds__


@dataclass(frozen=True)
class Tile:
    """A tensor-core block tile: BM output pixels x BN output channels, WARPS_M x WARPS_N warps."""

    bm: int
    bn: int
    warps_m: int
    warps_n: int

    @property
    def threads(self) -> int:
        return 32 * self.warps_m * self.warps_n

    def pieces_per_thread(self, width: int) -> int:
        """Activation pieces of `width` bytes each thread loads per 32-channel step."""
        return -(-self.bm * (MMA_DEPTH // width) // self.threads)


# The tiles autotuning chooses from. A thread keeps the pixel of each activation piece it loads
# in registers; beyond MAX_PIECES per thread, sm_80 spills (the compile check refuses spills).
TILES = (Tile(128, 128, 2, 2), Tile(128, 64, 2, 2), Tile(64, 128, 2, 2), Tile(64, 64, 2, 2))
MAX_PIECES = 4


@dataclass(frozen=True)
class Geometry:
    """The problem's shape as the kernels take it (struct qbench::Geometry, in its order)."""

    n: int
    h: int
    w: int
    c: int
    k: int
    oh: int
    ow: int
    r: int
    s: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    dil_h: int
    dil_w: int
    group_in: int
    group_out: int

    @classmethod
    def of(cls, x_shape: tuple[int, ...], out_shape: tuple[int, ...],
           kernel_size: tuple[int, int], params: ConvParams) -> Geometry:
        """From NHWC input and output shapes."""
        n, h, w, c = x_shape
        _, oh, ow, k = out_shape
        return cls(n, h, w, c, k, oh, ow, *kernel_size, *params.stride, *params.padding,
                   *params.dilation, c // params.groups, k // params.groups)

    @property
    def groups(self) -> int:
        return self.c // self.group_in

    @property
    def pixels(self) -> int:
        return self.n * self.oh * self.ow

    @property
    def padded_group_in(self) -> int:
        """Channels per (k, r, s) row of the tensor-core kernel's weights: a multiple of 32."""
        return -(-self.group_in // MMA_DEPTH) * MMA_DEPTH

    def fields(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class Kernel:
    """One specialisation of one kernel template."""

    source: str  # file in kernels/
    function: str  # the template's qualified name
    template_args: tuple[str | int, ...]
    weight_layout: str  # "k_r_s_c", "r_s_k" or "k_r_s_cpad"
    tile: Tile | None = None
    outputs_per_thread: int = 1  # kernels without a tile

    @property
    def expression(self) -> str:
        """The instantiation, as CuPy's name_expressions and an explicit instantiation spell it."""
        return f"{self.function}<{', '.join(str(a) for a in self.template_args)}>"

    def launch(self, g: Geometry) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(grid, block) for problem `g`."""
        if self.tile is None:
            threads = g.pixels * g.k // self.outputs_per_thread
            return (-(-threads // DIRECT_THREADS),), (DIRECT_THREADS,)
        t = self.tile
        return (-(-g.pixels // t.bm), -(-g.group_out // t.bn), g.groups), (t.threads,)


def vector_width(g: Geometry) -> int:
    """Bytes the kernels may read at once from an activation row: 16, 4 or 1."""
    for width in (16, 4):
        if g.group_in % width == 0 and g.c % width == 0:
            return width
    return 1


def candidates(g: Geometry, x_dtype: str, out_dtype: str,
               weight_zero_points: bool) -> list[Kernel]:
    """The kernels that compute `g`, best guess first; autotuning times them all.

    depthwise (C/g = 1): its own kernel, four channels per thread when each channel has one filter
    and C is a multiple of 4, with one per thread as a contender. Tensor cores when C/g >= 16 is a
    multiple of 4 and the weights have no zero points, with the direct dp4a kernel as a contender
    (it wins on tiny problems). Otherwise the direct kernel: dp4a when channels come in fours,
    else bytewise.
    """
    types = (C_TYPES[x_dtype], C_TYPES[out_dtype])
    if g.group_in == 1:
        one = Kernel("conv_depthwise.cu", "qbench::conv_depthwise", (*types, 1), "r_s_k")
        if g.group_out == 1 and g.c % 4 == 0:
            return [Kernel("conv_depthwise.cu", "qbench::conv_depthwise", (*types, 4), "r_s_k",
                           outputs_per_thread=4), one]
        return [one]
    width = vector_width(g)
    direct = Kernel("conv_direct.cu", "qbench::conv_direct", (*types, 4 if width >= 4 else 1),
                    "k_r_s_c")
    if weight_zero_points or width == 1 or g.group_in < MMA_MIN_GROUP_IN:
        return [direct]
    return [Kernel("conv_mma.cu", "qbench::conv_mma",
                   (*types, t.bm, t.bn, t.warps_m, t.warps_n, width), "k_r_s_cpad", t)
            for t in TILES if t.pieces_per_thread(width) <= MAX_PIECES] + [direct]


def every_kernel() -> list[Kernel]:
    """Every specialisation `candidates` can return (what the compile check instantiates)."""
    kernels: dict[str, Kernel] = {}
    for x_dtype in C_TYPES:
        for out_dtype in C_TYPES:
            for group_in, c in ((1, 8), (3, 3), (4, 4), (16, 16), (20, 20)):
                g = Geometry(1, 1, 1, c, c, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, group_in, group_in)
                for zero_points in (False, True):
                    for kernel in candidates(g, x_dtype, out_dtype, zero_points):
                        kernels[kernel.expression] = kernel
    return list(kernels.values())


def pack_weight(weight: torch.Tensor, layout: str, g: Geometry) -> torch.Tensor:
    """int8 (K, C/g, R, S) weights in `layout`, contiguous."""
    if layout == "k_r_s_c":
        return weight.permute(0, 2, 3, 1).contiguous()
    if layout == "r_s_k":
        return weight[:, 0].permute(1, 2, 0).contiguous()
    if layout == "k_r_s_cpad":
        packed = weight.new_zeros((g.k, g.r, g.s, g.padded_group_in))
        packed[..., : g.group_in] = weight.permute(0, 2, 3, 1)
        return packed
    raise ValueError(f"unknown weight layout {layout!r}")


@dataclass(frozen=True)
class Scalars:
    """The kernels' trailing int arguments after the geometry."""

    padded_group_in: int
    x_zero_point: int  # in the int8 domain: zx - 128 for quint8
    out_zero_point: int
    lo: int
    hi: int

    @classmethod
    def of(cls, g: Geometry, x_dtype: str, x_zero_point: int, out_dtype: str,
           out_zero_point: int, relu: bool) -> Scalars:
        lo, hi = dtype_range(out_dtype)
        return cls(g.padded_group_in, x_zero_point - SIGN_FLIP if x_dtype == "quint8"
                   else x_zero_point, out_zero_point, out_zero_point if relu else lo, hi)

    def fields(self) -> tuple[int, ...]:
        return (self.padded_group_in, self.x_zero_point, self.out_zero_point, self.lo, self.hi)


@dataclass(frozen=True)
class Operands:
    """A kernel's arguments but the activation and output pointers, in the kernels' order:
    (x, w, y, w_sums, w_zero_points, bias_terms, multipliers, *geometry, *scalars)."""

    weight: torch.Tensor  # int8, in the kernel's layout
    w_sums: torch.Tensor  # int32 (K,): each filter's sum, for the tensor-core kernel's compensation
    w_zero_points: torch.Tensor  # int32 (K,)
    bias_terms: torch.Tensor  # float32 (K,): f32(b / aw)
    multipliers: torch.Tensor  # float32 (K,): f32(aw / s_y)
    ints: tuple[int, ...]  # Geometry fields, then Scalars fields

    @classmethod
    def of(cls, kernel: Kernel, g: Geometry, weight: torch.Tensor, w_zero_points: torch.Tensor,
           bias_terms: torch.Tensor, multipliers: torch.Tensor, scalars: Scalars) -> Operands:
        device = weight.device
        return cls(pack_weight(weight, kernel.weight_layout, g),
                   weight.sum(dim=(1, 2, 3), dtype=torch.int32).contiguous(),  # not int64
                   w_zero_points.to(device=device, dtype=torch.int32).contiguous(),
                   bias_terms.to(device).contiguous(), multipliers.to(device).contiguous(),
                   g.fields() + scalars.fields())
