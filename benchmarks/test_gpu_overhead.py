"""The GPU backends' own cost per call (a benchmark, not a test; GPU only):
`pytest benchmarks/test_gpu_overhead.py --benchmark-group-by=group`.

For cudnn: qbench's apply against a bare `graph.execute_plan_at_index` of the same plan on the same
buffers (target: at most 2 microseconds more). For cupy and triton: apply against the bare kernel
launch.
A 1x1 conv on an 8x8 image keeps the GPU's share small, so that the host side is what is measured.
"""

from __future__ import annotations

import pytest
import torch

from qbench.inputs import make_inputs
from qbench.problem import ConvProblem
from qbench.quantized import QuantizedActivation, nhwc_view
from qbench.registry import load_backends

PROBLEM = ConvProblem(1, 64, 8, 8, 64, (1, 1), in_dtype="qint8", out_dtype="qint8",
                      weight_qscheme="per_tensor", out_scale=1.0, out_zero_point=0).validate()


def _prepared(name: str):
    backend = load_backends()[name]
    if not backend.availability.ok:
        pytest.skip(backend.availability.reason)
    inputs = make_inputs(PROBLEM, 1)
    x = inputs.input.to("cuda", channels_last=True)
    weight = inputs.weight.to("cuda")
    bias = inputs.bias.cuda() if inputs.bias is not None else None
    packed = backend.prepack(weight, bias, inputs.params)
    prepared = backend.prepare_input(x)
    output = QuantizedActivation.output_buffer(PROBLEM, "cuda", channels_last=True)
    apply = backend.apply_function(relu=False)
    apply(packed, prepared, output)  # builds, compiles and tunes
    torch.cuda.synchronize()
    return apply, packed, prepared, output


def _run(benchmark, function, *args, **kwargs):
    benchmark(function, *args, **kwargs)
    torch.cuda.synchronize()


@pytest.mark.parametrize("name", ["cudnn", "cupy", "triton"])
def test_apply(benchmark, name):
    benchmark.group = name  # beside the same backend's bare call
    apply, packed, prepared, output = _prepared(name)
    _run(benchmark, apply, packed, prepared, output)


@pytest.mark.benchmark(group="cudnn")
def test_cudnn_bare_execute(benchmark):
    _, packed, _, _ = _prepared("cudnn")
    call = packed.last.call
    plan = call.execute  # a qbench_cudnn.CudnnExecutor
    _run(benchmark, plan.graph.execute_plan_at_index, dict(call.pack), plan.workspace,
         plan.plan_index, plan.handle)


@pytest.mark.benchmark(group="cupy")
def test_cupy_bare_launch(benchmark):
    _, packed, _, _ = _prepared("cupy")
    last = packed.last
    _run(benchmark, last.launch.function, last.launch.grid, last.launch.block, last.arguments)


@pytest.mark.benchmark(group="triton")
def test_triton_bare_launch(benchmark):
    _, packed, prepared, output = _prepared("triton")
    plan = packed.last  # after the first call: the tuned kernel, launched without the autotuner
    x, _ = prepared
    _run(benchmark, plan.kernel[plan.grid], x, packed.layout.weight, nhwc_view(output.data),
         *plan.tail, **plan.constants)
