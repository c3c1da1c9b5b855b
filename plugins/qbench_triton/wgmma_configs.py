"""Which configs of the Gluon kernels (`qbench_triton.wgmma`) tuning tries on which layers, and
their autotuned launches: the tiles of a tap per pixel (`configs_for`), with split-K on layers of
few tiles (QBENCH_TRITON_SPLIT_K=1: `worth_splitting`), L1 reuse on kernels of several taps
(`reusing`) and persistent programs on layers of many (`worth_persisting`); merged rows' tiles;
the prunes that keep those that fit a problem; and whether a device is a Hopper GPU."""

from __future__ import annotations

import os
from typing import Any

import torch
import triton

from qbench_triton import tuning
from qbench_triton.layout import Layout
from qbench_triton.stream import GemmShape, partials_fit
from qbench_triton.wgmma import conv_gemm_wgmma_kernel, conv_merged_wgmma_kernel


# (BM, BN, BK, warps, STAGES), none spilling registers on sm_90 (`compile_check`; 128x128x128 and
# 128x256 tiles did on 4 warps): up to 128x128 on one warpgroup (2 to 3 programs an SM, but for
# 128x128x64 and 64x256x64 at about 250 registers a thread), the large tiles on two
WGMMA_TILES = [(64, 128, 128, 4, 4), (64, 128, 128, 4, 3), (64, 128, 64, 4, 6),
               (64, 64, 128, 4, 4), (128, 64, 128, 4, 4), (128, 128, 64, 4, 4),
               (64, 256, 64, 4, 4), (64, 64, 64, 4, 6),
               (128, 128, 128, 8, 3), (128, 256, 64, 8, 4), (256, 128, 64, 8, 4),
               (64, 256, 128, 8, 3)]
# merged rows (`conv_merged_wgmma_kernel`): a row a thread, so BM is 32 times the warps; a tap of
# conv1 is 21 lanes, of the padding suite's 3x3 of 30 channels 90, so blocks of 32 waste least
MERGED_TILES = [(128, 64, 32, 4, 3), (128, 64, 32, 4, 4), (128, 128, 32, 4, 3),
                (128, 64, 64, 4, 3), (256, 64, 32, 8, 3), (256, 128, 32, 8, 3)]


# split-K (`conv_gemm_wgmma_kernel`'s SPLIT) for layers of few tiles (`worth_splitting`): the
# deep layers' winning tiles, each over 2 and 3 programs
SPLIT_TILES = [(64, 128, 128, 4, 4), (64, 64, 128, 4, 4), (128, 128, 128, 8, 3)]
SPLITS = (2, 3)
SPLIT_ENV = "QBENCH_TRITON_SPLIT_K"  # 1: tuning tries split-K too (not yet run on a GPU)
# the activations through L1 (`conv_gemm_wgmma_kernel`'s L1_REUSE) for kernels of several taps:
# the tiles that won ResNet-50's 3x3 layers on an H200, and 128x128, which loads the least (each
# split tile is tried with it too)
REUSE_TILES = [(64, 128, 128, 4, 4), (64, 128, 128, 4, 3), (64, 64, 128, 4, 4),
               (64, 64, 64, 4, 6), (128, 128, 128, 8, 3)]
# persistent programs (`conv_gemm_wgmma_kernel`'s PERSIST) for layers of many tiles
# (`worth_persisting`): (BM, BN, BK, warps, STAGES, programs an SM), the tiles that won
# ResNet-50's 1x1 layers on an H200 and 64x64x64 for 64 channels, each with as many programs an
# SM as fit at once on sm_90 (`compile_check` checks their registers and shared memory), so
# that none waits for another to end
PERSISTENT_TILES = [(64, 128, 64, 4, 4, 3), (64, 128, 128, 4, 3, 2), (64, 64, 128, 4, 4, 3),
                    (64, 64, 64, 4, 6, 4), (128, 128, 64, 4, 4, 2), (128, 128, 128, 8, 3, 1)]


