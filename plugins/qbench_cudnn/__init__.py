"""The `cudnn` backend: PyTorch's fused cuDNN int8 conv graph, through cudnn-frontend, done fully.

Beyond PyTorch's own path it takes per-channel weights, quint8 input and output, input and output
zero points and groups (where cuDNN has an engine), and keeps the fastest plan instead of the
first that runs. numerics.py holds the arithmetic, graph.py the graph, plans.py the plan cache and
autotuning; this module wires them to qbench's hooks.

Each problem first tries cuDNN with its own channel counts; only when cuDNN has no plan for that
are the channels padded (to multiples of 4: weights once, activations per call). The spatial
padding is in the graph when the input zero point is 0 (as int8), else written as the zero point
into a staged copy of the activations (numerics.py says why). The per-call staging is timed on its
own (`stage_input_us` in the results' details).

`cudnn-fp16` is the float figure done the same way: the fp16 conv of the dequantized tensors, with
bias and ReLU, one graph autotuned as the int8 one is (fp16.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from qbench import (BackendInfo, ConvParams, ConvProblem, QuantizedActivation, QuantizedWeight,
                    UnsupportedError, Verdict, hookimpl)
from qbench.backends import installed_version
from qbench.isolation import device_works
from qbench.quantized import nhwc_view
from qbench.reference import requantization_terms
from qbench.timing import current_stream_pointer, tuning_median_ms
from qbench_cudnn import fp16
from qbench_cudnn import graph as graphs
from qbench_cudnn.numerics import (ChannelLayout, finish_output, offsets, output_zero_point,
                                   pack_weight, scale_first_offset, signed_zero_point,
                                   stage_input, staged_buffer)
from qbench_cudnn.plans import Autotuned, CacheKey, PlanCache, alignment, autotune

NAME = "cudnn"
FP16 = "cudnn-fp16"
Pack = dict[int, torch.Tensor]
Executor = Callable[[Pack], None]


@hookimpl
def qbench_backends() -> list[BackendInfo]:
    version = installed_version("cudnn")
    return [BackendInfo(NAME, "cuda", version, channels_last=True,
                        description="fused cuDNN-frontend int8 conv graph, autotuned plans"),
            BackendInfo(FP16, "cuda", version, numerics="fp16", channels_last=True,
                        description="fused cuDNN-frontend fp16 conv, bias and ReLU graph, "
                                    "autotuned plans (not int8)")]


@hookimpl
def qbench_availability(backend: str) -> Verdict | None:
    if backend not in (NAME, FP16):
        return None
    try:
        import cudnn
    except ImportError as exc:
        return Verdict.no(f"nvidia-cudnn-frontend is not installed (pip install 'qbench[cudnn]'): "
                          f"{exc}")
    if not torch.cuda.is_available():
        return Verdict.no("no CUDA device visible to PyTorch")
    try:
        cudnn.backend_version()
    except Exception as exc:
        return Verdict.no(f"cudnn-frontend cannot load the cuDNN library: {exc}")
    return Verdict.yes()


@hookimpl
def qbench_supports(backend: str, problem: ConvProblem) -> Verdict | None:
    if backend == FP16:
        return Verdict.yes()  # a float conv takes any zero point; cuDNN's plans decide the rest
    if backend != NAME:
        return None
    if problem.weight_zero_point != 0:
        return Verdict.no("cuDNN's int8 conv has no weight zero point (its compensation would need "
                          "a second convolution)")
    return Verdict.yes()


@dataclass(frozen=True)
class _Call:
    """One prepared (shapes, quantization, ReLU, alignments): buffers, constants and the plan."""

    execute: Executor
    pack: Pack  # uid -> tensor; X and Y are set per call
    staged_input: torch.Tensor | None  # int8 NHWC, when the input is padded or flipped
    staged_padding: tuple[int, int]  # the spatial padding written into staged_input
    staged_output: torch.Tensor | None  # int8 NHWC, when the output channels are padded
    unsigned_in: bool
    unsigned_out: bool
    details: dict[str, Any]

    def result_for(self, out: torch.Tensor) -> torch.Tensor:
        """Where the graph writes for NHWC output `out`: the staged output, or `out` as int8."""
        return self.staged_output if self.staged_output is not None else out.view(torch.int8)

    def run(self, x: torch.Tensor, out: torch.Tensor, result: torch.Tensor) -> None:
        """One call: stage x if need be, run the plan into `result` (see result_for), finish."""
        pack = self.pack
        if self.staged_input is not None:
            stage_input(x, self.staged_input, self.unsigned_in, self.staged_padding)
        else:
            pack[graphs.X] = x
        pack[graphs.Y] = result
        self.execute(pack)
        if self.staged_output is not None or self.unsigned_out:
            finish_output(result, out, self.unsigned_out)

    def parts(self, x: torch.Tensor, out: torch.Tensor,
              result: torch.Tensor) -> dict[str, Callable[[], None]]:
        """The per-call staging of `run`, each on its own (see the qbench_parts hook)."""
        parts: dict[str, Callable[[], None]] = {}
        if self.staged_input is not None:
            staged = self.staged_input
            parts["stage_input"] = lambda: stage_input(x, staged, self.unsigned_in,
                                                       self.staged_padding)
        if self.staged_output is not None or self.unsigned_out:
            parts["finish_output"] = lambda: finish_output(result, out, self.unsigned_out)
        return parts


@dataclass(frozen=True)
class _Last:
    """The most recent call's inputs (held, so that their identities stay unique) and its _Call:
    the timed loop's repeated calls skip the key lookup."""

    activation: QuantizedActivation
    output: QuantizedActivation
    relu: bool
    out: torch.Tensor  # output.data as NHWC
    result: torch.Tensor  # call.result_for(out)
    call: _Call


