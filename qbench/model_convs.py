"""A PyTorch model's 2D convolutions as qbench's problem model sees them, for `qbench suite`.

`model_convs` runs a model (`qbench.model_loader`) once, in eval mode on zeros at batch 1, and reads
every 2D conv it runs: each call of `torch.nn.functional.conv2d` (which `nn.Conv2d` and its
subclasses make; named after the conv module that made it, else after the module whose forward
called it, `block.conv2d`) with the arguments it was given, so that a conv that pads its input by
itself (`padding_mode` other than zeros, TensorFlow's 'SAME' ported) is read as what it runs: a conv
of the padded input. What quantized inference makes of what follows a conv is read from the model's
`torch.fx` graph (conv modules as its leaves): a BatchNorm2d (or `F.batch_norm`) that alone takes
the conv's output folds into its weights and bias, and a ReLU or ReLU6 that alone takes what comes
out of those fuses into it (ReLU6's clamp at 6 folding into the output scale, as
`suites/depthwise.toml` has it); Identity and Dropout modules between them pass, and reads of a
value's shape do not take it. A model that torch.fx cannot trace (control flow on its values) still
gives its shapes; its ReLUs and BatchNorms are then unknown, and `ModelConvs.untraced` says why.

A quantized model's convs (`torch.ao.nn.quantized.Conv2d`, as eager or FX quantization converts
them) are read from their modules and tensors instead: the input's dtype and zero point, the
weight's qscheme and zero point, the output's dtype, the module's bias and its fused ReLU
(`ConvReLU2d`); not their scales and output zero point, which the suite leaves to qbench."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from qbench.errors import QbenchError, describe
from qbench.problem import as_pair

_RELU_MODULES = (nn.ReLU, nn.ReLU6)
_RELU_FUNCTIONS = {torch.relu, torch.relu_, F.relu, F.relu_, F.relu6}
_RELU_METHODS = {"relu", "relu_"}
# eval-mode no-ops between a conv, its BatchNorm and its ReLU; nodes that read a value's shape
_PASS_THROUGH_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d)
_SHAPE_METHODS = {"size", "dim"}
_CONV2D_PARAMETERS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
# (folded, relu) of a call that torch.fx did not see: a bias, qbench's default, and no ReLU
_UNKNOWN_EPILOGUE = (True, False)
# what PyTorch's quantized convs take and give: activations quint8 (its CPU engines) or qint8
# (cuDNN) per tensor, weights qint8 per tensor or per channel
_QUANTIZED_DTYPES = {torch.quint8: "quint8", torch.qint8: "qint8"}
_WEIGHT_QSCHEMES = {torch.per_tensor_affine: "per_tensor", torch.per_channel_affine: "per_channel"}
_SCRIPTED = ("TorchScript (torch.jit.ScriptModule) runs its convs where qbench cannot see them: "
             "give the Python module it was scripted from")
# quantized convs that add a second input to their output before requantizing
_ADDING_CONVS = (nniq.ConvAdd2d, nniq.ConvAddReLU2d)


@dataclass(frozen=True)
class ConvCall:
    """One call of a model's conv: its name (`_call_path`), the suite fields of its
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


def model_convs(model: nn.Module, input_shape: tuple[int, int, int], spec: str) -> ModelConvs:
    """Every conv call of `model` run once on zeros of shape (1, *input_shape) (channels, height,
    width; `_zeros`), in eval mode without autograd; of a `torch.compile`d model, the module it
    compiles, run uncompiled. Raises QbenchError, naming `spec`, when the model fails on that
    input or runs no conv."""
    if isinstance(model, torch.jit.ScriptModule):
        raise QbenchError(f"model {spec}: {_SCRIPTED}")
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: what it compiles
    model.eval()
    reader = _ConvReader(model)
    handles = [hook for module in reader.paths for hook in (
        module.register_forward_pre_hook(reader.enter),
        module.register_forward_hook(reader.leave, always_call=True))]
    shape = (1, *input_shape)
    try:
        with torch.inference_mode(), reader:
            model(_zeros(model, shape))
    except Exception as exc:  # the user's model: its failure is bad input
        raise QbenchError(f"model {spec}: on an input of shape {shape} it raised "
                          f"{describe(exc)}") from None
    finally:
        for handle in handles:
            handle.remove()
    if not reader.found.calls and not reader.found.skipped:
        raise QbenchError(f"model {spec}: no 2D conv ran on an input of shape {shape}")
    return reader.found