def _configs(tiles: list[tuple[int, ...]], **constants: Any) -> list[triton.Config]:
    """triton.Configs of (BM, BN, BK, warps, STAGES) and `constants`."""
    return [triton.Config({"BM": bm, "BN": bn, "BK": bk, "STAGES": stages} | constants,
                          num_warps=warps, num_stages=1) for bm, bn, bk, warps, stages in tiles]


WGMMA_CONFIGS = _configs(WGMMA_TILES, SPLIT=1, L1_REUSE=False, PERSIST=0)
SPLIT_CONFIGS = [config for split in SPLITS for reuse in (False, True)
                 for config in _configs(SPLIT_TILES, SPLIT=split, L1_REUSE=reuse, PERSIST=0)]
REUSE_CONFIGS = _configs(REUSE_TILES, SPLIT=1, L1_REUSE=True, PERSIST=0)
PERSISTENT_CONFIGS = [config for *tile, per_sm in PERSISTENT_TILES
                      for config in _configs([tile], SPLIT=1, L1_REUSE=False, PERSIST=per_sm)]
MERGED_CONFIGS = _configs(MERGED_TILES)
TUNING_KEY = [name for name in tuning.TUNING_KEY if name != "HAS_WZP"]


def splitting() -> bool:
    """Whether tuning tries split-K configs (QBENCH_TRITON_SPLIT_K=1, read at each plan)."""
    return os.environ.get(SPLIT_ENV) == "1"


def worth_splitting(config: triton.Config, shape: GemmShape, sms: int) -> bool:
    """Whether `config` is a program per tile, or a split worth trying on `shape`: a layer of
    fewer tiles than two an SM (ResNet-50's layer3 and layer4 at batch 32: 196 and 100 of 64x128
    on 132 SMs), each part at least STAGES steps long, and the partials within their limit
    (`stream.partials_fit`)."""
    split = config.kwargs["SPLIT"]
    return split == 1 or (shape.tiles(config.kwargs) < 2 * sms
                          and shape.steps(config.kwargs) >= split * config.kwargs["STAGES"]
                          and partials_fit(split, shape.rows, shape.out_channels))


def worth_persisting(config: triton.Config, shape: GemmShape, sms: int) -> bool:
    """Whether `config` is not persistent, or persistent on a layer where each of its programs
    takes two tiles or more (`persistent_programs`)."""
    per_sm = config.kwargs["PERSIST"]
    return not per_sm or shape.tiles(config.kwargs) >= 2 * per_sm * sms


def persistent_programs(config_kwargs: dict[str, Any], shape: GemmShape, sms: int) -> int:
    """A persistent launch's programs: PERSIST an SM, at most one a tile."""
    return min(shape.tiles(config_kwargs), config_kwargs["PERSIST"] * sms)


def split_slots(shape: GemmShape, sms: int) -> int:
    """The partials' slots for the split configs that tuning a tap per pixel would try on
    `shape` (0 for none; SPLIT_CONFIGS if `splitting`): the plan makes them only then."""
    if not splitting():
        return 0
    return max((config.kwargs["SPLIT"]
                for config in dividing(SPLIT_CONFIGS, shape.span, shape.group_out)
                if worth_splitting(config, shape, sms)), default=0)


def configs_for(mapping: Layout, has_weight_zero_points: bool,
                kernel_size: tuple[int, int]) -> list[triton.Config]:
    """The configs of the kernel for `mapping` (`tuner`) that can do a conv on a Hopper GPU:
    none for the direct kernel, weight zero points, or over 32 taps of a pixel; those whose
    blocks divide a tap (`dividing`: a merged row's tap stride, a pixel's span) and whose BN
    divides a tile group's output channels; L1 reuse for several taps (`reusing`)."""
    if mapping.kernel != "gemm" or has_weight_zero_points:
        return []
    if mapping.merge_rows:
        return dividing(MERGED_CONFIGS, mapping.tap_stride, mapping.tile_out)
    taps = kernel_size[0] * kernel_size[1]
    if taps > 32:
        return []
    candidates = (WGMMA_CONFIGS + (SPLIT_CONFIGS if splitting() else []) + REUSE_CONFIGS
                  + PERSISTENT_CONFIGS)
    return [config for config in dividing(candidates, mapping.span, mapping.tile_out)
            if reusing(config, taps)]


