"""The `triton` backend: the whole quantized conv in one Triton kernel (see `kernels.py`).

On a CUDA GPU, kernels are autotuned over tile sizes, warps and stages per problem shape (the
tuned choice is cached in the process; tuning is part of the first call). With TRITON_INTERPRET=1
and no GPU, the same kernels run in Triton's interpreter on CPU tensors, one fixed small tile
size: for checking numerics without a GPU, never for timing (the backend says so in its info).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from qbench import (BackendInfo, ConvParams, ConvProblem, QuantizedActivation, QuantizedWeight,
                    Verdict, hookimpl)
from qbench.backends import installed_version
from qbench.problem import dtype_range, int32_limits
from qbench.quantized import nhwc_view
from qbench.reference import requantization_terms, window_weight_sums
from qbench_triton.layout import Layout, layout
from qbench_triton import stream
from qbench_triton.stream import (GemmShape, SharingBuffers, shared_programs, sharing_buffers,
                                  slots)

NAME = "triton"
TUNING_LOG_ENV = "QBENCH_TRITON_TUNING_LOG"  # a file: each tuning's timings, a JSON line a shape
WGMMA_ENV = "QBENCH_TRITON_WGMMA"  # 0: tuning leaves out the Gluon kernels of `wgmma` (Hopper)
_INTERPRETER_TILES = {"BM": 16, "BN": 16, "BK": 16}
_INTERPRETER_DIRECT = {"UNROLL_TAPS": False}  # the direct kernel's other constant there


def interpreting() -> bool:
    """Whether Triton runs its interpreter (TRITON_INTERPRET=1) instead of compiling."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@hookimpl
def qbench_backends() -> list[BackendInfo]:
    version = installed_version("triton")
    if interpreting():
        return [BackendInfo(NAME, "cpu", version, channels_last=True, default=False,
                            interpreted=True, description="Triton int8 implicit-GEMM conv, "
                            "in Triton's interpreter on the CPU (numerics only, not timed)")]
    return [BackendInfo(NAME, "cuda", version, channels_last=True,
                        description="Triton int8 implicit-GEMM conv, requantization fused")]


@hookimpl
def qbench_availability(backend: str) -> Verdict | None:
    if backend != NAME:
        return None
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return Verdict.no(f"triton is not installed (pip install 'qbench[triton]'): {exc}")
    if not interpreting() and not torch.cuda.is_available():
        return Verdict.no("no CUDA device visible to PyTorch; set TRITON_INTERPRET=1 to run the "
                          "kernels in Triton's interpreter on the CPU (numerics only)")
    return Verdict.yes()


@hookimpl
def qbench_supports(backend: str, problem: ConvProblem) -> Verdict | None:
    if backend != NAME:
        return None
    reason = int32_limits(problem)
    return Verdict.no(reason) if reason else Verdict.yes()


