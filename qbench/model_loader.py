"""The model that `qbench suite MODULE:NAME` names: `load_model`."""

from __future__ import annotations

import ast
import importlib
from typing import Any

from torch import nn

from qbench.errors import QbenchError, describe


def load_model(spec: str) -> nn.Module:
    """The model that MODULE:NAME names: NAME (dotted for attributes of attributes) in the
    importable MODULE, an `nn.Module` or a function that returns one when called with no
    arguments (`torchvision.models:resnet50`); or MODULE:NAME(ARGUMENTS), NAME called with
    Python literals (`timm:create_model("resnet50", pretrained=False)`). A QbenchError, naming
    `spec`, otherwise."""
    module_name, sep, target = spec.partition(":")
    if not sep or not module_name or not target:
        raise QbenchError(f"model {spec!r}: expected MODULE:NAME, such as "
                          "torchvision.models:resnet50")
    name, arguments = _call(spec, target)
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise QbenchError(f"model {spec}: cannot import {module_name}: {exc}") from None
    for part in name.split("."):
        if not hasattr(found, part):
            raise QbenchError(f"model {spec}: {module_name} has no {name}")
        found = getattr(found, part)
    if arguments is not None or (not isinstance(found, nn.Module) and callable(found)):
        args, kwargs = arguments or ([], {})
        try:
            found = found(*args, **kwargs)
        except Exception as exc:  # the user's code: its failure is bad input
            call = target if arguments is not None else f"{name}()"
            raise QbenchError(f"model {spec}: {call} raised {describe(exc)}") from None
    if not isinstance(found, nn.Module):
        raise QbenchError(f"model {spec}: got a {type(found).__name__}, not a torch.nn.Module "
                          "or a function that returns one")
    return found


def _call(spec: str, target: str) -> tuple[str, tuple[list[Any], dict[str, Any]] | None]:
    """(NAME, None) for a `target` NAME; (NAME, (args, kwargs)) for NAME(ARGUMENTS), each
    argument a Python literal. A QbenchError, naming `spec`, for anything else."""
    if "(" not in target:
        return target, None
    try:
        call = ast.parse(target, mode="eval").body
        if not isinstance(call, ast.Call) or any(k.arg is None for k in call.keywords):
            raise ValueError(target)
        name = ast.unparse(call.func)
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(name)
        return name, ([ast.literal_eval(a) for a in call.args],
                      {str(k.arg): ast.literal_eval(k.value) for k in call.keywords})
    except (SyntaxError, ValueError, TypeError):
        raise QbenchError(f"model {spec}: expected NAME or NAME(ARGUMENTS), each argument a "
                          "Python literal, such as create_model(\"resnet50\", "
                          "pretrained=False)") from None
