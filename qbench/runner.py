"""The run: cases -> inputs -> exact reference -> each backend (prepack, checked run, timing,
checked run) -> one result row per (case, backend), yielded as soon as it exists.

A failing backend or case becomes a row with status "error" and the message; the run goes on.
`run_suite` runs everything in this process; `qbench.isolation` runs the same `CaseRunner` in
worker processes, so that a crash or a hang costs one row.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from qbench.check import Comparison, compare, mistrust_reason, poison, worst_of
from qbench.clocks import nvml_monitor
from qbench.environment import device_name
from qbench.errors import UnsupportedError
from qbench.floor import CardRates
from qbench.inputs import ConvInputs, auto_output_quantization, case_seed, make_inputs
from qbench.problem import ConvProblem, dtype_range
from qbench.quantized import QuantizedActivation, output_integers
from qbench.reference import reference_accumulator, requantize
from qbench.registry import Backend
from qbench.suite import Case, Suite
from qbench.timing import Sampler, TimingPolicy, measure, wall_time_ms

DEFAULT_BASELINES = {"cpu": "torch-x86", "cuda": "torch-cuda"}


@dataclass(frozen=True)
class RunSettings:
    """What the command line decides: device, backends, baseline, seed and timing."""

    device: str = "cpu"
    backends: tuple[str, ...] | None = None
    baseline: str | None = None
    seed: int = 0
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    clock_floor: float = 0.9  # GPU samples below this share of the default SM clock are dropped
    card_rates: CardRates | None = None  # the run's card, measured: each row's floor_us there

    @property
    def baseline_name(self) -> str:
        return self.baseline or DEFAULT_BASELINES.get(self.device, "")


def select_backends(requested: tuple[str, ...] | None, backends: Mapping[str, Backend],
                    device: str, baseline: str) -> list[Backend]:
    """The backends of one case, baseline first.

    requested: backend or plugin names (a plugin name means its default backends on `device`, or
    all of its default backends when it has none there, so they show up as unavailable); None means
    every default backend on `device`.
    """
    if requested is None:
        chosen = [b for b in backends.values() if b.info.default and b.info.device == device]
    else:
        chosen = []
        for name in requested:
            if name in backends:
                group = [backends[name]]
            else:
                own = [b for b in backends.values() if b.plugin_name == name and b.info.default]
                group = [b for b in own if b.info.device == device] or own
            chosen.extend(b for b in group if b not in chosen)
    chosen.sort(key=lambda b: b.name != baseline)
    return chosen


def work(suite: Suite, backends: Mapping[str, Backend], settings: RunSettings,
         skip: Collection[tuple[str, str]] = ()) -> list[tuple[Case, Backend]]:
    """The (case, backend) rows to produce, in order, but those in `skip` (names, for --resume)."""
    requested = settings.backends
    return [(case, backend) for case in suite.cases
            for backend in select_backends(requested or case.backends, backends, settings.device,
                                           settings.baseline_name)
            if (case.name, backend.name) not in skip]


def run_suite(suite: Suite, backends: Mapping[str, Backend], settings: RunSettings,
              skip: Collection[tuple[str, str]] = ()) -> Iterator[dict[str, Any]]:
    """Every row of the run in this process, in order, but the (case, backend) pairs in `skip`."""
    runner = CaseRunner(settings)
    for case, backend in work(suite, backends, settings, skip):
        yield runner.row(suite.name, case, backend)


def fill_speedups(rows: list[dict[str, Any]], baseline: str) -> None:
    """Set each row's `speedup` = the baseline backend's median / its median, in the same case."""
    baseline_us = {r["case"]: r["median_us"] for r in rows if r["backend"] == baseline}
    for row in rows:
        row["speedup"] = baseline_us.get(row["case"], math.nan) / row["median_us"]


class CaseRunner:
    """Produces one (case, backend) row at a time, preparing each case (inputs, reference) once:
    the unit of work of every executor, in process or in a worker."""

    def __init__(self, settings: RunSettings):
        self.settings = settings
        self.samplers: dict[str, Sampler] = {}
        self._prepared: tuple[Case, _Prepared | Exception] | None = None

    def row(self, suite_name: str, case: Case, backend: Backend) -> dict[str, Any]:
        if not backend.availability.ok:
            return unavailable_row(suite_name, case, backend)
        if self._prepared is None or self._prepared[0] != case:  # the whole case: a long-lived
            try:                                                 # worker serves many suites
                self._prepared = (case, prepare_case(case, self.settings.seed))
            except Exception as exc:
                self._prepared = (case, exc)
        prepared = self._prepared[1]
        if isinstance(prepared, Exception):
            return error_row(suite_name, case, backend, "preparing the case (inputs, reference) "
                             f"failed: {type(prepared).__name__}: {prepared}")
        return _run_backend(suite_name, case, prepared, backend, self.settings, self.samplers)


def unavailable_row(suite_name: str, case: Case, backend: Backend) -> dict[str, Any]:
    return _base_row(suite_name, case, case.problem, backend) | {
        "status": "unavailable", "error": backend.availability.reason}


def error_row(suite_name: str, case: Case, backend: Backend, message: str) -> dict[str, Any]:
    return _base_row(suite_name, case, case.problem, backend) | {"status": "error",
                                                                 "error": message}


@dataclass
class _Prepared:
    """A case's data: inputs, the output quantization chosen, the reference output (widened to
    int16 for comparisons), its poisoned twin and whether to trust it."""

    problem: ConvProblem
    inputs: ConvInputs
    reference_wide: torch.Tensor
    poisoned: torch.Tensor
    mistrust: str | None
    on_device: dict[tuple[str, bool], ConvInputs] = field(default_factory=dict)

    def inputs_for(self, device: str, channels_last: bool) -> ConvInputs:
        """The inputs on `device`, NHWC if asked; made once per case and layout."""
        key = (device, channels_last)
        if key not in self.on_device:
            bias = self.inputs.bias
            self.on_device[key] = ConvInputs(
                self.inputs.input.to(device, channels_last), self.inputs.weight.to(device),
                None if bias is None else bias.to(device), self.inputs.params)
        return self.on_device[key]


def prepare_case(case: Case, seed: int) -> _Prepared:
    """Inputs, resolved output quantization, reference output and whether to trust it."""
    problem = case.problem
    inputs = make_inputs(problem, case_seed(seed, case.name))
    acc = reference_accumulator(inputs.input, inputs.weight, inputs.params)
    if problem.out_scale is None or problem.out_zero_point is None:
        scale, zero_point = auto_output_quantization(acc, inputs, problem)
        problem = problem.replace(
            out_scale=scale if problem.out_scale is None else problem.out_scale,
            out_zero_point=zero_point if problem.out_zero_point is None else problem.out_zero_point)
    reference = requantize(acc, inputs.input.scale, inputs.weight.scales, inputs.bias,
                           problem.out_scale, problem.out_zero_point, problem.out_dtype,
                           problem.relu)
    lo, hi = dtype_range(problem.out_dtype)
    floor = problem.out_zero_point if problem.relu else lo
    return _Prepared(problem, inputs, reference.to(torch.int16), poison(reference),
                     mistrust_reason(reference, floor, hi))


def _base_row(suite_name: str, case: Case, problem: ConvProblem,
              backend: Backend) -> dict[str, Any]:
    return {
        "suite": suite_name, "case": case.name, "backend": backend.name,
        "device": device_name(backend.info.device), "node": socket.gethostname(),
        "status": "", "error": "",
        "batch": problem.batch, "in_channels": problem.in_channels,
        "out_channels": problem.out_channels, "height": problem.height, "width": problem.width,
        "kernel_size": _pair(problem.kernel_size), "stride": _pair(problem.stride),
        "padding": _pair(problem.padding), "dilation": _pair(problem.dilation),
        "groups": problem.groups, "in_dtype": problem.in_dtype, "out_dtype": problem.out_dtype,
        "weight_qscheme": problem.weight_qscheme, "relu": problem.relu, "bias": problem.bias,
        "in_zero_point": problem.in_zero_point, "reduce_range": problem.reduce_range,
        "weight_zero_point": problem.weight_zero_point,
        "out_scale": problem.out_scale, "out_zero_point": problem.out_zero_point,
        "count": case.count, "numerics": backend.info.numerics,
        "max_err_lsb": math.nan, "exact_pct": math.nan, "median_us": math.nan,
        "p10_us": math.nan, "p90_us": math.nan, "min_us": math.nan, "max_us": math.nan,
        "mean_us": math.nan, "stddev_us": math.nan, "q1_us": math.nan, "q3_us": math.nan,
        "spread_pct": math.nan, "median_ci_pct": math.nan, "samples": 0, "throttled_samples": 0,
        "launch_bound_samples": 0, "settled": False, "host_us": math.nan,
        "prepack_ms": math.nan, "first_call_ms": math.nan, "tops": math.nan, "gbps": math.nan,
        "floor_us": math.nan, "speedup": math.nan, "timing_mode": "", "details": "",
    }


def _floor_us(problem: ConvProblem, backend: Backend, rates: CardRates | None) -> float:
    """The problem's floor on the card whose `rates` the run measured, NaN on any other device."""
    if rates is None or device_name(backend.info.device) != rates.card:
        return math.nan
    return rates.floor_us(problem.ops, problem.bytes_moved)


