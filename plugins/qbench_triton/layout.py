"""How a conv maps onto the two kernels: which one runs, how the GEMM's reduction is laid out, and
the weights it reads: [K, taps, tap_stride] for the GEMM (the reduction contiguous, as int8
tensor-core operands must be; a tap is (r, s) with the tile's channels, or with merged rows a
kernel row r with its S pixels' channels, zero-padded to a multiple of TAP_ALIGN bytes so that
every tap's weights are vector loads, a merged row's to a multiple of BLOCK), [R, S, C/groups, K]
for the direct kernel (a tap's output channels contiguous, as its programs read them).

- groups == 1: the GEMM. When the channels are not a multiple of GEMM_MIN_SPAN (conv1's 3, the
  padding suite's 30) and the width dilation is 1, a kernel row's pixels are merged into one
  span (see kernels.conv_gemm_kernel), which wastes less of each block; channels that fill
  blocks keep one tap per block, whose bounds check is per pixel rather than per byte. The
  direct kernel when a merged row of several pixels is under MERGED_MIN_SPAN lanes (a 3x3 of 2
  channels), or a tap of one pixel under GEMM_MIN_SPAN channels (a 1x1 conv of 3).
- narrow groups (ResNeXt: 4 to 16 channels each): several neighbouring groups share one GEMM
  tile, with block-diagonal weights (zeros between groups), so that the tensor cores do the work
  at a few times the multiply-adds instead of the CUDA cores doing it one at a time. Not with
  weight zero points, whose compensation sums each group's activations on their own.
- depthwise and groups under NARROW_GROUP_MIN channels: the direct kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qbench.quantized import ConvParams

GEMM_MIN_SPAN = 16  # channels per tap under which the direct kernel replaces the GEMM
# A merged row's lanes under which the direct kernel replaces the GEMM. The direct kernel's time
# grows with its multiply-adds, the GEMM's with its blocks, one a merged row up to BLOCK lanes: on
# an H200 (results/h200-2026-11-27-6b3a359, padding suite, 3x3 at 56^2 to 64 channels, batch 32)
# the direct kernel took 17.8, 27.3, 34.8, 42.3 and 49.9 us on 1 to 5 channels, the GEMM 27.6,
# 26.9 and 27.0 on 6 to 8 (rows of 18 to 24 lanes, a block each): even at 2 channels (6 lanes),
# which keep the direct kernel.
MERGED_MIN_SPAN = 8
TAP_ALIGN = 16  # bytes: each tap's GEMM weights start at a multiple of this
# lanes: the narrowest block either GEMM kernel reduces on a GPU (an int8 tensor-core step's; the
# interpreter's blocks of 16 divide it too)
BLOCK = 32
TILE_MIN_CHANNELS = 32  # narrow groups are packed together up to this many channels per tile
NARROW_GROUP_MIN = 4  # groups narrower than this (depthwise) stay on the direct kernel


@dataclass(frozen=True)
class Layout:
    kernel: str  # "gemm" or "direct"
    merge_rows: bool  # the GEMM reduces over a kernel row's pixels at once (MERGE_S)
    groups_per_tile: int  # neighbouring groups that share a GEMM tile
    weight: torch.Tensor  # int8: gemm [K, taps, tap_stride], direct [R, S, tile_in, K]
    tile_in: int  # channels per tap that one tile reduces over (the kernels' CG)
    tile_out: int  # output channels of one tile group (the kernels' KG)
    span: int  # the channels of one GEMM tap (SPAN): tile_in, or S * tile_in with merged rows

    @property
    def tap_stride(self) -> int:
        """The GEMM weights' elements per tap (WSTRIDE): the span, zero-padded (`_taps`)."""
        return self.weight.shape[2]


def layout(weight: torch.Tensor, params: ConvParams, has_weight_zero_points: bool) -> Layout:
    """The layout for int8 weights (K, C/groups, R, S) of a conv with `params`."""
    out_channels, group_in = weight.shape[:2]
    groups = params.groups
    group_out = out_channels // groups
    packed = weight.permute(0, 2, 3, 1).contiguous()
    if groups == 1:
        merge = params.dilation[1] == 1 and group_in % GEMM_MIN_SPAN != 0
        span = weight.shape[3] * group_in if merge else group_in
        if span < (MERGED_MIN_SPAN if merge and weight.shape[3] > 1 else GEMM_MIN_SPAN):
            return _direct(weight, group_out)
        return Layout("gemm", merge, 1, _taps(packed, merge), group_in, group_out, span)
    per_tile = 1
    if NARROW_GROUP_MIN <= group_in < TILE_MIN_CHANNELS and not has_weight_zero_points:
        per_tile = groups_per_tile(groups, group_in)
    if per_tile * group_in < GEMM_MIN_SPAN:
        return _direct(weight, group_out)
    tiled = block_diagonal(packed, group_out, per_tile) if per_tile > 1 else packed
    return Layout("gemm", False, per_tile, _taps(tiled, False), per_tile * group_in,
                  per_tile * group_out, per_tile * group_in)


def _taps(packed: torch.Tensor, merge_rows: bool) -> torch.Tensor:
    """[K, R, S, channels] GEMM weights as [K, taps, tap_stride]: a tap per (r, s), or per kernel
    row r with merged rows, zero-padded to a multiple of TAP_ALIGN, a merged row's to a multiple
    of BLOCK (so that blocks of 32 divide every merged row's stride, as the Gluon kernel's blocks
    must: `wgmma_configs.dividing`; rows of 12 or 99 lanes too, whose stride would be 16 or 112)."""
    out_channels, rows, columns, channels = packed.shape
    taps = (packed.reshape(out_channels, rows, columns * channels) if merge_rows
            else packed.reshape(out_channels, rows * columns, channels))
    lanes = taps.shape[2]
    zeros = -lanes % (BLOCK if merge_rows else TAP_ALIGN)
    return torch.nn.functional.pad(taps, (0, zeros)).contiguous()


def _direct(weight: torch.Tensor, group_out: int) -> Layout:
    """The direct kernel's layout of int8 weights (K, C/groups, R, S): [R, S, C/groups, K]."""
    return Layout("direct", False, 1, weight.permute(2, 3, 1, 0).contiguous(), weight.shape[1],
                  group_out, weight.shape[1])


def groups_per_tile(groups: int, group_in: int) -> int:
    """The fewest neighbouring groups (a divisor of `groups`) with TILE_MIN_CHANNELS channels
    together, or all of them."""
    return next((d for d in range(1, groups + 1)
                 if groups % d == 0 and d * group_in >= TILE_MIN_CHANNELS), groups)


def block_diagonal(packed: torch.Tensor, group_out: int, per_tile: int) -> torch.Tensor:
    """[K, R, S, C/groups] weights widened to [K, R, S, per_tile * C/groups]: output channel k
    keeps its own group's channels at its group's place within the tile, zeros elsewhere."""
    out_channels, r, s, group_in = packed.shape
    tiled = packed.new_zeros((out_channels, r, s, per_tile * group_in))
    slot = (torch.arange(out_channels, device=packed.device) // group_out) % per_tile
    for index in range(per_tile):
        rows = slot == index
        tiled[rows, :, :, index * group_in:(index + 1) * group_in] = packed[rows]
    return tiled