@dataclass
class _Packed:
    weight: torch.Tensor  # the problem's int8 (K, C/g, R, S), on the device
    weight_scales: torch.Tensor
    bias: torch.Tensor | None
    params: ConvParams
    padded_weights: dict[ChannelLayout, torch.Tensor] = field(default_factory=dict)
    calls: dict[tuple[Any, ...], _Call] = field(default_factory=dict)
    last: _Last | None = None


@dataclass
class _PackedFp16:
    """The dequantized weight (fp16, NHWC) and bias (fp16, (1, K, 1, 1)), and per input shape and
    ReLU the fastest plan of the fp16 graph, what tuning found, and its variant pack (X and Y set
    per call)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    params: ConvParams
    calls: dict[tuple[Any, ...], tuple[Executor, dict[str, Any], Pack]] = field(
        default_factory=dict)
    last_details: dict[str, Any] | None = None


@hookimpl
def qbench_prepack(backend: str, weight: QuantizedWeight, bias: torch.Tensor | None,
                   params: ConvParams) -> Any:
    if backend == FP16:
        w = weight.dequantize(torch.float32).half().contiguous(memory_format=torch.channels_last)
        b = (None if bias is None else
             bias.to(device=w.device, dtype=torch.float16).view(1, -1, 1, 1))
        return _PackedFp16(w, b, params)
    if backend != NAME:
        return None
    if bool(weight.zero_points.any()):
        raise UnsupportedError("cuDNN's int8 conv has no weight zero point")
    return _Packed(weight.data, weight.scales.cpu(), bias, params)


@hookimpl
def qbench_prepare_input(backend: str, input: QuantizedActivation) -> Any:
    if backend == FP16:
        x = input.dequantize(torch.float32).half()
        nhwc_view(x)  # a ValueError unless NHWC in memory, as cuDNN reads it
        return x
    if backend != NAME:
        return None
    return (nhwc_view(input.data), input)


def _apply_fp16(packed: _PackedFp16, x: torch.Tensor, output: QuantizedActivation,
                relu: bool) -> torch.Tensor:
    """The fp16 output, in a tensor of its own as PyTorch's conv returns one. A shape's first
    call builds and autotunes the plan (into a buffer of its own), then runs it into an output
    filled with NaN, which an element the plan never writes keeps: the host counts it wrong."""
    key = (tuple(x.shape), relu, alignment(x.data_ptr()))
    first = key not in packed.calls
    if first:
        p = packed.params
        spec = fp16.describe(tuple(x.shape), tuple(packed.weight.shape),
                             tuple(output.data.shape), p.padding, p.stride, p.dilation, relu,
                             bias=packed.bias is not None)
        pack = {graphs.X: x, graphs.W: packed.weight,
                graphs.Y: torch.empty_like(output.data, dtype=torch.float16)}
        if packed.bias is not None:
            pack[fp16.BIAS] = packed.bias
        packed.calls[key] = (*executor_for(spec, pack, fp16.build), pack)
    execute, packed.last_details, pack = packed.calls[key]
    y = torch.empty_like(output.data, dtype=torch.float16)
    if first:
        y.fill_(float("nan"))
    pack[graphs.X], pack[graphs.Y] = x, y
    execute(pack)
    return y


def _call(packed: _Packed, x: torch.Tensor, activation: QuantizedActivation,
          out: torch.Tensor, output: QuantizedActivation, relu: bool) -> _Call:
    key = (x.shape, x.dtype, activation.scale, activation.zero_point, out.shape, output.scale,
           output.zero_point, output.dtype, relu, alignment(x.data_ptr()),
           alignment(out.data_ptr()))
    call = packed.calls.get(key)
    if call is None:
        call = packed.calls[key] = _prepare_call(packed, x, activation, out, output, relu)
    return call


def _prepare_call(packed: _Packed, x: torch.Tensor, activation: QuantizedActivation,
                  out: torch.Tensor, output: QuantizedActivation, relu: bool) -> _Call:
    """Constants, buffers and the plan, in the first arrangement cuDNN has a plan for: channels
    as given, then padded to multiples of 4; within each, the graph in fbgemm's order, then in
    PyTorch's shape (graph.FORMS). The spatial padding is staged where the zero point is not 0."""
    zero_point = signed_zero_point(activation.zero_point, activation.dtype == "quint8")
    stage_padding = zero_point != 0 and packed.params.padding != (0, 0)
    refusals: dict[str, list[str]] = {}  # cuDNN's reason -> the arrangements it refused
    for pad_channels in (False, True):
        layout = ChannelLayout.of(x.shape[-1], out.shape[-1], packed.params.groups, pad_channels)
        if pad_channels and not (layout.pads_input or layout.pads_output):
            break  # padding would change nothing
        for form in graphs.FORMS:
            try:
                return _prepare_arrangement(packed, layout, stage_padding, form, x, activation,
                                            out, output, relu)
            except UnsupportedError as exc:
                refusals.setdefault(str(exc), []).append(_arrangement(layout, stage_padding, form))
    raise UnsupportedError("cuDNN has no plan for this problem: " + "; ".join(
        f"{reason} ({len(arrangements)} arrangement{'s' * (len(arrangements) > 1)}: "
        f"{' | '.join(arrangements)})" for reason, arrangements in refusals.items()))


