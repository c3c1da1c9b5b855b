"""`torch-fp16`, the float figure int8 is held to, is PyTorch's fastest fp16 conv: cuDNN's
algorithms autotuned, and with ReLU one fused cuDNN op of conv, bias and ReLU where cuDNN has one,
else conv then relu_, as `details` says. cuDNN runs only on a GPU: here its fused op is stood in
for, to check what the backend does with it (tests/test_gpu.py runs the real one)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import qbench_torch
from qbench.inputs import make_inputs
from qbench.problem import ConvProblem
from qbench.quantized import QuantizedActivation

BACKEND = "torch-fp16"


def _prepared(bias: bool = True):
    problem = ConvProblem(2, 8, 6, 5, 12, (3, 3), stride=(2, 1), padding=(1, 1), groups=2,
                          bias=bias)
    inputs = make_inputs(problem, seed=3)
    packed = qbench_torch.qbench_prepack(BACKEND, inputs.weight, inputs.bias, inputs.params)
    x = qbench_torch.qbench_prepare_input(
        BACKEND, inputs.input.to("cpu", channels_last=True))
    output = QuantizedActivation.output_buffer(problem, "cpu", channels_last=True)
    return packed, x, output


def _expected(packed, x: torch.Tensor) -> torch.Tensor:
    p = packed.params
    return torch.relu(F.conv2d(x.float(), packed.weight.float(), packed.fused_bias.float(),
                               p.stride, p.padding, p.dilation, p.groups))


class _FusedStandIn:
    """torch.cudnn_convolution_relu as cuDNN would compute it, or raising `refusal`; records
    its calls and whether cuDNN's autotuning was on during each."""

    def __init__(self, refusal: str | None = None):
        self.refusal = refusal
        self.autotuned: list[bool] = []

    def __call__(self, x, weight, bias, stride, padding, dilation, groups):
        self.autotuned.append(torch.backends.cudnn.benchmark)
        if self.refusal is not None:
            raise RuntimeError(self.refusal)
        y = F.conv2d(x.float(), weight.float(), bias.float(), stride, padding, dilation, groups)
        return torch.relu(y).to(x.dtype)


@pytest.mark.parametrize("bias", [True, False])
def test_relu_runs_as_one_fused_cudnn_op_with_autotuned_algorithms(monkeypatch, bias):
    fused = _FusedStandIn()
    monkeypatch.setattr(torch, "cudnn_convolution_relu", fused)
    packed, x, output = _prepared(bias)
    before = torch.backends.cudnn.benchmark
    for _ in range(2):
        y = qbench_torch.qbench_apply_relu(BACKEND, packed, x, output)
        torch.testing.assert_close(y.float(), _expected(packed, x), atol=2e-2, rtol=2e-3)
    assert fused.autotuned == [True, True] and torch.backends.cudnn.benchmark == before
    if not bias:  # a bias of zeros, made once, so that the fused op allocates none a call
        assert packed.bias is None and not packed.fused_bias.any()
    assert qbench_torch.qbench_details(BACKEND, packed) == {
        "algorithms": "cudnn.benchmark", "relu": "fused: cudnn_convolution_relu"}


def test_without_a_fused_engine_conv_then_relu_run_and_details_say_why(monkeypatch):
    fused = _FusedStandIn("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED\n(no engine)")
    monkeypatch.setattr(torch, "cudnn_convolution_relu", fused)
    packed, x, output = _prepared()
    for _ in range(2):
        y = qbench_torch.qbench_apply_relu(BACKEND, packed, x, output)
        torch.testing.assert_close(y.float(), _expected(packed, x), atol=2e-2, rtol=2e-3)
    assert len(fused.autotuned) == 1  # not tried again
    assert qbench_torch.qbench_details(BACKEND, packed)["relu"] == (
        "conv2d then relu_ (cudnn_convolution_relu raised: cuDNN error: "
        "CUDNN_STATUS_NOT_SUPPORTED)")


def test_a_fused_op_that_ran_and_then_fails_is_an_error(monkeypatch):
    fused = _FusedStandIn()
    monkeypatch.setattr(torch, "cudnn_convolution_relu", fused)
    packed, x, output = _prepared()
    qbench_torch.qbench_apply_relu(BACKEND, packed, x, output)
    fused.refusal = "CUDA error: an illegal memory access was encountered"
    with pytest.raises(RuntimeError, match="illegal memory access"):
        qbench_torch.qbench_apply_relu(BACKEND, packed, x, output)


def test_without_relu_the_plain_conv_runs(monkeypatch):
    fused = _FusedStandIn()
    monkeypatch.setattr(torch, "cudnn_convolution_relu", fused)
    packed, x, output = _prepared()
    y = qbench_torch.qbench_apply(BACKEND, packed, x, output)
    p = packed.params
    torch.testing.assert_close(y, F.conv2d(x, packed.weight, packed.bias, p.stride, p.padding,
                                           p.dilation, p.groups))
    assert fused.autotuned == []
    assert qbench_torch.qbench_details(BACKEND, packed) == {"algorithms": "cudnn.benchmark"}


def test_fp32_on_the_cpu_takes_no_cudnn_path(monkeypatch):
    fused = _FusedStandIn()
    monkeypatch.setattr(torch, "cudnn_convolution_relu", fused)
    inputs = make_inputs(ConvProblem(1, 4, 5, 5, 4, (3, 3), padding=(1, 1), relu=True), seed=1)
    packed = qbench_torch.qbench_prepack("torch-fp32", inputs.weight, inputs.bias, inputs.params)
    x = qbench_torch.qbench_prepare_input("torch-fp32", inputs.input.to("cpu", True))
    y = qbench_torch.qbench_apply_relu("torch-fp32", packed, x, None)
    assert not packed.cudnn and fused.autotuned == [] and (y >= 0).all() and y.any()
    assert qbench_torch.qbench_details("torch-fp32", packed) is None