def reusing(config: triton.Config, taps: int) -> bool:
    """Whether `config` is worth trying on a kernel of `taps` taps: without L1 reuse always;
    with it (REUSE_CONFIGS) for several taps, whose loads overlap (a 1x1 conv's do not)."""
    return not config.kwargs["L1_REUSE"] or taps > 1


def tuner(mapping: Layout) -> Any:
    """The autotuned kernel for `mapping`: merged rows' or a tap per pixel's."""
    return conv_merged_wgmma_tuned if mapping.merge_rows else conv_gemm_wgmma_tuned


def hopper(device: torch.device) -> bool:
    """Whether `device` is a Hopper GPU (compute capability 9.x), where wgmma runs."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9


def dividing(configs: list[triton.Config], lanes: int, group_out: int) -> list[triton.Config]:
    """The configs whose BK divides `lanes` and BN a tile group's output channels."""
    return [config for config in configs
            if lanes % config.kwargs["BK"] == 0 and group_out % config.kwargs["BN"] == 0]


def _fitting_configs(configs: list[triton.Config], named_args: dict[str, Any],
                     **kwargs: Any) -> list[triton.Config]:
    """The autotuner's prune for a tap per pixel: the configs whose blocks divide a tap's
    channels (`dividing`) that fit the problem's rows (`tuning._fitting`), L1 reuse for several
    taps (`reusing`), and the splits and persistent programs worth trying (`_worth_launching`)."""
    shape = GemmShape(named_args["M"], named_args["KG"], named_args["K"], named_args["SPAN"],
                      (kwargs["R"], kwargs["S"]), False)
    fitting = tuning._fitting(dividing(configs, shape.span, shape.group_out), {"BM": shape.rows})
    slots = named_args["partial_ptr"].shape[0]
    return [config for config in fitting if reusing(config, kwargs["R"] * kwargs["S"])
            and _worth_launching(config, shape, slots)]


def _worth_launching(config: triton.Config, shape: GemmShape, slots: int) -> bool:
    """Whether `config` is a program per tile, or a split worth trying on `shape`
    (`worth_splitting`) that the partials have `slots` for (none without
    QBENCH_TRITON_SPLIT_K=1: `split_slots`), or persistent programs worth trying
    (`worth_persisting`), on this GPU's SMs."""
    split, per_sm = config.kwargs["SPLIT"], config.kwargs["PERSIST"]
    if split == 1 and not per_sm:
        return True
    if split > 1:
        return split <= slots and worth_splitting(config, shape, tuning._sm_count())
    return worth_persisting(config, shape, tuning._sm_count())


def _fitting_merged_configs(configs: list[triton.Config], named_args: dict[str, Any],
                            **kwargs: Any) -> list[triton.Config]:
    """The autotuner's prune for merged rows: blocks that divide a tap's stride."""
    return tuning._fitting(dividing(configs, named_args["WSTRIDE"], named_args["KG"]),
                           {"BM": named_args["M"]})


conv_gemm_wgmma_tuned = triton.autotune(
    configs=WGMMA_CONFIGS + SPLIT_CONFIGS + REUSE_CONFIGS + PERSISTENT_CONFIGS, key=TUNING_KEY,
    do_bench=tuning._tuning_bench,
    prune_configs_by={"early_config_prune": _fitting_configs})(conv_gemm_wgmma_kernel)
conv_merged_wgmma_tuned = triton.autotune(
    configs=MERGED_CONFIGS, key=TUNING_KEY, do_bench=tuning._tuning_bench,
    prune_configs_by={"early_config_prune": _fitting_merged_configs})(conv_merged_wgmma_kernel)