def _arrangement(layout: ChannelLayout, stage_padding: bool, form: str) -> str:
    channels = ("as given" if not (layout.pads_input or layout.pads_output)
                else f"padded {layout.in_channels}->{layout.padded_in}, "
                     f"{layout.out_channels}->{layout.padded_out}")
    return (f"channels {channels}, spatial padding "
            f"{'staged' if stage_padding else 'in the graph'}, {form}")


def _prepare_arrangement(packed: _Packed, layout: ChannelLayout, stage_padding: bool,
                         form: str, x: torch.Tensor, activation: QuantizedActivation,
                         out: torch.Tensor, output: QuantizedActivation, relu: bool) -> _Call:
    n, h, w, _ = x.shape
    _, oh, ow, _ = out.shape
    unsigned_in, unsigned_out = activation.dtype == "quint8", output.dtype == "quint8"
    x_zero_point = signed_zero_point(activation.zero_point, unsigned_in)
    if layout not in packed.padded_weights:
        packed.padded_weights[layout] = pack_weight(packed.weight, layout)
    weight = packed.padded_weights[layout]
    params = packed.params
    graph_padding = (0, 0) if stage_padding else params.padding
    bias_terms, multiplier = requantization_terms(activation.scale, packed.weight_scales,
                                                  packed.bias, output.scale)
    offset = offsets(packed.weight, x_zero_point, bias_terms)
    zero_point = output_zero_point(output.zero_point, unsigned_out, layout.out_channels)
    if form == graphs.FORMS[0]:
        operands = (offset, multiplier.view(1, -1, 1, 1), zero_point)
    else:
        operands = (scale_first_offset(offset, multiplier, zero_point),
                    multiplier.view(1, -1, 1, 1))
    k_pad = layout.padded_out - layout.out_channels
    constants = [torch.nn.functional.pad(t, (0, 0, 0, 0, 0, k_pad)) for t in operands]
    staged_padding = params.padding if stage_padding else (0, 0)
    staged_input = staged_output = None
    if layout.pads_input or unsigned_in or stage_padding:
        staged_input = staged_buffer(x, layout.padded_in, staged_padding, x_zero_point)
    if layout.pads_output:
        staged_output = torch.empty((n, oh, ow, layout.padded_out), dtype=torch.int8,
                                    device=x.device)
    x_dims = (n, layout.padded_in, h + 2 * staged_padding[0], w + 2 * staged_padding[1])
    spec = graphs.describe(x_dims, tuple(weight.shape), (n, layout.padded_out, oh, ow),
                           padding=graph_padding,
                           stride=params.stride, dilation=params.dilation, relu=relu, form=form,
                           relu_floor=float(zero_point[0, 0, 0, 0]))
    pack: Pack = {graphs.W: weight}
    pack |= {t.uid: c.to(x.device).contiguous(memory_format=torch.channels_last)
             for t, c in zip(spec.inputs[2:], constants)}
    pack[graphs.X] = staged_input if staged_input is not None else x
    pack[graphs.Y] = staged_output if staged_output is not None else out.view(torch.int8)
    execute, plan_details = executor_for(spec, pack)
    return _Call(execute, pack, staged_input, staged_padding, staged_output, unsigned_in,
                 unsigned_out,
                 plan_details | {"arrangement": _arrangement(layout, stage_padding, form)})


