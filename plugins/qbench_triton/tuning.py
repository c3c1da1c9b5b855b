"""The tuning of the Triton kernels (`kernels`): the GEMM and direct kernels' configs, which of
them a problem tries (`tuning_candidates`: tiles that fit it, stream-K's shared launches where
worth it), their autotuned launches (`conv_gemm_tuned`, `conv_direct_tuned`), and what every
tuner of this backend shares, the Gluon kernels' too (`wgmma_configs`): candidates timed as the
other backends time theirs (`_tuning_bench`), compiled all at once (`compile_candidates`), and
the GPU's SM count."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import triton

from qbench.timing import tuning_times_ms
from qbench_triton.kernels import HEAVY_TILE_LIMIT, conv_direct_kernel, conv_gemm_kernel
from qbench_triton.stream import (PER_SM_CHOICES, GemmShape, partials_fit, shared_programs, slots,
                                  worth_sharing)


# BK of 128 and 256 amortise Triton's wait after every int8 wgmma (it keeps no int32-accumulating
# dot in flight) over more tensor-core work. 128x256 and 256x128 tiles do the most multiply-adds
# per byte loaded from L2 (BM*BN/(BM+BN): 85, against 43 for 64x128), where an H100 needs about
# 170 to keep its tensor cores busy (4,096 int8 multiply-adds per SM and cycle over roughly 24
# bytes from L2, at ~5.5 TB/s: an estimate, not measured here); they fit in registers with the
# epilogue in quarters.
# On an H200 64x128x128 tiles won ResNet-50's 3x3 layers of 128 and 256 channels and 64x128x256
# on 8 warps those of 512 (results/h200-2026-11-27-6dbf4bd/triton-tuning.jsonl): their neighbours
# with 4 stages, on 4 warps, and 64 channels wide are candidates too.
# Tuned cold (`qbench.timing.tuning_times_ms`), the deep layers' weights come from memory: their
# tiles with more stages are candidates too.
# Layers of few output channels (MobileNet's pointwise 16 to 32, ResNeXt's groups) take 32-wide
# tiles; 256 rows a program give each its latency (loads in, terms, stores out) over more work.
# Layers of a narrow reduction and more output channels (MobileNet's 1x1 of 16 to 32 channels to
# 96 to 192) have BK-32 tiles 128 and 256 wide too: on the H200 a 64-wide tile took 0.58 times
# as long as a 32-wide one on 24 -> 144 at 56^2 (47.8 against 82.3 us, 50e7c51), and no wider
# tile of BK 32 was a candidate. Rows of 144 bytes start at every 16th byte, so that a tile
# narrower than the layer writes parts of 32-byte sectors, which a tile of another program
# completes later: 32x256 takes a row whole, its 32 rows one span of whole sectors (sm_90, a 1x1
# without padding: mma.sync, 120 registers on 4 warps, 4 programs an SM; 64x128x32 96 registers
# on 4 warps, 5; 128x128x32 128 on 8, 2). BK-32 tiles only where blocks of 64 do not divide a
# tap (`_blocks_worth_trying`).
# Each tile config, and with stream-K on (`stream.ENABLED`) each shared by PER_SM_CHOICES programs
# per SM as well (`stream.worth_sharing` prunes them), so that the large tiles' few programs no
# longer leave SMs idle (on the H200, alone, 128x256 tiles reduced at 2.9 TMAC/s an SM, 64x128 at
# 2.0-2.1; shared, they ran longer all the same).
# Not with merged rows over HEAVY_TILE_LIMIT elements: their per-byte bounds checks spilled
# registers for 128x256 tiles.
GEMM_TILES = [(128, 128, 64, 8, 3), (128, 64, 64, 4, 4), (64, 128, 64, 4, 4), (64, 64, 64, 4, 4),
              (128, 128, 128, 8, 3), (64, 128, 128, 4, 3), (128, 64, 128, 4, 3),
              (64, 128, 256, 8, 3), (128, 64, 32, 4, 4), (64, 64, 32, 4, 4), (32, 64, 64, 4, 4),
              (128, 32, 32, 4, 4), (128, 256, 64, 8, 3), (256, 128, 64, 8, 3),
              (256, 32, 32, 4, 4), (256, 32, 64, 4, 3), (128, 32, 64, 4, 4), (256, 64, 64, 8, 3),
              (64, 128, 128, 4, 4), (64, 128, 256, 4, 3), (64, 64, 128, 4, 3),
              (128, 256, 128, 8, 3), (64, 64, 128, 4, 4), (64, 64, 128, 4, 5),
              (64, 128, 128, 4, 5), (64, 128, 256, 8, 4), (64, 128, 32, 4, 4),
              (128, 128, 32, 8, 3), (32, 256, 32, 4, 4)]


def _gemm_config(bm: int, bn: int, bk: int, warps: int, stages: int,
                 per_sm: int = 0) -> triton.Config:
    """A GEMM tuning config: a program per tile, or with `per_sm` a shared launch."""
    return triton.Config({"BM": bm, "BN": bn, "BK": bk, "SHARED": per_sm > 0,
                          "PROGRAMS_PER_SM": per_sm}, num_warps=warps, num_stages=stages)


GEMM_CONFIGS = [_gemm_config(*tile, per_sm) for per_sm in (0, *PER_SM_CHOICES)
                for tile in GEMM_TILES]
# the direct kernel's tiles, each with its taps a loop and unrolled (`conv_direct_kernel`)
DIRECT_CONFIGS = [
    triton.Config({"BM": bm, "BN": bn, "UNROLL_TAPS": unroll}, num_warps=warps)
    for bm, bn, warps in [(32, 32, 4), (64, 32, 4), (32, 64, 4), (64, 64, 4), (128, 32, 4),
                          (128, 64, 8)]
    for unroll in (False, True)
]
TUNING_RUNS = 20
TUNING_KEY = ["M", "H", "W", "OH", "OW", "C", "K", "CG", "KG", "R", "S", "SH", "SW", "PH", "PW",
              "DH", "DW", "X_UNSIGNED", "HAS_WZP", "BORDER"]
DIRECT_TUNING_KEY = [name for name in TUNING_KEY if name != "BORDER"]  # it has no border table


def _fits(config: triton.Config, limits: dict[str, int]) -> bool:
    """No tile side over twice what the problem has along it (at least 32)."""
    return all(config.kwargs[name] <= max(32, triton.next_power_of_2(size))
               for name, size in limits.items())


def _fitting(configs: list[triton.Config], limits: dict[str, int]) -> list[triton.Config]:
    """The configs that fit the problem, or the smallest one if none does: tuning a 64-channel
    layer with 256-wide tiles, or a test's tiny problem with every config, only costs compiles."""
    fitting = [config for config in configs if _fits(config, limits)]
    return fitting or [min(configs, key=lambda config: sum(config.kwargs.values()))]