def _pair(pair: tuple[int, int]) -> str:
    return f"{pair[0]}x{pair[1]}"


def make_sampler(device: str, settings: RunSettings) -> Sampler:
    """A sampler for `device`: on CUDA in the policy's mode, watching the SM clock when NVML can."""
    monitor = None
    if device == "cuda" and settings.clock_floor > 0:
        monitor = nvml_monitor(torch.cuda.current_device(), settings.clock_floor)
    return Sampler(device, settings.policy.mode, monitor)


def _details(backend: Backend, packed: Any, x: Any, output: QuantizedActivation,
             sampler: Sampler, policy: TimingPolicy, timed: bool) -> str:
    """The backend's facts about `packed` and, when timing, the median of each separately timed
    part of apply, as "name=value; ..."."""
    facts = dict(backend.details(packed))
    if timed:
        for name, part in backend.parts(packed, x, output).items():
            facts[f"{name}_us"] = f"{measure(part, sampler, policy).median_us:.2f}"
    return "; ".join(f"{name}={value}" for name, value in facts.items())


def _checked_call(apply: Callable[[Any, Any, Any], Any], packed: Any, x: Any,
                  output: QuantizedActivation, prepared: _Prepared) -> Comparison:
    """One call of `apply` on the output poisoned first, compared with the reference."""
    output.data.copy_(prepared.poisoned)
    result = apply(packed, x, output)
    return compare(output_integers(result, output), prepared.reference_wide)


