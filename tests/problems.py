"""Small problems that together exercise every feature a backend must get right, shared by the
backends' tests: zero points, quint8/qint8 on both sides, per-tensor and per-channel weights,
padding, stride, dilation, asymmetric pairs, groups, depthwise, odd channel counts."""

from __future__ import annotations

from qbench.problem import ConvProblem

P = ConvProblem
PROBLEMS = {
    "gemm-3x3-pad": P(2, 32, 7, 6, 24, (3, 3), padding=(1, 1)),
    "gemm-quint8-zero-points": P(1, 20, 6, 6, 17, (3, 3), padding=(1, 1), in_zero_point=200,
                                 out_zero_point=None, relu=True),
    "gemm-qint8-in-out": P(1, 16, 5, 5, 16, (1, 1), in_dtype="qint8", in_zero_point=-9,
                           out_dtype="qint8"),
    "gemm-per-tensor-no-bias": P(1, 48, 5, 5, 8, (3, 3), padding=(2, 2), dilation=(2, 2),
                                 weight_qscheme="per_tensor", bias=False),
    "gemm-weight-zero-point": P(1, 16, 6, 6, 8, (3, 3), padding=(1, 1), in_zero_point=30,
                                weight_zero_point=-5),
    "gemm-asymmetric": P(2, 17, 9, 7, 9, (3, 1), stride=(2, 1), padding=(1, 0),
                         dilation=(1, 2)),
    "gemm-groups": P(1, 32, 5, 5, 32, (3, 3), padding=(1, 1), groups=2, relu=True),
    "gemm-quint8-out-qint8": P(1, 16, 4, 4, 16, (3, 3), padding=(1, 1), out_dtype="qint8",
                               in_zero_point=128),
    # a merged kernel row of 12 lanes, fewer than a block's 32 (the padding suite's 4 channels)
    "gemm-merged-narrow": P(2, 4, 7, 9, 12, (3, 3), stride=(1, 2), padding=(1, 1),
                            in_zero_point=140, relu=True),
    "direct-odd-channels": P(1, 7, 6, 6, 5, (3, 3), padding=(1, 1), in_zero_point=3),
    "direct-resnext-width-4": P(2, 16, 8, 8, 16, (3, 3), padding=(1, 1), stride=(2, 2),
                                groups=4, relu=True),
    "direct-depthwise": P(2, 24, 8, 8, 24, (3, 3), padding=(1, 1), groups=24),
    "direct-depthwise-multiplier-2": P(1, 8, 7, 7, 16, (5, 5), padding=(2, 2), groups=8,
                                       in_dtype="qint8", in_zero_point=5, weight_zero_point=3),
    "direct-conv1-like": P(1, 3, 16, 16, 8, (7, 7), stride=(2, 2), padding=(3, 3), relu=True),
}
