"""The drop-in API: same tensors and results as PyTorch's quantized conv, and more."""

from __future__ import annotations

import pytest
import torch

import qbench.functional as qf
import qbench.ops as qops
from qbench import UnsupportedError
from qbench.registry import load_backends

torch.manual_seed(0)


def _tensors(in_dtype=torch.quint8, per_channel=True, groups=2, zero_point=3):
    """Activations over 7 bits' range (PyTorch's reduce_range), which PyTorch's CPU engines compute
    exactly also where they add pairs of products in int16 (`cpu_engines`); weights, bias."""
    lowest = 0 if in_dtype == torch.quint8 else -64
    x_int = torch.randint(lowest, lowest + 128, (2, 8, 9, 9))
    x = torch.quantize_per_tensor((x_int - zero_point) * 0.05, 0.05, zero_point, in_dtype)
    w = torch.randn(6, 8 // groups, 3, 3) * 0.3
    if per_channel:
        wq = torch.quantize_per_channel(w, torch.rand(6, dtype=torch.float64) * 0.01 + 0.002,
                                        torch.zeros(6, dtype=torch.long), 0, torch.qint8)
    else:
        wq = torch.quantize_per_tensor(w, 0.005, 0, torch.qint8)
    return x, wq, torch.randn(6)


@pytest.mark.parametrize("backend", ["reference", "torch-x86", "torch-onednn"])
def test_functional_matches_pytorch(backend):
    x, w, b = _tensors()
    torch.backends.quantized.engine = "x86"
    expected = torch.ao.nn.quantized.functional.conv2d(x, w, b, stride=(2, 1), padding=1,
                                                        dilation=(1, 2), groups=2, scale=0.4,
                                                        zero_point=7)
    got = qf.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2, scale=0.4,
                    zero_point=7, backend=backend)
    assert got.dtype == torch.quint8 and got.q_scale() == 0.4 and got.q_zero_point() == 7
    assert got.shape == expected.shape
    assert int((got.int_repr().int() - expected.int_repr().int()).abs().max()) <= 1


def test_ops_mirror_torch_ops_including_relu():
    x, w, b = _tensors(per_channel=False, groups=1)
    torch.backends.quantized.engine = "x86"
    packed = qops.conv2d_prepack(w, b, [1, 1], [1, 1], [1, 1], 1, backend="reference")
    for ours, theirs in ((qops.conv2d, torch.ops.quantized.conv2d),
                         (qops.conv2d_relu, torch.ops.quantized.conv2d_relu)):
        # a fresh PyTorch packing per op: see the next test
        tp = torch.ops.quantized.conv2d_prepack(w, b, [1, 1], [1, 1], [1, 1], 1)
        got, expected = ours(x, packed, 0.3, 50), theirs(x, tp, 0.3, 50)
        assert int((got.int_repr().int() - expected.int_repr().int()).abs().max()) <= 1
    assert int(qops.conv2d_relu(x, packed, 0.3, 50).int_repr().min()) >= 50
    weight, bias = packed.unpack()
    assert torch.equal(weight.int_repr(), w.int_repr()) and torch.equal(bias, b)


@pytest.mark.parametrize("backend", ["torch-x86", "torch-onednn", "torch-fbgemm"])
def test_plain_and_relu_ops_can_share_a_packed_weight(backend):
    """PyTorch's x86/onednn packed weights remember the first op's ReLU; qbench's do not."""
    x, w, b = _tensors(per_channel=False, groups=1)
    packed = qops.conv2d_prepack(w, b, 1, 1, 1, 1, backend=backend)
    reference = qops.conv2d_prepack(w, b, 1, 1, 1, 1, backend="reference")
    for op in (qops.conv2d, qops.conv2d_relu, qops.conv2d):
        got, expected = op(x, packed, 0.3, 50), op(x, reference, 0.3, 50)
        assert int((got.int_repr().int() - expected.int_repr().int()).abs().max()) <= 1, op


def test_qint8_activations_and_output_dtype_beyond_pytorch():
    x, w, b = _tensors(in_dtype=torch.qint8, zero_point=-5)
    y = qf.conv2d(x, w, b, padding=1, groups=2, scale=0.4, zero_point=-3, dtype=torch.qint8)
    assert y.dtype == torch.qint8 and y.q_zero_point() == -3
    # the same real values as quint8 give the same real outputs
    xu = torch.quantize_per_tensor(x.dequantize(), 0.05, 123, torch.quint8)
    yu = qf.conv2d(xu, w, b, padding=1, groups=2, scale=0.4, zero_point=125, dtype=torch.quint8)
    assert torch.equal(y.int_repr().int() + 128, yu.int_repr().int())


def test_unsupported_problem_raises_unsupported_error_with_pytorchs_reason():
    x, w, b = _tensors(in_dtype=torch.qint8)
    with pytest.raises(UnsupportedError, match="QUint8|QUInt8") as info:
        qf.conv2d(x, w, b, padding=1, groups=2, dtype=torch.qint8, backend="torch-x86")
    assert "Unsupported" in type(info.value).__name__
    with pytest.raises(UnsupportedError, match="returns the input's dtype"):
        qf.conv2d(_tensors()[0], w, b, padding=1, groups=2, dtype=torch.qint8, backend="torch-x86")


def test_an_unavailable_backend_is_refused_with_its_reason():
    unavailable = [name for name, backend in load_backends().items()
                   if not backend.availability.ok]
    if not unavailable:  # on a GPU machine with every extra installed
        pytest.skip("every installed backend is available here")
    x, w, b = _tensors()
    with pytest.raises(ValueError, match="unavailable"):
        qf.conv2d(x, w, b, groups=2, backend=unavailable[0])


def test_bad_arguments_are_clear():
    x, w, b = _tensors()
    with pytest.raises(NotImplementedError, match="zero-padding"):
        qf.conv2d(x, w, b, padding_mode="reflect")
    with pytest.raises(ValueError, match="8 channels; weight expects 4 x groups 1"):
        qf.conv2d(x, w, b, groups=1)
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        qf.conv2d(x, w, b, groups=2, backend="nope")
    with pytest.raises(ValueError, match="quantized tensor"):
        qops.conv2d(x.dequantize(), qops.conv2d_prepack(w, b, groups=2), 1.0, 0)

    float_zero_points = torch.quantize_per_channel(
        w.dequantize(), torch.full((6,), 0.01), torch.full((6,), 0.5), 0, torch.qint8)
    with pytest.raises(ValueError, match="unsupported weight qscheme .*float_qparams"):
        qf.conv2d(x, float_zero_points, b, groups=2)


@pytest.mark.parametrize("arguments, message", [
    ({"stride": [1, 1, 1]}, r"stride: expected an int or an \(h, w\) pair of ints, got \[1, 1, 1"),
    ({"padding": "same"}, r"padding: expected an int or an \(h, w\) pair of ints, got 'same'"),
    ({"dilation": (1, 0)}, "dilation: must be >= 1, got 0"),
    ({"padding": -1}, "padding: must be >= 0, got -1"),
    ({"groups": 0}, "groups: must be >= 1, got 0"),
])
def test_prepack_refuses_geometry_that_no_conv_has(arguments, message):
    """As PyTorch's conv2d_prepack does, before the backend's prepack sees it."""
    _, w, b = _tensors()
    with pytest.raises(ValueError, match=message):
        qops.conv2d_prepack(w, b, **{"groups": 2} | arguments)
