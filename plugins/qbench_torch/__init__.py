"""PyTorch's own convolutions: the int8 baseline and the float reference points.

int8: `torch.ops.quantized.conv2d_prepack` / `conv2d` / `conv2d_relu` on each CPU quantized engine
(`torch-x86`, `torch-fbgemm`, `torch-onednn`, `torch-qnnpack`) and on CUDA (`torch-cuda`, the
cuDNN path). What PyTorch refuses is reported as unsupported with PyTorch's own message.
float, not quantized: `torch-fp32` (CPU) and `torch-fp16` (cuDNN, channels_last): the conv of the
dequantized tensors, the figure users compare int8 against. `torch-fp16` is PyTorch's fastest
fp16 conv, as int8 is held to it: cuDNN's algorithms timed on the first call (`cudnn.benchmark`),
and with ReLU one cuDNN graph of conv, bias and ReLU (`torch.cudnn_convolution_relu`, which also
reads its output buffer: PyTorch adds it, times 0), where `F.conv2d` then `relu_` would run the
ReLU, and on some PyTorch versions the bias, as kernels of their own over the output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from qbench import (BackendInfo, ConvParams, ConvProblem, QuantizedActivation, QuantizedWeight,
                    UnsupportedError, Verdict, hookimpl)

CPU_ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")
_INT8 = {f"torch-{engine}": engine for engine in CPU_ENGINES} | {"torch-cuda": "cuda"}
_FLOAT = {"torch-fp32": torch.float32, "torch-fp16": torch.float16}

# PyTorch's refusals, as its kernels word them (torch 2.11-2.13); any other failure is an error.
_REFUSAL = re.compile(
    r"data type of input should be|Expected activation data type|only supports symmetric "
    r"quantization|limited to groups|Unsupported qscheme|not supported for QUInt8|"
    r"only supports per.tensor", re.IGNORECASE)


@hookimpl
def qbench_backends() -> list[BackendInfo]:
    version = torch.__version__
    infos = [BackendInfo(name, "cpu", version, channels_last=True,
                         description=f"PyTorch quantized conv, {engine} engine")
             for name, engine in _INT8.items() if engine != "cuda"]
    infos.append(BackendInfo("torch-cuda", "cuda", version, channels_last=True,
                             description="PyTorch quantized conv on CUDA (cuDNN, qint8 input)"))
    infos.append(BackendInfo("torch-fp32", "cpu", version, numerics="fp32", channels_last=True,
                             description="float32 conv of the dequantized tensors (not int8)"))
    infos.append(BackendInfo("torch-fp16", "cuda", version, numerics="fp16", channels_last=True,
                             description="float16 cuDNN conv, channels_last (not int8)"))
    return infos


@hookimpl
def qbench_availability(backend: str) -> Verdict | None:
    if backend in ("torch-cuda", "torch-fp16"):
        if not torch.cuda.is_available():
            return Verdict.no("no CUDA device visible to PyTorch "
                              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})")
        return Verdict.yes()
    if backend in _INT8:
        engine = _INT8[backend]
        if engine not in torch.backends.quantized.supported_engines:
            return Verdict.no(f"this PyTorch build has no {engine!r} quantized engine "
                              f"(it has {torch.backends.quantized.supported_engines})")
        return Verdict.yes()
    if backend == "torch-fp32":
        return Verdict.yes()
    return None


@hookimpl
def qbench_supports(backend: str, problem: ConvProblem) -> Verdict | None:
    if backend in _INT8 and problem.out_dtype != problem.in_dtype:
        return Verdict.no("PyTorch's quantized conv returns the input's dtype "
                          f"({problem.in_dtype}), not {problem.out_dtype}")
    if backend in _INT8 or backend in _FLOAT:
        return Verdict.yes()
    return None


@dataclass
class _PackedInt8:
    """PyTorch packed weights, one per op (plain, ReLU).

    PyTorch 2.13's x86 and onednn engines cache the oneDNN primitive of the first call in the
    packed weight: `conv2d_relu` after `conv2d` on the same packed weight skips the ReLU, and
    `conv2d` after `conv2d_relu` applies one. So the packing made at prepack goes to whichever
    op runs first, and the other op gets a packing of its own on its first use.
    """

    engine: str
    pack: Callable[[], Any]
    unclaimed: Any
    by_relu: dict[bool, Any] = field(default_factory=dict)

    def for_op(self, relu: bool) -> Any:
        if relu not in self.by_relu:
            if self.unclaimed is not None:
                self.by_relu[relu], self.unclaimed = self.unclaimed, None
            else:
                _use_engine(self.engine)
                self.by_relu[relu] = _refusals_as_unsupported(self.pack)
        return self.by_relu[relu]


@dataclass
class _PackedFloat:
    """Float weights and bias; for `torch-fp16`, what cuDNN's fused conv, bias and ReLU needs.

    `fused_bias` (torch-fp16 only) is the bias or zeros, which the fused op would otherwise
    allocate every call. `fused_relu` is None until the first call with ReLU tries the fused op:
    True once it ran, False where it raised (`unfused_because`: cuDNN's words), and F.conv2d then
    relu_ run instead from then on.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    params: ConvParams
    fused_bias: torch.Tensor | None = None
    fused_relu: bool | None = None
    unfused_because: str = ""

    @property
    def cudnn(self) -> bool:
        """torch-fp16: cuDNN's autotuned algorithms, ReLU fused where cuDNN can."""
        return self.fused_bias is not None


def _refusals_as_unsupported(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (RuntimeError, NotImplementedError) as exc:
        if _REFUSAL.search(str(exc)):
            raise UnsupportedError(str(exc).splitlines()[0]) from exc
        raise


def _use_engine(engine: str) -> None:
    if engine != "cuda" and torch.backends.quantized.engine != engine:
        torch.backends.quantized.engine = engine


@hookimpl
def qbench_prepack(backend: str, weight: QuantizedWeight, bias: torch.Tensor | None,
                   params: ConvParams) -> Any:
    if backend in _INT8:
        def pack() -> Any:
            return torch.ops.quantized.conv2d_prepack(
                weight.to_torch(), bias, list(params.stride), list(params.padding),
                list(params.dilation), params.groups)

        _use_engine(_INT8[backend])
        return _PackedInt8(_INT8[backend], pack, _refusals_as_unsupported(pack))
    if backend in _FLOAT:
        dtype = _FLOAT[backend]
        w = weight.dequantize(torch.float32).to(dtype).contiguous(memory_format=torch.channels_last)
        b = bias.to(dtype) if bias is not None else None
        if backend != "torch-fp16":
            return _PackedFloat(w, b, params)
        zeros = torch.zeros(w.shape[0], dtype=dtype, device=w.device)
        return _PackedFloat(w, b, params, fused_bias=b if b is not None else zeros)
    return None


@hookimpl
def qbench_prepare_input(backend: str, input: QuantizedActivation) -> Any:
    if backend in _INT8:
        return input.to_torch()
    if backend in _FLOAT:
        return input.dequantize(torch.float32).to(_FLOAT[backend])
    return None


def _apply_int8(packed: _PackedInt8, input: torch.Tensor, output: QuantizedActivation,
                relu: bool) -> torch.Tensor:
    _use_engine(packed.engine)
    op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
    weights = packed.for_op(relu)
    return _refusals_as_unsupported(lambda: op(input, weights, output.scale, output.zero_point))


def _apply_float(packed: _PackedFloat, input: torch.Tensor, relu: bool) -> torch.Tensor:
    if not packed.cudnn:
        return _conv_then_relu(packed, input, relu)
    with _cudnn_autotuned():
        if relu and packed.fused_relu is not False:
            p = packed.params
            try:
                y = torch.cudnn_convolution_relu(input, packed.weight, packed.fused_bias,
                                                 p.stride, p.padding, p.dilation, p.groups)
            except RuntimeError as exc:
                if packed.fused_relu:  # it ran before: not a refusal of this problem
                    raise
                packed.fused_relu = False
                packed.unfused_because = str(exc).strip().partition("\n")[0]
            else:
                packed.fused_relu = True
                return y
        return _conv_then_relu(packed, input, relu)


def _conv_then_relu(packed: _PackedFloat, input: torch.Tensor, relu: bool) -> torch.Tensor:
    p = packed.params
    y = F.conv2d(input, packed.weight, packed.bias, p.stride, p.padding, p.dilation, p.groups)
    return torch.relu_(y) if relu else y


@contextmanager
def _cudnn_autotuned() -> Iterator[None]:
    """Within the block, cuDNN times its algorithms on a shape's first call and keeps the fastest
    (`torch.backends.cudnn.benchmark`); the setting before it afterwards."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _apply(backend: str, packed: Any, input: Any, output: QuantizedActivation,
           relu: bool) -> torch.Tensor | None:
    if backend in _INT8:
        return _apply_int8(packed, input, output, relu)
    if backend in _FLOAT:
        return _apply_float(packed, input, relu)
    return None


@hookimpl
def qbench_apply(backend: str, packed: Any, input: Any,
                 output: QuantizedActivation) -> torch.Tensor | None:
    return _apply(backend, packed, input, output, relu=False)


@hookimpl
def qbench_apply_relu(backend: str, packed: Any, input: Any,
                      output: QuantizedActivation) -> torch.Tensor | None:
    return _apply(backend, packed, input, output, relu=True)


@hookimpl
def qbench_details(backend: str, packed: Any) -> dict[str, Any] | None:
    if backend != "torch-fp16":
        return None
    facts = {"algorithms": "cudnn.benchmark"}
    if packed.fused_relu is not None:
        facts["relu"] = ("fused: cudnn_convolution_relu" if packed.fused_relu else
                         f"conv2d then relu_ (cudnn_convolution_relu raised: "
                         f"{packed.unfused_because})")
    return facts