def _fitting_gemm_configs(configs, named_args, **kwargs):
    """The autotuner's prune: `tuning_candidates` for the launch's problem and partials."""
    shape = GemmShape(named_args["M"], named_args["KG"], named_args["K"], named_args["SPAN"],
                      (kwargs["R"], kwargs["S"]), kwargs["MERGE_S"])
    return tuning_candidates(configs, shape, named_args["partial_ptr"].shape[0])


def tuning_candidates(configs: list[triton.Config], shape: GemmShape,
                      partial_slots: int) -> list[triton.Config]:
    """The configs of a program per tile that fit the GEMM (`_fitting`; with merged rows none
    over HEAVY_TILE_LIMIT), and the shared configs of their tiles that are worth trying
    (`_shared_slots`) and need at most `partial_slots` slots, one for each number of programs."""
    whole = [config for config in configs if not config.kwargs["SHARED"] and not (
        shape.merge_rows and config.kwargs["BM"] * config.kwargs["BN"] > HEAVY_TILE_LIMIT)
        and _blocks_worth_trying(config.kwargs["BK"], shape.span)]
    fitting = _fitting(whole, {"BM": shape.rows, "BN": shape.group_out, "BK": shape.span})
    if partial_slots < 2:
        return fitting
    tiles = {_tile(config) for config in fitting}
    sms = _sm_count()
    shared, launches = [], set()
    for config in configs:
        if config.kwargs["SHARED"] and _tile(config) in tiles \
                and 2 <= _shared_slots(shape, config, sms) <= partial_slots:
            launch = (_tile(config), _programs(shape, config, sms))
            if launch not in launches:
                launches.add(launch)
                shared.append(config)
    return fitting + shared


def _blocks_worth_trying(bk: int, span: int) -> bool:
    """Whether reduction blocks of `bk` lanes are worth trying on taps of `span` lanes: all but
    blocks of 32 where blocks of 64 divide the span. On the H200 (218 tunings of such layers in
    five runs under results/) a BK-32 tile won once, by 1 % (MobileNetV2's 192 -> 32 at 28^2,
    1.10 times the best in the other two runs), and otherwise took 1.01 to 2.1 times the best;
    where blocks of 64 do not divide the span (narrow channels, merged rows, spans of 96, 144 or
    160) BK-32 tiles won 107 of 113."""
    return bk != 32 or span % 64 != 0


