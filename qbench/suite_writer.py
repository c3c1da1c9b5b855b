"""A suite file of a model's distinct conv layers (`qbench suite`), as `qbench.suite` reads it;
`suite_text` writes `qbench random-suite`'s too.

Calls with the same problem are one case, counted (`count`: occurrences in the model, for network
totals) and named after the first module that made it, the others named in a comment above it
(comments are why the TOML is written here: `tomli-w` writes none). Fields at the problem
model's defaults (stride 1, no padding, dilation 1, groups 1, a bias, quint8 in and out,
per-channel weights, zero points 0) are left out; `relu` is always written, and `reduce_range`
wherever a layer has it (a random suite's, set).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

import qbench
from qbench.model_convs import ConvCall, ModelConvs
from qbench.problem import ConvProblem

_WIDTH = 100
_ORDER = ("in_channels", "out_channels", "height", "width", "kernel_size", "stride", "padding",
          "dilation", "groups", "in_dtype", "in_zero_point", "weight_qscheme",
          "weight_zero_point", "out_dtype", "bias", "relu", "reduce_range")
# fields left out where they hold the problem model's default, which the suite then gives them
_LEFT_OUT = {f.name: f.default for f in fields(ConvProblem)
             if f.name in _ORDER[_ORDER.index("stride"):_ORDER.index("relu")]}
_QUANTIZED_NOTE = ("Quantized convs: in_dtype, in_zero_point, weight_qscheme, weight_zero_point, "
                   "out_dtype, bias and relu (ConvReLU2d) are the module's; the scales and the "
                   "output zero point are qbench's (out_scale and out_zero_point auto), since "
                   "the model's, calibrated on its own data, would saturate most outputs on "
                   "qbench's data over the whole range. A model quantized with fbgemm's or x86's "
                   "qconfig keeps its activations in 7 bits: run this suite with --set "
                   "reduce_range=true to fill them so.")


@dataclass(frozen=True)
class Layer:
    """A case of a written suite: its name, suite fields and, for a model's distinct problem, the
    modules that ran it (one entry a call, so a module called twice is there twice)."""

    name: str
    fields: dict[str, Any]
    paths: tuple[str, ...]


def distinct_layers(calls: Sequence[ConvCall]) -> list[Layer]:
    """`calls` grouped by their fields, in the order each first ran; each named after its first
    call's module, with `#2`, `#3`, ... after a name already taken (a module that ran two
    problems)."""
    grouped: dict[tuple[tuple[str, Any], ...], list[ConvCall]] = {}
    for call in calls:
        grouped.setdefault(tuple(sorted(call.fields.items())), []).append(call)
    layers, taken = [], set()
    for group in grouped.values():
        name, copy = group[0].path, 1
        while name in taken:
            copy += 1
            name = f"{group[0].path}#{copy}"
        taken.add(name)
        layers.append(Layer(name, group[0].fields, tuple(call.path for call in group)))
    return layers


def model_warnings(convs: ModelConvs) -> list[str]:
    """What a suite of `convs` leaves out, and what it cannot know: for its header and stderr."""
    warnings = [f"Left out: {path}: {reason}" for path, reason in convs.skipped]
    if convs.untraced and any(not call.quantized for call in convs.calls):
        warnings.append(f"Every float conv's case has relu = false and a bias: {convs.untraced}, "
                        "so the ReLUs and BatchNorms after its convs are unknown.")
    return warnings


def model_suite(convs: ModelConvs, command: str, name: str, description: str,
                batches: Sequence[int]) -> str:
    """The suite of a model's convs (`model_convs`) that `command` made: its distinct layers
    (`distinct_layers`) at `batches`, under a header of how it was made, how `relu` and `bias`
    were read and `model_warnings`."""
    layers = distinct_layers(convs.calls)
    left_out = f" ({len(convs.skipped)} left out, below)" if convs.skipped else ""
    notes = [f"Made by `{command}` (qbench {qbench.__version__}, torch {torch.__version__}): "
             f"{len(convs.calls) + len(convs.skipped)} convolutions{left_out}, {len(layers)} "
             "distinct; `count` is how often a layer occurs, the comment above a case the "
             "modules that ran it."]
    if not convs.untraced and any(not call.quantized for call in convs.calls):
        notes.append("relu: a ReLU or ReLU6 alone takes the conv's output (after a BatchNorm "
                     "alone, if any); bias: the conv's own or a BatchNorm's, folded into it.")
    if any(call.quantized for call in convs.calls):
        notes.append(_QUANTIZED_NOTE)
    return suite_text(name, description, batches, layers, notes + model_warnings(convs))


def suite_text(name: str, description: str, batches: Sequence[int], layers: Sequence[Layer],
               notes: Sequence[str]) -> str:
    """The suite: [suite] `name` and `description`, the `batches` as [defaults]' batch (a sweep
    when several), a [[case]] per layer (with the modules that ran it in a comment above, where
    it has any), and `notes` as comments at the top."""
    lines = [_comment(note) for note in notes] + ([""] if notes else [])
    lines += ["[suite]", f"name = {_string(name)}", f"description = {_string(description)}", "",
              "[defaults]", f"batch = {_value(list(batches) if len(batches) > 1 else batches[0])}"]
    for layer in layers:
        lines += ["", *([_comment(", ".join(layer.paths))] if layer.paths else []), "[[case]]",
                  f"name = {_string(layer.name)}"]
        lines += [f"{key} = {_value(layer.fields[key])}" for key in _ORDER
                  if key in layer.fields and _LEFT_OUT.get(key, object()) != layer.fields[key]]
        if len(layer.paths) > 1:
            lines.append(f"count = {len(layer.paths)}")
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    """`text` as comment lines within _WIDTH columns, what TOML's comments may not hold (control
    characters) written as Python escapes."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return "\n".join(textwrap.wrap(text, _WIDTH, initial_indent="# ", subsequent_indent="# ",
                                   break_on_hyphens=False, break_long_words=False))


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, but for DEL, which TOML wants escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    """A TOML int, bool, string, or [h, w] pair (an int where h == w), or a list of ints."""
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return str(value[0]) if value[0] == value[1] else f"[{value[0]}, {value[1]}]"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
