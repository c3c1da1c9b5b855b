"""The `reference` backend: qbench's exact integer reference, usable through the qbench API.

Slow by design (a float64 convolution); not run by default in suites, where it is the judge.
"""

from __future__ import annotations

from typing import Any

import torch

import qbench
from qbench import BackendInfo, ConvParams, QuantizedActivation, QuantizedWeight, hookimpl
from qbench.reference import reference_conv2d

NAME = "reference"


@hookimpl
def qbench_backends() -> list[BackendInfo]:
    return [BackendInfo(NAME, "cpu", version=qbench.__version__, default=False,
                        description="exact integer reference: float64 conv, fbgemm-order "
                                    "float32 requantization")]


@hookimpl
def qbench_prepack(backend: str, weight: QuantizedWeight, bias: torch.Tensor | None,
                   params: ConvParams) -> Any:
    if backend != NAME:
        return None
    return (weight, bias, params)


def _run(packed: Any, input: QuantizedActivation, output: QuantizedActivation, relu: bool) -> None:
    weight, bias, params = packed
    output.data.copy_(reference_conv2d(input, weight, bias, params, output.scale,
                                       output.zero_point, output.dtype, relu))


@hookimpl
def qbench_apply(backend: str, packed: Any, input: QuantizedActivation,
                 output: QuantizedActivation) -> None:
    if backend == NAME:
        _run(packed, input, output, relu=False)


@hookimpl
def qbench_apply_relu(backend: str, packed: Any, input: QuantizedActivation,
                      output: QuantizedActivation) -> None:
    if backend == NAME:
        _run(packed, input, output, relu=True)