def _programs(shape: GemmShape, config: triton.Config, sms: int) -> int:
    return shared_programs(shape.tiles(config.kwargs), shape.steps(config.kwargs),
                           config.kwargs["PROGRAMS_PER_SM"], sms)


def _shared_slots(shape: GemmShape, config: triton.Config, sms: int) -> int:
    """The partials' slots that a shared config needs on `sms` SMs, or 0 if it is not worth
    trying (`stream.worth_sharing`) or its partials would exceed the limit."""
    tiles, steps = shape.tiles(config.kwargs), shape.steps(config.kwargs)
    programs = _programs(shape, config, sms)
    if not worth_sharing(tiles, steps, programs, sms):
        return 0
    needed = slots(tiles, steps, programs)
    return needed if partials_fit(needed, shape.rows, shape.out_channels) else 0


def sharing_slots(shape: GemmShape) -> int:
    """The partials' slots for the shared configs that tuning the GEMM would try (0 if none): the
    plan makes them only then."""
    sms = _sm_count()
    candidates = tuning_candidates(GEMM_CONFIGS, shape, _UNBOUNDED_SLOTS)
    return max((_shared_slots(shape, config, sms) for config in candidates
                if config.kwargs["SHARED"]), default=0)


_UNBOUNDED_SLOTS = 2**31  # `sharing_slots` asks which shared configs are worth trying at all


def _sm_count() -> int:
    return torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count


def _tile(config: triton.Config) -> tuple[int, ...]:
    return (config.kwargs["BM"], config.kwargs["BN"], config.kwargs["BK"], config.num_warps,
            config.num_stages)


def _fitting_direct_configs(configs, named_args, **kwargs):
    return _fitting(configs, {"BM": named_args["M"], "BN": named_args["K"]})


def _tuning_bench(fn, quantiles: tuple[float, ...]) -> list[float]:
    """The autotuner's measure of one config: the `quantiles` of 20 runs timed as the cuDNN and
    CuPy backends time their candidates (`qbench.timing.tuning_times_ms`: the host's launch path
    held out; `triton.testing.do_bench` leaves it in, so that on small layers it may choose by
    the host's noise)."""
    times = tuning_times_ms(fn, TUNING_RUNS, torch.device("cuda", torch.cuda.current_device()))
    return [float(np.quantile(times, q)) for q in quantiles]


def compile_candidates(tuner: Any, grid: Any, *args: Any, **constants: Any) -> None:
    """Compile every config that `tuner` (an autotuner of this backend: here or in `wgmma_configs`)
    would time for a launch with these arguments, all at once on a thread per CPU core (Triton's
    AsyncCompileMode), so that its first launch finds them compiled: Triton's autotuner compiles
    one config at a time, and the compiles are most of a first call (its passes and ptxas
    release the GIL: 8 configs compiled 1.9x as fast on 2 cores as one after another, to the
    same cubins). A config that fails to compile is left to the autotuner, which times it as
    infinitely slow; should the precompiling itself fail, a warning says so and the autotuner
    compiles as it would anyway."""
    try:
        with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool, \
                triton.AsyncCompileMode(pool, ignore_errors=True):
            tuner.warmup(*args, grid=grid, **constants)
    except Exception as exc:
        warnings.warn(f"qbench_triton: compiling the tuning candidates at once failed "
                      f"({type(exc).__name__}: {exc}); the autotuner compiles them one at a "
                      "time", RuntimeWarning, stacklevel=2)


# Whether a config's tiles divide the problem (EVEN_N: a group's output channels by BN; EVEN_SPAN:
# a tap's channels by BK), so that the GEMM kernel loads without those bounds checks
# (`compile_check`, sm_90: 8 to 18 % fewer instructions a step, 182 instead of 221 for 64x128x128
# on 4 warps). Every ResNet-50 layer's do but conv1's merged rows.
GEMM_EVENNESS = {"EVEN_N": lambda args: args["KG"] % args["BN"] == 0,
                 "EVEN_SPAN": lambda args: args["SPAN"] % args["BK"] == 0}
conv_gemm = triton.heuristics(GEMM_EVENNESS)(conv_gemm_kernel)  # for any BM, BN, BK
conv_gemm_tuned = triton.autotune(
    configs=GEMM_CONFIGS, key=TUNING_KEY, do_bench=_tuning_bench,
    prune_configs_by={"early_config_prune": _fitting_gemm_configs})(conv_gemm)
conv_direct_tuned = triton.autotune(
    configs=DIRECT_CONFIGS, key=DIRECT_TUNING_KEY, do_bench=_tuning_bench,
    prune_configs_by={"early_config_prune": _fitting_direct_configs})(conv_direct_kernel)