def _run_backend(suite_name: str, case: Case, prepared: _Prepared, backend: Backend,
                 settings: RunSettings, samplers: dict[str, Sampler]) -> dict[str, Any]:
    problem = prepared.problem
    row = _base_row(suite_name, case, problem, backend) | {
        "floor_us": _floor_us(problem, backend, settings.card_rates)}
    if not backend.availability.ok:
        return row | {"status": "unavailable", "error": backend.availability.reason}
    stage = "qbench_supports"
    try:
        verdict = backend.supports(problem)
        if not verdict.ok:
            return row | {"status": "unsupported", "error": verdict.reason}
        device = backend.info.device
        inputs = prepared.inputs_for(device, backend.info.channels_last)
        output = QuantizedActivation.output_buffer(problem, device, backend.info.channels_last)
        apply = backend.apply_function(problem.relu)
        stage = "qbench_prepack"
        packed, prepack_ms = wall_time_ms(
            lambda: backend.prepack(inputs.weight, inputs.bias, inputs.params), device)
        stage = "qbench_prepare_input"
        x = backend.prepare_input(inputs.input)
        stage = "qbench_apply_relu" if problem.relu else "qbench_apply"
        output.data.copy_(prepared.poisoned)
        result, first_ms = wall_time_ms(lambda: apply(packed, x, output), device)
        first = compare(output_integers(result, output), prepared.reference_wide)
        sampler = samplers.get(device) or samplers.setdefault(
            device, make_sampler(device, settings))
        timing = None if backend.info.interpreted else measure(
            lambda: apply(packed, x, output), sampler, settings.policy)
        # the timed calls may take another path than the first (a plan cached by it): one more
        # call, on a poisoned buffer again, checks theirs
        after_timing = None if timing is None else _checked_call(apply, packed, x, output,
                                                                 prepared)
        stage = "qbench_details"
        details = _details(backend, packed, x, output, sampler, settings.policy,
                           timed=timing is not None)
    except UnsupportedError as exc:
        return row | {"status": "unsupported", "error": str(exc)}
    except Exception as exc:
        return row | {"status": "error",
                      "error": f'Backend "{backend.name}" failed in {stage}: '
                               f"{type(exc).__name__}: {exc}"}
    comparison = first if after_timing is None else worst_of(first, after_timing)
    if not comparison.within_tolerance:
        status, error = "mismatch", (f"max error {comparison.max_err_lsb} LSB > 1 LSB; "
                                     f"{comparison.exact_pct:.2f}% exact")
        if first.within_tolerance:
            error += " in the call after timing (the first call was within 1 LSB)"
    elif prepared.mistrust:
        status, error = "mistrusted", prepared.mistrust
    else:
        status, error = "ok", ""
    checked = row | {"status": status, "error": error, "max_err_lsb": comparison.max_err_lsb,
                     "exact_pct": comparison.exact_pct, "details": details}
    if timing is None:  # a simulator's times are no performance figures: none are reported
        return checked | {"timing_mode": "interpreted (not timed)"}
    seconds = timing.median_us * 1e-6
    return checked | {
        "median_us": timing.median_us,
        "p10_us": timing.p10_us, "p90_us": timing.p90_us, "min_us": timing.min_us,
        "max_us": timing.max_us, "mean_us": timing.mean_us, "stddev_us": timing.stddev_us,
        "q1_us": timing.q1_us, "q3_us": timing.q3_us, "spread_pct": timing.spread * 100,
        "median_ci_pct": timing.median_ci * 100, "throttled_samples": timing.throttled,
        "samples": timing.samples, "launch_bound_samples": timing.launch_bound,
        "settled": timing.settled,
        "host_us": math.nan if timing.host_us is None else timing.host_us,
        "prepack_ms": prepack_ms,
        "first_call_ms": prepack_ms + first_ms, "tops": problem.ops / seconds / 1e12,
        "gbps": problem.bytes_moved / seconds / 1e9,
        "timing_mode": settings.policy.mode if device == "cuda" else "cpu",
    }