_plans: PlanCache[Autotuned] = PlanCache()
_local = threading.local()  # .handles: this thread's cuDNN handle per device
_handle_streams: dict[int, int] = {}  # the stream each handle was last set to


@dataclass(frozen=True)
class CudnnExecutor:
    """Runs one autotuned plan on a variant pack, on PyTorch's current stream."""

    graph: Any
    plan_index: int
    workspace: torch.Tensor
    handle: int
    device: torch.device

    def __call__(self, variant_pack: Pack) -> None:
        _use_current_stream(self.handle, self.device)
        self.graph.execute_plan_at_index(variant_pack, self.workspace, self.plan_index,
                                         self.handle)


def executor_for(spec: graphs.GraphSpec | fp16.Fp16GraphSpec, pack: Pack,
                 build: Callable[[Any, Any, int], Any] = graphs.build,
                 ) -> tuple[Executor, dict[str, Any]]:
    """The function that runs the fastest cuDNN plan of `spec` (made into a graph by `build`) on
    a variant pack, and what autotuning found (plans offered and runnable, the winner). Builds
    and autotunes on a key's first use, timing plans on `pack`; raises UnsupportedError when
    cuDNN has no plan."""
    import cudnn

    device = pack[graphs.W].device
    handle = _handle(cudnn, device)
    key = CacheKey(spec, device.index or 0, alignment(pack[graphs.X].data_ptr()),
                   alignment(pack[graphs.W].data_ptr()), alignment(pack[graphs.Y].data_ptr()))
    try:
        tuned = _plans.get(key, lambda: autotune(lambda: build(spec, cudnn, handle),
                                                 cudnn, _plan_timer(pack, handle),
                                                 lambda: device_works(device.type)))
    except (cudnn.cudnnGraphNotSupportedError, RuntimeError) as exc:
        raise UnsupportedError(str(exc).strip()) from exc
    workspace = torch.empty(tuned.workspace_size, dtype=torch.uint8, device=device)
    return (CudnnExecutor(tuned.graph, tuned.plan_index, workspace, handle, device),
            {"heuristics": tuned.mode, "plans": tuned.candidates, "tried": tuned.tried,
             "runnable": tuned.runnable, "plan": tuned.plan_name})


