"""Which of PyTorch's CPU quantized engines add pairs of uint8 x int8 products in int16 on this
CPU, and the problems they compute exactly there.

PyTorch 2.13's fbgemm and oneDNN (and x86, which hands each conv to one of them) multiply uint8
activations by int8 weights with AVX-512 VNNI's VPDPBUSD, which adds in int32, where the CPU has
it. Without it (an AVX2 AMD EPYC, 2026-12-08) they multiply with VPMADDUBSW, which adds each
pair of products in int16, saturating: on full-range activations fbgemm and x86 are then off on
every kind of conv and oneDNN on those of one group (up to 75 LSB on the tests' small convs),
and all three are exact on 7 bits' activations (`reduce_range`, as PyTorch's x86 and fbgemm
qconfigs quantize them). A probe conv tells which engines do so here.
"""

from __future__ import annotations

import torch

from qbench.problem import ConvProblem

# The probe: a 3x3 conv of 16 channels, every activation 255 and every weight 127, so that each
# pair of products (64,770) saturates at 32,767 where an engine adds pairs in int16.
_PROBE_CHANNELS, _PROBE_TAPS = 16, 9
_PROBE_EXACT = _PROBE_CHANNELS * _PROBE_TAPS * 255 * 127
_PROBE_OUT_SCALE = 2e4  # the exact sum comes out 233, the saturated one about 118


def _adds_pairs_in_int16(engine: str) -> bool:
    """Whether `engine`'s probe conv is off by more than 1 LSB."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        shape = (1, _PROBE_CHANNELS, 3, 3)
        x = torch.quantize_per_tensor(torch.full(shape, 255.0), 1.0, 0, torch.quint8)
        w = torch.quantize_per_tensor(torch.full(shape, 127.0), 1.0, 0, torch.qint8)
        packed = torch.ops.quantized.conv2d_prepack(w, None, [1, 1], [0, 0], [1, 1], 1)
        got = int(torch.ops.quantized.conv2d(x, packed, _PROBE_OUT_SCALE, 0).int_repr())
    finally:
        torch.backends.quantized.engine = before
    return abs(got - round(_PROBE_EXACT / _PROBE_OUT_SCALE)) > 1


ADDING_PAIRS_IN_INT16 = frozenset(
    engine for engine in ("x86", "fbgemm", "onednn")
    if engine in torch.backends.quantized.supported_engines and _adds_pairs_in_int16(engine))


def exact_inputs(problem: ConvProblem, engine: str) -> ConvProblem:
    """`problem`, or where `engine` adds pairs of products in int16 on this CPU, the problem with
    quint8 activations in 7 bits (its zero point clamped into them), which cannot saturate it."""
    if engine not in ADDING_PAIRS_IN_INT16:
        return problem
    return problem.replace(in_dtype="quint8", reduce_range=True,
                           in_zero_point=min(max(problem.in_zero_point, 0), 127))