def _zeros(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """Zeros of `shape` as `model` takes them: on its first floating tensor's device and in its
    dtype (a model moved to a GPU or to half precision), else float32 on the CPU."""
    tensors = (*model.parameters(), *model.buffers())
    first = next((t for t in tensors if t.is_floating_point()), None)
    if first is None:
        return torch.zeros(shape)
    return torch.zeros(shape, device=first.device, dtype=first.dtype)


class _ConvReader(TorchFunctionMode):
    """While active, and with `enter` and `leave` hooked before and after every module of the
    model, reads its conv calls into `found`: calls of `F.conv2d`, and quantized conv modules."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.found = ModelConvs()
        self.root_name = type(model).__name__  # the model's own module path is ""
        try:
            self.epilogues = _epilogues(model)
        except Exception as exc:  # torch.fx's refusals have no common type
            self.epilogues = {}
            self.found.untraced = f"torch.fx could not trace it ({describe(exc)})"
        self.calls: defaultdict[str, int] = defaultdict(int)  # per path, the calls read so far
        self.paths: dict[nn.Module, str] = {}  # the modules to hook: not TorchScript's
        scripted: list[str] = []
        for path, module in model.named_modules():
            if any(path.startswith(f"{outer}.") for outer in scripted):
                continue
            if isinstance(module, torch.jit.ScriptModule):
                scripted.append(path)
                self.found.skipped.append((path, _SCRIPTED))
            else:
                self.paths[module] = path
        self.stack: list[nn.Module] = []  # the modules running, innermost last

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.conv2d:
            self._record_float(_call_path(self.stack, self.paths), args, kwargs)
        return func(*args, **kwargs)

    def enter(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.stack.append(module)

    def leave(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self.stack.pop()
        if isinstance(module, nnq.Conv2d):
            self._record_quantized(self.paths[module], module, args[0], output)

    def _record_float(self, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        traced, index = self.epilogues.get(path, []), self.calls[path]
        folded, relu = traced[index] if index < len(traced) else _UNKNOWN_EPILOGUE
        self.calls[path] += 1
        call = dict(zip(_CONV2D_PARAMETERS, args)) | kwargs
        geometry = _geometry(call["input"], call["weight"], call.get("stride", 1),
                             call.get("padding", 0), call.get("dilation", 1),
                             call.get("groups", 1))
        self._record(path, geometry, {"bias": call.get("bias") is not None or folded,
                                      "relu": relu})

    def _record_quantized(self, path: str, conv: nnq.Conv2d, x: torch.Tensor,
                          output: torch.Tensor) -> None:
        geometry = _geometry(x, conv.weight(), conv.stride, conv.padding, conv.dilation,
                             conv.groups)
        if conv.padding_mode != "zeros" and isinstance(geometry, dict):
            # its forward pads `x`, then runs a conv packed without padding, as F.conv2d does
            pad_h, pad_w = geometry["padding"]
            geometry.update(height=geometry["height"] + 2 * pad_h,
                            width=geometry["width"] + 2 * pad_w, padding=(0, 0))
        self._record(path, geometry, _quantization(conv, x, output), quantized=True)

    def _record(self, path: str, geometry: dict[str, Any] | str, rest: dict[str, Any] | str,
                quantized: bool = False) -> None:
        """A call's fields (`geometry` and the `rest`), or the first one's reason why qbench
        cannot measure it; a conv that is the model itself is named after its class."""
        path = path or self.root_name
        if isinstance(geometry, str) or isinstance(rest, str):
            self.found.skipped.append((path, geometry if isinstance(geometry, str) else rest))
        else:
            self.found.calls.append(ConvCall(path, geometry | rest, quantized))


def _call_path(stack: Sequence[nn.Module], paths: dict[nn.Module, str]) -> str:
    """The name of a `F.conv2d` call made while the modules of `stack` run (innermost last):
    the path of the conv module that made it, else `conv2d` after the path of the module whose
    forward made it."""
    if stack and isinstance(stack[-1], nn.Conv2d):
        return paths[stack[-1]]
    return _functional_path(paths[stack[-1]] if stack else "")


def _functional_path(module_path: str) -> str:
    """The name of a functional conv called from the forward of the module at `module_path`."""
    return f"{module_path}.conv2d" if module_path else "conv2d"


def _quantization(conv: nnq.Conv2d, x: torch.Tensor,
                  output: torch.Tensor) -> dict[str, Any] | str:
    """The suite fields of a quantized conv but its geometry's (`_geometry`), read from its
    module, its input `x` and its `output`, or why qbench cannot measure it."""
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


def _geometry(x: torch.Tensor, weight: torch.Tensor, stride: Any, padding: Any, dilation: Any,
              groups: int) -> dict[str, Any] | str:
    """The suite fields of the geometry of a conv of `weight` (K, C/groups, R, S) over `x`, its
    other arguments as `F.conv2d` takes them, or why qbench cannot measure it."""
    kernel_size, dilation = tuple(weight.shape[-2:]), as_pair(dilation)
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        totals = [d * (k - 1) for d, k in zip(dilation, kernel_size)]
        if any(total % 2 for total in totals):
            return "padding='same' pads one side more here (an even kernel, an odd dilation)"
        padding = (totals[0] // 2, totals[1] // 2)
    return {"in_channels": weight.shape[1] * groups, "out_channels": weight.shape[0],
            "height": int(x.shape[-2]), "width": int(x.shape[-1]), "kernel_size": kernel_size,
            "stride": as_pair(stride), "padding": as_pair(padding), "dilation": dilation,
            "groups": groups}


def _epilogues(model: nn.Module) -> dict[str, list[tuple[bool, bool]]]:
    """Per conv call's name (`_call_path`), per call in order: (a BatchNorm2d folds into it, a
    ReLU fuses into it), from the model's torch.fx graph (the module docstring says when)."""
    modules = dict(model.named_modules())
    epilogues: defaultdict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for node in _ConvLeafTracer().trace(model).nodes:
        if node.op == "call_module" and isinstance(modules[node.target], nn.Conv2d):
            path = node.target
        elif node.op == "call_function" and node.target is F.conv2d:
            path = _functional_path(list(node.meta.get("nn_module_stack") or [""])[-1])
        else:
            continue
        after = _next_op(node, modules)
        folded = after is not None and _is_batch_norm(after, modules)
        if folded:
            after = _next_op(after, modules)
        epilogues[path].append((folded, after is not None and _is_relu(after, modules)))
    return epilogues