@dataclass(frozen=True)
class _Plan:
    """Everything of a launch but the activation, weight and output pointers."""

    kernel: Any  # an autotuner until its first launch has chosen, then the chosen kernel itself
    grid: Any  # a tuple, or for an autotuner a function of the config's tile sizes
    tail: tuple[Any, ...]  # the arguments after the output pointer
    constants: dict[str, Any]
    config: Any = None  # the autotuner's choice, once it has made it
    tuning: dict[Any, Any] | None = None  # {config: [median ms, ...]} if this plan's launch tuned

    def launch(self, x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> _Plan:
        """Launch, and return the plan for the next launches: after an autotuner's first launch
        (which tunes), its chosen config launched directly, without the autotuner's host work
        per call (a key built over every argument)."""
        if self.config is not None:  # tuned already: the chosen kernel itself
            self.kernel[self.grid](x, weight, out, *self.tail, **self.constants)
            return self
        earlier_tuning = getattr(self.kernel, "configs_timings", None)
        self.kernel[self.grid](x, weight, out, *self.tail, **self.constants)
        config = getattr(self.kernel, "best_config", None)
        if config is None:
            return self
        tuning = getattr(self.kernel, "configs_timings", None)
        meta = config.all_kwargs()
        return _Plan(self.kernel.fn, self.grid(meta), self.tail, self.constants | meta, config,
                     tuning if tuning is not earlier_tuning else None)

    def tuning_medians_us(self) -> dict[str, float]:
        """Each config that this plan's tuning timed (`_config_label`) and its median µs, fastest
        first; empty where an earlier plan of the same tuning key tuned (the autotuner's cache)."""
        ranked = sorted((self.tuning or {}).items(), key=lambda item: item[1])
        return {_config_label(config): times[0] * 1000 for config, times in ranked}

    def tuning_facts(self) -> dict[str, Any]:
        """How many configs tuning timed and how far behind the best the runner-up came."""
        medians = list(self.tuning_medians_us().items())
        facts: dict[str, Any] = {"candidates": len(medians)} if medians else {}
        if len(medians) > 1:
            (_, best), (second, second_time) = medians[:2]
            facts["runner_up"] = f"{second} +{second_time / best - 1:.0%}"
        return facts


@dataclass(frozen=True)
class _Choice:
    """Two kernels' autotuned plans for one launch (`kernels.conv_gemm_kernel` and a Gluon
    kernel of `wgmma`), of which the first launch keeps the faster."""

    plans: tuple[_Plan, ...]

    def launch(self, x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> _Plan:
        """Tune each plan in a launch, time their choices as the cuDNN and CuPy backends time
        their candidates (`qbench.timing.tuning_median_ms`), launch the faster once more, so
        that the output is its own, and return it with both tunings' timings."""
        from qbench.timing import tuning_median_ms
        from qbench_triton import tuning

        tuned = [plan.launch(x, weight, out) for plan in self.plans]
        medians = [tuning_median_ms(lambda plan=plan: plan.launch(x, weight, out),
                                    tuning.TUNING_RUNS, x.device) for plan in tuned]
        faster = tuned[medians.index(min(medians))]
        faster.launch(x, weight, out)
        timings = {config: times for plan in tuned for config, times in (plan.tuning or {}).items()}
        return replace(faster, tuning=timings or None)


def _config_label(config: Any) -> str:
    """A config as BMxBNxBK/warps/stages (BMxBN/... for the direct kernel, then /unrolled for
    its taps unrolled), /streamN for a shared launch of N programs per SM, /wgmma for the Gluon
    kernels' (`wgmma`; its STAGES), then /splitN for N programs per tile, /l1 for the
    activations through L1 or /persistN for N persistent programs an SM."""
    tiles = "x".join(str(config.kwargs[key]) for key in ("BM", "BN", "BK") if key in config.kwargs)
    if "STAGES" in config.kwargs:
        split = config.kwargs.get("SPLIT", 1)
        return (f"{tiles}/{config.num_warps}w/{config.kwargs['STAGES']}s/wgmma"
                + (f"/split{split}" if split > 1 else "")
                + ("/l1" if config.kwargs.get("L1_REUSE") else "")
                + (f"/persist{config.kwargs['PERSIST']}" if config.kwargs.get("PERSIST") else ""))
    label = f"{tiles}/{config.num_warps}w/{config.num_stages}s"
    if config.kwargs.get("UNROLL_TAPS"):
        label += "/unrolled"
    return label + (f"/stream{config.kwargs['PROGRAMS_PER_SM']}" if config.kwargs.get("SHARED")
                    else "")


@dataclass
class _Packed:
    """The kernel and weights (`layout`), the weights less their zero points for the compensation
    tables, their zero points, and the geometry; launch plans are cached per (shapes,
    quantization, ReLU)."""

    layout: Layout
    centered_weight: torch.Tensor  # w - zw[k], (K, C/groups, R, S) int64 on the CPU
    weight_zero_points: torch.Tensor
    has_weight_zero_points: bool
    weight_scales: torch.Tensor
    bias: torch.Tensor | None
    params: ConvParams
    kernel_size: tuple[int, int]
    plans: dict[tuple[Any, ...], _Plan] = field(default_factory=dict)
    last: _Plan | None = None

    def requantization(self, x_scale: float, out_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(f32(bias / aw), f32(aw / out_scale)) per output channel, as the reference computes."""
        bias, multiplier = requantization_terms(x_scale, self.weight_scales, self.bias, out_scale)
        device = self.layout.weight.device
        return bias.to(device).contiguous(), multiplier.to(device).contiguous()


@hookimpl
def qbench_prepack(backend: str, weight: QuantizedWeight, bias: torch.Tensor | None,
                   params: ConvParams) -> Any:
    if backend != NAME:
        return None
    zero_points = weight.zero_points.to(device=weight.data.device, dtype=torch.int32)
    has_zero_points = bool(zero_points.any())
    centered = weight.data.cpu().to(torch.int64) - zero_points.cpu().to(torch.int64).view(-1, 1,
                                                                                         1, 1)
    return _Packed(layout(weight.data, params, has_zero_points), centered, zero_points,
                   has_zero_points, weight.scales.cpu(), bias, params,
                   tuple(weight.data.shape[2:]))


@hookimpl
def qbench_prepare_input(backend: str, input: QuantizedActivation) -> Any:
    if backend != NAME:
        return None
    return (nhwc_view(input.data), input)


def _plan(packed: _Packed, x: torch.Tensor, activation: QuantizedActivation,
          out: torch.Tensor, output: QuantizedActivation, relu: bool) -> _Plan | _Choice:
    """The launch of `packed` on NHWC `x` into NHWC `out`: the kernel's arguments after the three
    tensors, its constants and grid; autotuned on a GPU (its candidates compiled already), the
    interpreter's fixed tiles (shared by its programs where the kernel may) without one. Where
    the Gluon kernels are on (unless QBENCH_TRITON_WGMMA=0) and one can do the launch
    (`wgmma_configs.configs_for`), its tuned plan beside the GEMM's, the faster kept (`_Choice`)."""
    from qbench_triton import kernels, tuning

    n, h, w, c = x.shape
    _, oh, ow, k = out.shape
    bias, multiplier = packed.requantization(activation.scale, output.scale)
    lo, hi = dtype_range(output.dtype)
    unsigned = activation.dtype == "quint8"
    p = packed.params
    mapping = packed.layout
    direct = mapping.kernel == "direct"
    m = n * oh * ow
    x_zero_point = activation.zero_point - 128 if unsigned else activation.zero_point
    # the direct kernel's lanes outside the image hold the zero point: no border table
    outside = x_zero_point if direct else kernels.outside_value(unsigned,
                                                                packed.has_weight_zero_points)
    border = x_zero_point != outside and p.padding != (0, 0)
    group_tiles = p.groups // mapping.groups_per_tile
    pointers = (_compensation(packed, x_zero_point, outside, border, h, w).to(x.device),
                packed.weight_zero_points, bias, multiplier)
    geometry = (m, h, w, oh, ow, c, k, mapping.tile_in, mapping.tile_out, *p.stride, *p.padding,
                *p.dilation)
    output_range = (float(output.zero_point), float(output.zero_point if relu else lo),
                    float(hi))
    sizes = geometry + output_range
    constants = dict(R=packed.kernel_size[0], S=packed.kernel_size[1], X_UNSIGNED=unsigned,
                     HAS_WZP=packed.has_weight_zero_points)
    if direct:
        tail = pointers + geometry + (x_zero_point,) + output_range
        fixed = {"BM": _INTERPRETER_TILES["BM"], "BN": _INTERPRETER_TILES["BN"],
                 **_INTERPRETER_DIRECT}

        def grid(meta: dict[str, int]) -> tuple[int, ...]:
            return (-(-m // meta["BM"]), -(-k // meta["BN"]))
    else:
        constants |= dict(BORDER=border, MERGE_S=mapping.merge_rows)
        shape = GemmShape(m, mapping.tile_out, k, mapping.span, packed.kernel_size,
                          mapping.merge_rows)
        sharing = not packed.has_weight_zero_points  # the row sums are not shared
        if interpreting():
            fixed = _INTERPRETER_TILES | _interpreter_sharing(shape, sharing)
            partial_slots = fixed.pop("slots")
        else:
            partial_slots = tuning.sharing_slots(shape) if sharing else 0
        buffers = sharing_buffers(m, k, mapping.tile_out, group_tiles, partial_slots, x.device)
        tail = (pointers + (buffers.partials, buffers.counters, mapping.span, mapping.tap_stride)
                + sizes)
        grid = _gemm_grid(shape, buffers,
                          _interpreter_programs if interpreting() else _per_sm_programs)

    if interpreting():
        kernel = kernels.conv_direct_kernel if direct else tuning.conv_gemm
        return _Plan(kernel, grid(fixed), tail, constants | fixed)
    kernel = tuning.conv_direct_tuned if direct else tuning.conv_gemm_tuned
    tuning.compile_candidates(kernel, grid, x, packed.layout.weight, out, *tail, **constants)
    plan = _Plan(kernel, grid, tail, constants)
    if direct or os.environ.get(WGMMA_ENV) == "0":
        return plan
    return _with_wgmma(plan, packed, x, out, pointers, sizes, constants, shape)


def _with_wgmma(plan: _Plan, packed: _Packed, x: torch.Tensor, out: torch.Tensor,
                pointers: tuple[torch.Tensor, ...], sizes: tuple[Any, ...],
                constants: dict[str, Any], shape: GemmShape) -> _Plan | _Choice:
    """The GEMM's `plan` and a Gluon kernel's beside it (`_Choice`: `wgmma_configs.tuner`, a tap
    per pixel's or merged rows'), its candidates compiled, where one can do the launch
    (`wgmma_configs.hopper`, `wgmma_configs.configs_for`); else `plan`. `pointers`, `sizes` and
    `constants` as `_plan` passes them to the GEMM kernel (the Gluon kernels take no weight zero
    points); a program per tile of `shape`, or with split-K several (`wgmma_configs.split_slots`
    sizes their partials)."""
    from qbench_triton import tuning, wgmma_configs

    mapping = packed.layout
    if not (wgmma_configs.hopper(x.device) and wgmma_configs.configs_for(
            mapping, packed.has_weight_zero_points, packed.kernel_size)):
        return plan
    pointers = (pointers[0], *pointers[2:])
    if not mapping.merge_rows:  # split-K's partials and counters (`wgmma_configs.split_slots`)
        slots = wgmma_configs.split_slots(shape, tuning._sm_count())
        buffers = sharing_buffers(shape.rows, shape.out_channels, mapping.tile_out,
                                  shape.out_channels // mapping.tile_out, slots, x.device)
        pointers += (buffers.partials, buffers.counters)
    tail = pointers + (mapping.span, mapping.tap_stride) + sizes
    own = {name: constants[name] for name in ("R", "S", "X_UNSIGNED", "BORDER")}
    tuner = wgmma_configs.tuner(mapping)

    def grid(meta: dict[str, Any]) -> tuple[int, ...]:
        """A program per tile, SPLIT per tile (split-K) or PERSIST an SM
        (`wgmma_configs.persistent_programs`)."""
        if meta.get("PERSIST"):
            return (wgmma_configs.persistent_programs(meta, shape, tuning._sm_count()),)
        rows, columns, groups = shape.tile_grid(meta)
        return rows, columns, groups * meta.get("SPLIT", 1)

    tuning.compile_candidates(tuner, grid, x, mapping.weight, out, *tail, **own)
    return _Choice((plan, _Plan(tuner, grid, tail, own)))


def _gemm_grid(shape: GemmShape, buffers: SharingBuffers,
               shared_launch: Callable[[int, int, int], int],
               ) -> Callable[[dict[str, Any]], tuple[int, ...]]:
    """The GEMM kernel's grid for a config: a program per tile (`GemmShape.tile_grid`), or for a
    shared config (`qbench_triton.stream`) `shared_launch(tiles, steps, programs per SM)`
    programs; a ValueError for a shared launch the buffers were not made for."""
    def grid(meta: dict[str, Any]) -> tuple[int, ...]:
        if not meta["SHARED"]:
            return shape.tile_grid(meta)
        tiles, steps = shape.tiles(meta), shape.steps(meta)
        programs = shared_launch(tiles, steps, meta["PROGRAMS_PER_SM"])
        needed = slots(tiles, steps, programs)
        if needed > buffers.slots or tiles > buffers.tiles:
            raise ValueError(f"{programs} programs sharing {tiles} tiles need {needed} slots, "
                             f"where the buffers hold {buffers.slots} slots and "
                             f"{buffers.tiles} tiles")
        return (programs, 1, 1)

    return grid


def _per_sm_programs(tiles: int, steps: int, per_sm: int) -> int:
    """A shared launch's programs on this GPU (`stream.shared_programs`)."""
    from qbench_triton import tuning

    return shared_programs(tiles, steps, per_sm, tuning._sm_count())


def _interpreter_programs(tiles: int, steps: int, per_sm: int) -> int:
    """The interpreter's shared launch (`stream.interpreter_programs`): it has no SMs, so
    `per_sm` does not count."""
    return stream.interpreter_programs(tiles, steps)


def _interpreter_sharing(shape: GemmShape, sharing: bool) -> dict[str, Any]:
    """The interpreter's launch of its fixed tiles: with stream-K on (`stream.ENABLED`), shared
    where the kernel may share tiles and the interpreter's programs would, with the partials'
    slots that takes (`slots`)."""
    tiles, steps = shape.tiles(_INTERPRETER_TILES), shape.steps(_INTERPRETER_TILES)
    programs = stream.interpreter_programs(tiles, steps)
    if not (stream.ENABLED and sharing) or programs == tiles:
        return {"SHARED": False, "PROGRAMS_PER_SM": 0, "slots": 0}
    return {"SHARED": True, "PROGRAMS_PER_SM": 1, "slots": slots(tiles, steps, programs)}


def _compensation(packed: _Packed, x_zero_point: int, outside: int, border: bool, height: int,
                  width: int) -> torch.Tensor:
    """What the kernels subtract from their sums besides the weight zero points' term, int32:
    zx * sum (w - zw[k]) over the taps inside the image, plus `outside` (the value the kernel's
    lanes outside the image hold) * sum (w - zw[k]) over the taps outside it, which the kernel
    summed; [OH * OW, K] where padding makes it vary over the image (`border`), else [K]."""
    total = packed.centered_weight.sum(dim=(1, 2, 3))
    if not border:  # no tap outside the image, or outside lanes hold zx: the same everywhere
        return (x_zero_point * total).to(torch.int32).contiguous()
    inside = window_weight_sums(packed.centered_weight, packed.params, height, width)
    inside = inside.permute(1, 2, 0).reshape(-1, inside.shape[0])
    table = x_zero_point * inside + outside * (total - inside)
    return table.to(torch.int32).contiguous()


def _launch(packed: _Packed, prepared: Any, output: QuantizedActivation, relu: bool) -> None:
    x, activation = prepared
    out = nhwc_view(output.data)
    key = (x.shape, x.device, activation.scale, activation.zero_point, activation.dtype,
           out.shape, output.scale, output.zero_point, output.dtype, relu)
    plan = packed.plans.get(key) or _plan(packed, x, activation, out, output, relu)
    launched = plan.launch(x, packed.layout.weight, out)
    if launched is not plan and os.environ.get(TUNING_LOG_ENV):  # this launch tuned
        _log_tuning(os.environ[TUNING_LOG_ENV], packed, x, activation, out, launched)
    packed.plans[key] = packed.last = launched


def _log_tuning(path: str, packed: _Packed, x: torch.Tensor, activation: QuantizedActivation,
                out: torch.Tensor, plan: _Plan) -> None:
    """Append the problem and every timed config's median µs, as one JSON line, to `path`."""
    record = {"input_nhwc": list(x.shape), "output_nhwc": list(out.shape),
              "kernel_size": list(packed.kernel_size), **asdict(packed.params),
              "in_dtype": activation.dtype, "kernel": packed.layout.kernel,
              "median_us": plan.tuning_medians_us()}
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


@hookimpl
def qbench_apply(backend: str, packed: Any, input: Any, output: QuantizedActivation) -> None:
    if backend == NAME:
        _launch(packed, input, output, relu=False)


@hookimpl
def qbench_apply_relu(backend: str, packed: Any, input: Any,
                      output: QuantizedActivation) -> None:
    if backend == NAME:
        _launch(packed, input, output, relu=True)


@hookimpl
def qbench_details(backend: str, packed: Any) -> dict[str, Any] | None:
    if backend != NAME or packed.last is None:
        return None
    plan = packed.last
    wgmma = "STAGES" in plan.constants  # a Gluon kernel's plan (`wgmma_configs.tuner`)
    facts: dict[str, Any] = {"kernel": packed.layout.kernel}
    if wgmma:
        facts["kernel"] = "wgmma merged" if packed.layout.merge_rows else "wgmma"
    if packed.layout.groups_per_tile > 1:
        facts["groups_per_tile"] = packed.layout.groups_per_tile
    config = plan.config
    facts |= {key: plan.constants[key] for key in ("BM", "BN", "BK") if key in plan.constants}
    if config is not None:
        facts |= {"warps": config.num_warps,
                  "stages": plan.constants["STAGES"] if wgmma else config.num_stages}
    if plan.constants.get("SHARED"):
        facts["stream_k_programs"] = plan.grid[0]
    if plan.constants.get("SPLIT", 1) > 1:
        facts["split_k"] = plan.constants["SPLIT"]  # programs per tile
    if plan.constants.get("L1_REUSE"):
        facts["l1_reuse"] = True
    if plan.constants.get("PERSIST"):
        facts["persistent_programs"] = plan.grid[0]
    if "UNROLL_TAPS" in plan.constants:
        facts["unrolled_taps"] = plan.constants["UNROLL_TAPS"]
    return facts | plan.tuning_facts()
