"""A PyTorch model's 2D convolutions as qbench's problem model sees them, for `qbench suite`.

`load_model` imports a model given as MODULE:NAME; `model_convs` runs it once, in eval mode on
zeros at batch 1, and reads every call of an `nn.Conv2d` (its subclasses included): the suite
fields of its problem, and what quantized inference makes of what follows it, read from the
model's `torch.fx` graph: a BatchNorm2d that alone takes the conv's output folds into its weights
and bias, and a ReLU or ReLU6 that alone takes what comes out of those fuses into it (ReLU6's
clamp at 6 folding into the output scale, as `suites/depthwise.toml` has it). A model that
torch.fx cannot trace (control flow on its values) still gives its shapes; its ReLUs and
BatchNorms are then unknown, and `ModelConvs.untraced` says why.

A quantized model's convs (`torch.ao.nn.quantized.Conv2d`, as eager or FX quantization converts
them) are read from their modules and tensors instead: the input's dtype and zero point, the
weight's qscheme and zero point, the output's dtype, the module's bias and its fused ReLU
(`ConvReLU2d`); not their scales and output zero point, which the suite leaves to qbench.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.nn.functional as F
from torch import nn

from qbench.errors import QbenchError
from qbench.problem import ConvProblem

_RELU_MODULES = (nn.ReLU, nn.ReLU6)
_RELU_FUNCTIONS = {torch.relu, torch.relu_, F.relu, F.relu_, F.relu6}
_RELU_METHODS = {"relu", "relu_"}
# (folded, relu) of a call that torch.fx did not see: a bias, qbench's default, and no ReLU
_UNKNOWN_EPILOGUE = (True, False)
# what PyTorch's quantized convs take and give: activations quint8 (its CPU engines) or qint8
# (cuDNN) per tensor, weights qint8 per tensor or per channel
_QUANTIZED_DTYPES = {torch.quint8: "quint8", torch.qint8: "qint8"}
_WEIGHT_QSCHEMES = {torch.per_tensor_affine: "per_tensor", torch.per_channel_affine: "per_channel"}
# quantized convs that add a second input to their output before requantizing
_ADDING_CONVS = (nniq.ConvAdd2d, nniq.ConvAddReLU2d)


@dataclass(frozen=True)
class ConvCall:
    """One call of a model's conv: the module's path in the model, the suite fields of its
    problem (`in_channels`, `out_channels`, `height`, `width`, `kernel_size`, `stride`,
    `padding`, `dilation`, `groups`, `bias`, `relu`; pairs as (h, w) tuples; a quantized conv's
    also `in_dtype`, `in_zero_point`, `weight_qscheme`, `weight_zero_point`, `out_dtype`) and
    whether the conv is a quantized module."""

    path: str
    fields: dict[str, Any]
    quantized: bool = False


@dataclass
class ModelConvs:
    """What `model_convs` read: the conv calls qbench can measure, in the order they ran; the
    ones it cannot, as (path, reason); and why torch.fx could not trace the model (None when it
    could)."""

    calls: list[ConvCall] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    untraced: str | None = None


def load_model(spec: str) -> nn.Module:
    """The model that MODULE:NAME names: NAME (dotted for attributes of attributes) in the
    importable MODULE, an `nn.Module` or a function that returns one when called with no
    arguments (`torchvision.models:resnet50`). A QbenchError, naming `spec`, otherwise."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise QbenchError(f"model {spec!r}: expected MODULE:NAME, such as "
                          "torchvision.models:resnet50")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise QbenchError(f"model {spec}: cannot import {module_name}: {exc}") from None
    for part in name.split("."):
        if not hasattr(found, part):
            raise QbenchError(f"model {spec}: {module_name} has no {name}")
        found = getattr(found, part)
    if not isinstance(found, nn.Module) and callable(found):
        try:
            found = found()
        except Exception as exc:  # the user's code: its failure is bad input
            raise QbenchError(f"model {spec}: {name}() raised {type(exc).__name__}: "
                              f"{exc}") from None
    if not isinstance(found, nn.Module):
        raise QbenchError(f"model {spec}: got a {type(found).__name__}, not a torch.nn.Module "
                          "or a function that returns one")
    return found