def _use_current_stream(handle: int, device: torch.device) -> None:
    """Point `handle` at PyTorch's current stream (CUDA-graph capture included), when it moved."""
    stream = current_stream_pointer(device.index or 0)
    if stream != _handle_streams.get(handle):
        import cudnn

        cudnn.set_stream(handle=handle, stream=stream)
        _handle_streams[handle] = stream


def _handle(cudnn: Any, device: torch.device) -> int:
    """This thread's cuDNN handle for `device` (cuDNN handles must not be shared by threads)."""
    if not hasattr(_local, "handles"):
        _local.handles = {}
    if device not in _local.handles:
        with torch.cuda.device(device):
            _local.handles[device] = cudnn.create_handle()
    return _local.handles[device]


def _plan_timer(pack: Pack, handle: int, runs: int = 10) -> Callable[[Any, int], float]:
    """time_plan(graph, index): median seconds of `runs` runs of one plan, after one warm-up."""
    def time_plan(graph: Any, index: int) -> float:
        device = pack[graphs.W].device
        _use_current_stream(handle, device)
        workspace = torch.empty(graph.get_workspace_size_plan_at_index(index), dtype=torch.uint8,
                                device=device)
        return tuning_median_ms(
            lambda: graph.execute_plan_at_index(pack, workspace, index, handle), runs,
            device) * 1e-3

    return time_plan


def _apply(packed: _Packed, prepared: Any, output: QuantizedActivation, relu: bool) -> None:
    x, activation = prepared
    last = packed.last
    if (last is None or last.activation is not activation or last.output is not output
            or last.relu is not relu):
        out = nhwc_view(output.data)
        call = _call(packed, x, activation, out, output, relu)
        last = packed.last = _Last(activation, output, relu, out, call.result_for(out), call)
    last.call.run(x, last.out, last.result)


@hookimpl
def qbench_apply(backend: str, packed: Any, input: Any,
                 output: QuantizedActivation) -> torch.Tensor | None:
    if backend == FP16:
        return _apply_fp16(packed, input, output, relu=False)
    if backend == NAME:
        _apply(packed, input, output, relu=False)
    return None


@hookimpl
def qbench_apply_relu(backend: str, packed: Any, input: Any,
                      output: QuantizedActivation) -> torch.Tensor | None:
    if backend == FP16:
        return _apply_fp16(packed, input, output, relu=True)
    if backend == NAME:
        _apply(packed, input, output, relu=True)
    return None


@hookimpl
def qbench_details(backend: str, packed: Any) -> dict[str, Any] | None:
    if backend == FP16:
        return packed.last_details
    if backend != NAME or packed.last is None:
        return None
    return packed.last.call.details


@hookimpl
def qbench_parts(backend: str, packed: Any, input: Any,
                 output: QuantizedActivation) -> dict[str, Any] | None:
    if backend != NAME or packed.last is None:
        return None
    last = packed.last
    return last.call.parts(input[0], last.out, last.result)