class _ConvLeafTracer(torch.fx.Tracer):
    """torch.fx's tracer, with every conv module a leaf: a subclass's forward (one that pads by
    itself, with arithmetic on the input's size that tracing cannot do) stays one node; so does
    a TorchScript module, which it cannot trace."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return (isinstance(module, (nn.Conv2d, torch.jit.ScriptModule))
                or super().is_leaf_module(module, qualified_name))


def _next_op(node: torch.fx.Node, modules: dict[str, nn.Module]) -> torch.fx.Node | None:
    """The one node that takes `node`'s value, past modules that pass it on unchanged in eval
    mode (Identity, Dropout); None where several take it. Nodes that read only its shape
    (`x.shape`, `x.size()`, `x.dim()`, as asserts do) do not count."""
    users = [user for user in node.users if not _reads_shape(user)]
    if len(users) != 1:
        return None
    user = users[0]
    if user.op == "call_module" and isinstance(modules[user.target], _PASS_THROUGH_MODULES):
        return _next_op(user, modules)
    return user


def _reads_shape(node: torch.fx.Node) -> bool:
    return ((node.op == "call_function" and node.target is getattr)
            or (node.op == "call_method" and node.target in _SHAPE_METHODS))


def _is_batch_norm(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.BatchNorm2d)
    return node.op == "call_function" and node.target is F.batch_norm


def _is_relu(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _RELU_MODULES)
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in _RELU_METHODS
