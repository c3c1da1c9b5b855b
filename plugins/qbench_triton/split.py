"""Split reductions for the GEMM kernel (see `kernels.conv_gemm_kernel`): SPLIT_K programs share
an output tile where a layer has too few tiles to fill the GPU (ResNet-50's last stages at small
batch: 1568 output rows), each reducing a run of the blocks into int32 partials.

The buffers are made once per launch plan: the partials ([MAX_SPLIT, M, K] int32, or none where
tuning would try no split, or where they would exceed PARTIALS_LIMIT_BYTES: such layers have tiles
enough) and one arrival counter per output tile (zeros; the kernel leaves them zeros). Tuning
tries SPLITS for the configs it keeps (`worth_splitting` prunes); the interpreter, which has no
SMs, splits in INTERPRETER_SPLIT wherever the kernel may, so that the tests check split
reductions on small problems.
QBENCH_TRITON_MAX_SPLIT (read at import) caps the splits: 1 turns split reductions off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

MAX_SPLIT_ENV = "QBENCH_TRITON_MAX_SPLIT"  # e.g. 1: no split reductions (to rule them out)
SPLITS = tuple(splits for splits in (1, 2, 4)
               if splits <= int(os.environ.get(MAX_SPLIT_ENV) or 4))
MAX_SPLIT = max(SPLITS)
PARTIALS_LIMIT_BYTES = 64 * 2**20
MIN_STEPS_PER_SPLIT = 4  # blocks per program, enough for the loads' pipeline to fill
# Splitting stops at this many programs per SM over the whole grid. 3, so that ResNet-50's 3x3 of
# 256 at 14^2 (batch 32) may try its best tile on the H200, 64x128 (196 programs over 132 SMs:
# two on some, one on others), split in 2 (392: three on nearly every SM).
PROGRAMS_PER_SM = 3
INTERPRETER_SPLIT = 2
SMALLEST_TILE = 16  # no config nor the interpreter has a smaller BM or BN: the most tiles


@dataclass(frozen=True)
class SplitBuffers:
    partials: torch.Tensor  # int32 [MAX_SPLIT, M, K], or [1, 1, 1]: no splitting
    arrivals: torch.Tensor  # int32 zeros, one per output tile

    @property
    def max_split(self) -> int:
        return self.partials.shape[0]


def split_buffers(rows: int, out_channels: int, tile_out: int, group_tiles: int, splits: bool,
                  device: torch.device) -> SplitBuffers:
    """The buffers for a GEMM of `rows` x `out_channels` outputs in `group_tiles` groups of tiles
    `tile_out` channels wide. Partials only where the launch `splits` (not with weight zero
    points, whose row sums the kernel does not split; where tuning would try it) and they take
    PARTIALS_LIMIT_BYTES at most."""
    size = MAX_SPLIT * rows * out_channels * 4
    if MAX_SPLIT == 1 or not splits or size > PARTIALS_LIMIT_BYTES:
        partials = torch.empty((1, 1, 1), dtype=torch.int32, device=device)
    else:
        partials = torch.empty((MAX_SPLIT, rows, out_channels), dtype=torch.int32, device=device)
    tiles = -(-rows // SMALLEST_TILE) * -(-tile_out // SMALLEST_TILE) * group_tiles
    return SplitBuffers(partials, torch.zeros(tiles, dtype=torch.int32, device=device))


def reduction_steps(kernel_height: int, kernel_width: int, span: int, block: int,
                    merge_rows: bool) -> int:
    """The GEMM kernel's reduction loop length: BK-wide blocks of each tap's span."""
    taps = kernel_height * (1 if merge_rows else kernel_width)
    return taps * -(-span // block)


def worth_splitting(splits: int, tiles: int, steps: int, sms: int) -> bool:
    """Whether `tiles` output tiles of `steps` blocks each should be split `splits` ways on a GPU
    of `sms` SMs: only while the grid stays within PROGRAMS_PER_SM per SM, each program with
    MIN_STEPS_PER_SPLIT blocks at least."""
    return splits == 1 or (tiles * splits <= PROGRAMS_PER_SM * sms
                           and steps >= MIN_STEPS_PER_SPLIT * splits)


def interpreter_split(steps: int, buffers: SplitBuffers) -> int:
    """The interpreter's split: INTERPRETER_SPLIT where the buffers allow it and each program
    keeps two blocks at least, else 1."""
    if buffers.max_split >= INTERPRETER_SPLIT and steps >= 2 * INTERPRETER_SPLIT:
        return INTERPRETER_SPLIT
    return 1
