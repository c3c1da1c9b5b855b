"""The `cupy` backend: hand-written CUDA C int8 convolutions (kernels/*.cu) through cupy.RawModule.

Kernels: an implicit GEMM on the tensor cores (mma.sync m16n8k32), a direct dp4a/bytewise kernel
for what the tensor cores do not fit, and a depthwise kernel; all fuse the requantization.
plan.py decides which kernels fit a problem and prepares their arguments. On a problem's first
call its candidate kernels are compiled (NVRTC, specialised by template arguments) and timed, and
the fastest is kept for the process: that is first-call cost, never part of the timed median.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from qbench import (BackendInfo, ConvParams, ConvProblem, QuantizedActivation, QuantizedWeight,
                    Verdict, hookimpl)
from qbench.backends import installed_version
from qbench.problem import int32_limits
from qbench.quantized import nhwc_view
from qbench.reference import requantization_terms
from qbench.timing import current_stream_pointer, tuning_median_ms
from qbench_cupy.plan import KERNEL_DIR, Geometry, Kernel, Operands, Scalars, candidates

NAME = "cupy"
TUNING_RUNS = 5


@hookimpl
def qbench_backends() -> list[BackendInfo]:
    return [BackendInfo(NAME, "cuda", installed_version("cupy"), channels_last=True,
                        description="hand-written CUDA C: mma.sync implicit GEMM, dp4a, depthwise")]


@hookimpl
def qbench_availability(backend: str) -> Verdict | None:
    if backend != NAME:
        return None
    try:
        import cupy
    except ImportError as exc:
        return Verdict.no(f"cupy is not installed (pip install 'qbench[cupy]'): {exc}")
    if not torch.cuda.is_available():
        return Verdict.no("no CUDA device visible to PyTorch")
    try:
        major, minor = torch.cuda.get_device_capability()
        cupy.cuda.Device(torch.cuda.current_device()).use()
    except Exception as exc:
        return Verdict.no(f"cupy cannot use the GPU: {exc}")
    if (major, minor) < (6, 1):
        return Verdict.no(f"needs compute capability 6.1 (dp4a); this GPU has {major}.{minor}")
    return Verdict.yes()


@hookimpl
def qbench_supports(backend: str, problem: ConvProblem) -> Verdict | None:
    if backend != NAME:
        return None
    reason = int32_limits(problem)
    return Verdict.no(reason) if reason else Verdict.yes()


@dataclass(frozen=True)
class _Launch:
    """One problem's chosen kernel with every argument but the activation and output."""

    function: Any
    grid: tuple[int, ...]
    block: tuple[int, ...]
    operands: tuple[Any, ...]  # cupy views of the constant tensors, then numpy int32 scalars
    details: dict[str, Any]

    def arguments(self, x: Any, y: Any) -> tuple[Any, ...]:
        """The kernel's arguments for activation view `x` and output view `y`."""
        return (x, self.operands[0], y, *self.operands[1:])

    def run(self, arguments: tuple[Any, ...]) -> None:
        self.function(self.grid, self.block, arguments)


@dataclass
class _Packed:
    weight: torch.Tensor  # int8 (K, C/g, R, S)
    weight_zero_points: torch.Tensor
    weight_scales: torch.Tensor
    bias: torch.Tensor | None
    params: ConvParams
    launches: dict[tuple[Any, ...], _Launch] = field(default_factory=dict)
    last: _Last | None = None


@dataclass(frozen=True)
class _Last:
    """The most recent call's input and output (held, so that their identities stay unique), the
    launch and its arguments for them: the timed loop's repeated calls skip the key lookup and
    build nothing."""

    input: Any  # what prepare_input returned
    output: QuantizedActivation
    relu: bool
    launch: _Launch
    arguments: tuple[Any, ...]


@hookimpl
def qbench_prepack(backend: str, weight: QuantizedWeight, bias: torch.Tensor | None,
                   params: ConvParams) -> Any:
    if backend != NAME:
        return None
    return _Packed(weight.data, weight.zero_points, weight.scales.cpu(), bias, params)


@hookimpl
def qbench_prepare_input(backend: str, input: QuantizedActivation) -> Any:
    if backend != NAME:
        return None
    return (nhwc_view(input.data), input)


_modules: dict[tuple[str, tuple[str, ...]], Any] = {}
_modules_lock = threading.Lock()
_streams: dict[int, Any] = {}
_choices: dict[tuple[Any, ...], str] = {}  # the fastest kernel per problem shape and device


def _function(kernel: Kernel, expressions: tuple[str, ...]) -> Any:
    """`kernel` from the module compiling `expressions` of its source file (compiled once)."""
    import cupy

    key = (kernel.source, expressions)
    with _modules_lock:
        if key not in _modules:
            _modules[key] = cupy.RawModule(
                code=(KERNEL_DIR / kernel.source).read_text(),
                options=("-std=c++17", f"-I{KERNEL_DIR}"), name_expressions=list(expressions))
        module = _modules[key]
    return module.get_function(kernel.expression)


