"""Compiled for sm_90 (without a GPU), a multiply and an addition in float32, with and without a
clamp between them: prints the float multiply-adds that `compile_check.fused_multiply_adds` finds
in each (tests/test_triton.py: fused without the clamp, not with it). Run without
TRITON_INTERPRET."""

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from qbench_triton.compile_check import fused_multiply_adds, sass


@triton.jit
def scaled(x_ptr, out_ptr, CLAMPED: tl.constexpr):
    """out = x * 0.37 + 1.5 * 2^23, with CLAMPED the product clamped to [-128, 127] first, as the
    kernels' requantization clamps it."""
    offsets = tl.arange(0, 128)
    v = tl.load(x_ptr + offsets) * 0.37
    if CLAMPED:
        v = tl.minimum(tl.maximum(v, -128.0), 127.0)
    tl.store(out_ptr + offsets, v + 12582912.0)


for clamped in (False, True):
    source = ASTSource(fn=scaled, signature={"x_ptr": "*fp32", "out_ptr": "*fp32",
                                             "CLAMPED": "constexpr"},
                       constexprs={"CLAMPED": clamped})
    print(fused_multiply_adds(sass(triton.compile(source, target=GPUTarget("cuda", 90, 32)))))
