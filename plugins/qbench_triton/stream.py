"""Stream-K for the GEMM kernel (see `kernels.conv_gemm_kernel`): programs that share output tiles,
where a layer has too few tiles to keep every SM busy to the end (ResNet-50's last stages at batch
32: 100 or 196 tiles of 64x128 on an H200's 132 SMs, whose last wave leaves SMs idle).

A shared launch's P programs divide the layer's U = tiles x steps reduction steps (BK-wide blocks)
evenly and in order: program p reduces steps [p U // P, (p + 1) U // P), runs of the blocks of one
tile or of several neighbouring ones. Of the programs that share a tile, all but the last to
finish its part store their int32 partial sums in their slots of the partials ([slots, M, K]; the
slot is a program's rank among the tile's programs), and the last adds them to its own and
requantizes: integer sums, exact in any order. Two counters per tile (zeros, left zeros) order
them (`kernels._finish_tile`). Never with weight zero points, whose row sums the kernel does not
share.

Tuning tries PER_SM_CHOICES programs per SM (`tuning.GEMM_CONFIGS`' shared configs) on layers of
at most MAX_TILES_PER_SM tiles per SM, each program taking MIN_STEPS blocks at least and no tile
shared by more than MAX_SLOTS programs. With stream-K on, the interpreter, which has no SMs,
shares tiles among `interpreter_programs` programs wherever the kernel may, so that the tests
check shared tiles on small problems.
Off unless QBENCH_TRITON_STREAM_K=1 (read at import; `ENABLED`): on an H200 every shape whose
tuning tried it ran 1.3 to 2.6 times as long shared as with a program per tile, the deep 3x3
layers it was made for too (results/h200-2026-11-27-6b3a359/stream-k.md), for reasons not yet
known. Off, the interpreter does not share tiles either.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

STREAM_K_ENV = "QBENCH_TRITON_STREAM_K"  # 1: tuning tries shared launches too
ENABLED = os.environ.get(STREAM_K_ENV) == "1"
PER_SM_CHOICES = (1, 2, 3) if ENABLED else ()
MIN_STEPS = 4  # blocks per program, enough for the loads' pipeline to fill
MAX_TILES_PER_SM = 4  # beyond, the last wave's idle SMs cost little
MAX_SLOTS = 6  # programs sharing one tile at most: more cut it into runs too short for the partials
PARTIALS_LIMIT_BYTES = 64 * 2**20
SMALLEST_TILE = 16  # no config nor the interpreter has a smaller BM or BN: the most tiles
_INT32_LIMIT = 2**31  # the kernel's step arithmetic (steps x programs) is int32


@dataclass(frozen=True)
class GemmShape:
    """A conv's GEMM as the kernel tiles it (see `layout.Layout`): its rows, the output channels
    of a tile group (KG), all output channels, a tap's span, the kernel size and whether a kernel
    row's pixels merge into one tap. `meta`: a config's tile sizes (BM, BN, BK)."""

    rows: int
    group_out: int
    out_channels: int
    span: int
    kernel_size: tuple[int, int]
    merge_rows: bool

    def tile_grid(self, meta: Mapping[str, Any]) -> tuple[int, int, int]:
        """(row tiles, channel tiles, tile groups): a program per tile's grid."""
        return (-(-self.rows // meta["BM"]), -(-self.group_out // meta["BN"]),
                self.out_channels // self.group_out)

    def tiles(self, meta: Mapping[str, Any]) -> int:
        return math.prod(self.tile_grid(meta))

    def steps(self, meta: Mapping[str, Any]) -> int:
        """A tile's reduction loop length: BK-wide blocks of each tap's span."""
        taps = self.kernel_size[0] * (1 if self.merge_rows else self.kernel_size[1])
        return taps * -(-self.span // meta["BK"])


def shared_programs(tiles: int, steps: int, per_sm: int, sms: int) -> int:
    """A shared launch's programs: `per_sm` per SM, fewer where each would take under MIN_STEPS
    of the tiles' steps or a tile would be shared by over MAX_SLOTS (MAX_SLOTS - 1 programs a
    tile take parts of MAX_SLOTS at most)."""
    return max(1, min(per_sm * sms, tiles * steps // MIN_STEPS, tiles * (MAX_SLOTS - 1)))


def interpreter_programs(tiles: int, steps: int) -> int:
    """The interpreter's shared launch: one program more than tiles (so that each program takes
    parts of two), as long as each keeps two steps."""
    return max(1, min(tiles + 1, tiles * steps // 2))


def first_program(step: int, total: int, programs: int) -> int:
    """The program that reduces `step` of `total`, when `programs` divide them in order as the
    kernel does (program p: steps [p total // programs, (p + 1) total // programs))."""
    return ((step + 1) * programs - 1) // total


def slots(tiles: int, steps: int, programs: int) -> int:
    """The most programs that share one tile, when `programs` divide `tiles` tiles of `steps`
    steps: the partials' slots."""
    total = tiles * steps
    return max(first_program((tile + 1) * steps - 1, total, programs)
               - first_program(tile * steps, total, programs) + 1 for tile in range(tiles))


def worth_sharing(tiles: int, steps: int, programs: int, sms: int) -> bool:
    """Whether a launch of `programs` sharing `tiles` tiles of `steps` steps is worth trying: a
    layer of at most MAX_TILES_PER_SM tiles per SM that the programs divide otherwise than one
    tile each, within the kernel's int32 arithmetic."""
    return (tiles <= MAX_TILES_PER_SM * sms and 1 < programs != tiles
            and tiles * steps * programs < _INT32_LIMIT)


@dataclass(frozen=True)
class SharingBuffers:
    partials: torch.Tensor  # int32 [slots, M, K], or [1, 1, 1]: no shared tiles
    counters: torch.Tensor  # int32 zeros [tiles, 2]: a tile's claims and partials stored

    @property
    def slots(self) -> int:
        return self.partials.shape[0]

    @property
    def tiles(self) -> int:
        return self.counters.shape[0]


def sharing_buffers(rows: int, out_channels: int, tile_out: int, group_tiles: int,
                    partial_slots: int, device: torch.device) -> SharingBuffers:
    """The buffers for a GEMM of `rows` x `out_channels` outputs in `group_tiles` groups of tiles
    `tile_out` channels wide: partials of `partial_slots` slots (none for fewer than 2: no tile
    shared) and two counters per tile of the smallest size."""
    if partial_slots < 2:
        partials = torch.empty((1, 1, 1), dtype=torch.int32, device=device)
    else:
        partials = torch.empty((partial_slots, rows, out_channels), dtype=torch.int32,
                               device=device)
    tiles = -(-rows // SMALLEST_TILE) * -(-tile_out // SMALLEST_TILE) * group_tiles
    return SharingBuffers(partials, torch.zeros((tiles, 2), dtype=torch.int32, device=device))


def partials_fit(partial_slots: int, rows: int, out_channels: int) -> bool:
    """Whether partials of `partial_slots` slots take PARTIALS_LIMIT_BYTES at most."""
    return partial_slots * rows * out_channels * 4 <= PARTIALS_LIMIT_BYTES