def _use_torch_stream() -> None:
    """Make cupy launch on PyTorch's current stream (CUDA-graph capture included)."""
    import cupy

    pointer = current_stream_pointer(torch.cuda.current_device())
    stream = _streams.get(pointer)
    if stream is None:  # 0 is the legacy default stream, which cupy calls Stream.null
        stream = _streams[pointer] = (cupy.cuda.ExternalStream(pointer) if pointer
                                      else cupy.cuda.Stream.null)
    if cupy.cuda.get_current_stream() is not stream:
        stream.use()


def _tune(packed: _Packed, x: torch.Tensor, activation: QuantizedActivation, out: torch.Tensor,
          output: QuantizedActivation, relu: bool) -> _Launch:
    """Compile the problem's candidate kernels, time each, keep the fastest (remembered for the
    process, per shape and device). A candidate that fails to compile or launch is skipped and
    named in the details; if all fail, RuntimeError."""
    import cupy

    _, _, r, s = packed.weight.shape
    g = Geometry.of(tuple(x.shape), tuple(out.shape), (r, s), packed.params)
    capability = torch.cuda.get_device_capability(x.device)
    zero_points = bool(packed.weight_zero_points.any())
    fitting = [kernel for kernel in candidates(g, activation.dtype, output.dtype, zero_points)
               if kernel.tile is None or capability >= (8, 0)]  # mma.sync m16n8k32: sm_80
    choice_key = (g, activation.dtype, output.dtype, zero_points, capability)
    kernels = [kernel for kernel in fitting
               if choice_key not in _choices or kernel.expression == _choices[choice_key]]
    bias_terms, multipliers = requantization_terms(activation.scale, packed.weight_scales,
                                                   packed.bias, output.scale)
    scalars = Scalars.of(g, activation.dtype, activation.zero_point, output.dtype,
                         output.zero_point, relu)
    x_view, y_view = cupy.asarray(x), cupy.asarray(out)
    operands: dict[str, tuple[Any, ...]] = {}  # per weight layout
    timings: dict[int, float] = {}
    launches: dict[int, _Launch] = {}
    failures: list[str] = []
    for index, kernel in enumerate(kernels):
        try:
            if kernel.weight_layout not in operands:
                operands[kernel.weight_layout] = _device_operands(Operands.of(
                    kernel, g, packed.weight, packed.weight_zero_points, bias_terms, multipliers,
                    scalars))
            grid, block = kernel.launch(g)
            expressions = tuple(c.expression for c in fitting if c.source == kernel.source)
            launch = _Launch(_function(kernel, expressions), grid, block,
                             operands[kernel.weight_layout], {"kernel": kernel.expression})
            run = functools.partial(launch.run, launch.arguments(x_view, y_view))
            timings[index] = (tuning_median_ms(run, TUNING_RUNS, x.device)
                              if len(kernels) > 1 else 0.0)
            launches[index] = launch
        except Exception as exc:  # a broken candidate must not hide the others
            failures.append(f"{kernel.expression}: {type(exc).__name__}: {exc}")
    if not timings:
        raise RuntimeError("no kernel ran: " + "; ".join(failures))
    chosen = launches[min(timings, key=timings.__getitem__)]
    _choices[choice_key] = chosen.details["kernel"]
    chosen.details["candidates"] = len(fitting)
    if len(kernels) < len(fitting):
        chosen.details["tuned"] = "earlier in this process"
    if failures:
        chosen.details["failed"] = " | ".join(failures)
    return chosen


def _device_operands(operands: Operands) -> tuple[Any, ...]:
    """The kernel arguments after x, w and y as CuPy takes them: views, then int32 scalars."""
    import cupy
    import numpy as np

    tensors = (operands.weight, operands.w_sums, operands.w_zero_points, operands.bias_terms,
               operands.multipliers)
    return (*(cupy.asarray(t) for t in tensors), *(np.int32(v) for v in operands.ints))


def _apply(packed: _Packed, prepared: Any, output: QuantizedActivation, relu: bool) -> None:
    _use_torch_stream()
    last = packed.last
    if last is None or last.input is not prepared or last.output is not output or (
            last.relu is not relu):
        import cupy

        x, activation = prepared
        out = nhwc_view(output.data)
        key = (x.shape, activation.scale, activation.zero_point, activation.dtype, out.shape,
               output.scale, output.zero_point, output.dtype, relu)
        if key not in packed.launches:
            packed.launches[key] = _tune(packed, x, activation, out, output, relu)
        launch = packed.launches[key]
        last = packed.last = _Last(prepared, output, relu, launch,
                                   launch.arguments(cupy.asarray(x), cupy.asarray(out)))
    last.launch.run(last.arguments)


@hookimpl
def qbench_apply(backend: str, packed: Any, input: Any, output: QuantizedActivation) -> None:
    if backend == NAME:
        _apply(packed, input, output, relu=False)


@hookimpl
def qbench_apply_relu(backend: str, packed: Any, input: Any,
                      output: QuantizedActivation) -> None:
    if backend == NAME:
        _apply(packed, input, output, relu=True)


@hookimpl
def qbench_details(backend: str, packed: Any) -> dict[str, Any] | None:
    if backend != NAME or packed.last is None:
        return None
    return packed.last.launch.details