def model_convs(model: nn.Module, input_shape: tuple[int, int, int], spec: str) -> ModelConvs:
    """Every conv call of `model` run once on zeros of shape (1, *input_shape) (channels, height,
    width), in eval mode without autograd. Raises QbenchError, naming `spec`, when the model
    fails on that input or runs no conv."""
    model.eval()
    found = ModelConvs()
    epilogues: dict[str, list[tuple[bool, bool]]] = {}
    if any(isinstance(module, nn.Conv2d) for module in model.modules()):
        try:
            epilogues = _epilogues(model)
        except Exception as exc:  # torch.fx's refusals have no common type
            reason = (str(exc).strip().splitlines() or [""])[0]
            found.untraced = f"torch.fx could not trace it ({type(exc).__name__}: {reason})"
    calls: defaultdict[str, int] = defaultdict(int)

    def record(path: str, conv: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
               output: Any) -> None:
        x = args[0] if args else kwargs["input"]
        geometry = _fields(conv, x, output)
        quantized = isinstance(conv, nnq.Conv2d)
        if quantized:
            rest = _quantization(conv, x, output)
        else:
            traced = epilogues.get(path, [])
            folded, relu = traced[calls[path]] if calls[path] < len(traced) else _UNKNOWN_EPILOGUE
            calls[path] += 1
            rest = {"bias": conv.bias is not None or folded, "relu": relu}
        if isinstance(geometry, str) or isinstance(rest, str):
            found.skipped.append((path, geometry if isinstance(geometry, str) else rest))
        else:
            found.calls.append(ConvCall(path, geometry | rest, quantized))

    handles = [module.register_forward_hook(
        lambda conv, args, kwargs, output, path=path: record(path, conv, args, kwargs, output),
        with_kwargs=True)
        for path, module in model.named_modules() if isinstance(module, (nn.Conv2d, nnq.Conv2d))]
    shape = (1, *input_shape)
    try:
        with torch.inference_mode():
            model(torch.zeros(shape))
    except Exception as exc:  # the user's model: its failure is bad input
        raise QbenchError(f"model {spec}: on an input of shape {shape} it raised "
                          f"{type(exc).__name__}: {exc}") from None
    finally:
        for handle in handles:
            handle.remove()
    if not found.calls and not found.skipped:
        raise QbenchError(f"model {spec}: no torch.nn.Conv2d or quantized Conv2d ran on an "
                          f"input of shape {shape}")
    return found


def _quantization(conv: nnq.Conv2d, x: torch.Tensor,
                  output: torch.Tensor) -> dict[str, Any] | str:
    """The suite fields of a quantized conv but its geometry's (`_fields`), read from its module,
    its input `x` and its `output`, or why qbench cannot measure it."""
    if isinstance(conv, _ADDING_CONVS):
        return (f"{type(conv).__name__} adds a second input to the conv's output: qbench's "
                "convs have no such epilogue")
    weight = conv.weight()  # PyTorch's quantized convs take qint8 weights, affine
    qscheme = _WEIGHT_QSCHEMES[weight.qscheme()]
    if qscheme == "per_tensor":
        weight_zero_point = weight.q_zero_point()
    else:
        zero_points = sorted(set(weight.q_per_channel_zero_points().tolist()))
        if len(zero_points) > 1:
            return (f"its weight zero points differ between channels ({zero_points[0]} to "
                    f"{zero_points[-1]}): qbench's weights have one")
        weight_zero_point = zero_points[0]
    return {"in_dtype": _QUANTIZED_DTYPES[x.dtype],
            "in_zero_point": int(x.q_zero_point()), "weight_qscheme": qscheme,
            "weight_zero_point": int(weight_zero_point),
            "out_dtype": _QUANTIZED_DTYPES[output.dtype], "bias": conv.bias() is not None,
            "relu": isinstance(conv, nniq.ConvReLU2d)}


def _fields(conv: nn.Conv2d | nnq.Conv2d, x: torch.Tensor,
            output: torch.Tensor) -> dict[str, Any] | str:
    """The suite fields of the geometry of `conv`'s problem on its input `x`, or why qbench cannot
    measure it: among the reasons, an `output` of another size than the fields give (a subclass
    whose forward pads or strides by itself)."""
    if conv.padding_mode != "zeros":
        return (f"padding_mode={conv.padding_mode!r}: qbench's convs pad with the zero point, "
                "as padding_mode='zeros' does")
    padding = _padding(conv)
    if padding is None:
        return "padding='same' pads one side more here (an even kernel, an odd dilation)"
    geometry = {"in_channels": conv.in_channels, "out_channels": conv.out_channels,
                "height": int(x.shape[-2]), "width": int(x.shape[-1]),
                "kernel_size": tuple(conv.kernel_size), "stride": tuple(conv.stride),
                "padding": padding, "dilation": tuple(conv.dilation), "groups": conv.groups}
    expected = ConvProblem(batch=1, **geometry).output_size
    if tuple(output.shape[-2:]) != expected:
        return (f"its output is {output.shape[-2]}x{output.shape[-1]}, not the "
                f"{expected[0]}x{expected[1]} of its input, kernel_size, stride, padding and "
                "dilation: its forward pads or strides by itself")
    return geometry


def _padding(conv: nn.Conv2d | nnq.Conv2d) -> tuple[int, int] | None:
    """`conv`'s padding as (h, w), 'valid' and 'same' resolved; None where 'same' pads one side
    more than the other."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding != "same":
        return tuple(conv.padding)
    totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
    if any(total % 2 for total in totals):
        return None
    return (totals[0] // 2, totals[1] // 2)


def _epilogues(model: nn.Module) -> dict[str, list[tuple[bool, bool]]]:
    """Per conv's path in the model, per call in order: (a BatchNorm2d folds into it, a ReLU
    fuses into it), from the model's torch.fx graph (the module docstring says when)."""
    modules = dict(model.named_modules())
    epilogues: defaultdict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for node in torch.fx.symbolic_trace(model).graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.Conv2d):
            continue
        after = _sole_user(node)
        folded = (after is not None and after.op == "call_module"
                  and isinstance(modules[after.target], nn.BatchNorm2d))
        if folded:
            after = _sole_user(after)
        epilogues[node.target].append((folded, after is not None and _is_relu(after, modules)))
    return epilogues


def _sole_user(node: torch.fx.Node) -> torch.fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _is_relu(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _RELU_MODULES)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in _RELU_METHODS
