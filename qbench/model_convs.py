"""A PyTorch model's 2D convolutions as qbench's problem model sees them, for `qbench suite`.

`load_model` imports a model given as MODULE:NAME; `model_convs` runs it once, in eval mode on
zeros at batch 1, and reads every call of an `nn.Conv2d` (its subclasses included): the suite
fields of its problem, and what quantized inference makes of what follows it, read from the
model's `torch.fx` graph: a BatchNorm2d that alone takes the conv's output folds into its weights
and bias, and a ReLU or ReLU6 that alone takes what comes out of those fuses into it (ReLU6's
clamp at 6 folding into the output scale, as `suites/depthwise.toml` has it). A model that
torch.fx cannot trace (control flow on its values) still gives its shapes; its ReLUs and
BatchNorms are then unknown, and `ModelConvs.untraced` says why.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qbench.errors import QbenchError

_RELU_MODULES = (nn.ReLU, nn.ReLU6)
_RELU_FUNCTIONS = {torch.relu, torch.relu_, F.relu, F.relu_, F.relu6}
_RELU_METHODS = {"relu", "relu_"}
# (folded, relu) of a call that torch.fx did not see: a bias, qbench's default, and no ReLU
_UNKNOWN_EPILOGUE = (True, False)


@dataclass(frozen=True)
class ConvCall:
    """One call of a model's conv: the module's path in the model and the suite fields of its
    problem (`in_channels`, `out_channels`, `height`, `width`, `kernel_size`, `stride`,
    `padding`, `dilation`, `groups`, `bias`, `relu`; pairs as (h, w) tuples)."""

    path: str
    fields: dict[str, Any]


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
    try:
        epilogues = _epilogues(model)
    except Exception as exc:  # torch.fx's refusals have no common type
        epilogues = {}
        reason = (str(exc).strip().splitlines() or [""])[0]
        found.untraced = f"torch.fx could not trace it ({type(exc).__name__}: {reason})"
    calls: defaultdict[str, int] = defaultdict(int)

    def record(path: str, conv: nn.Conv2d, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        height, width = (args[0] if args else kwargs["input"]).shape[-2:]
        traced = epilogues.get(path, [])
        folded, relu = traced[calls[path]] if calls[path] < len(traced) else _UNKNOWN_EPILOGUE
        calls[path] += 1
        problem = _fields(conv, int(height), int(width))
        if isinstance(problem, str):
            found.skipped.append((path, problem))
            return
        problem["bias"] = conv.bias is not None or folded
        problem["relu"] = relu
        found.calls.append(ConvCall(path, problem))

    handles = [module.register_forward_pre_hook(
        lambda conv, args, kwargs, path=path: record(path, conv, args, kwargs), with_kwargs=True)
        for path, module in model.named_modules() if isinstance(module, nn.Conv2d)]
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
        raise QbenchError(f"model {spec}: no torch.nn.Conv2d ran on an input of shape {shape}")
    return found


def _fields(conv: nn.Conv2d, height: int, width: int) -> dict[str, Any] | str:
    """The suite fields of `conv`'s problem on an image of height x width but `bias` and `relu`,
    or why qbench cannot measure it."""
    if conv.padding_mode != "zeros":
        return (f"padding_mode={conv.padding_mode!r}: qbench's convs pad with the zero point, "
                "as padding_mode='zeros' does")
    padding = _padding(conv)
    if padding is None:
        return "padding='same' pads one side more here (an even kernel, an odd dilation)"
    return {"in_channels": conv.in_channels, "out_channels": conv.out_channels,
            "height": height, "width": width, "kernel_size": tuple(conv.kernel_size),
            "stride": tuple(conv.stride), "padding": padding,
            "dilation": tuple(conv.dilation), "groups": conv.groups}


def _padding(conv: nn.Conv2d) -> tuple[int, int] | None:
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
