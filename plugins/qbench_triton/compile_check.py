"""Compile the kernels for a GPU architecture without a GPU (Triton ships ptxas): `python -m
qbench_triton.compile_check 80 90`. Prints each kernel's tensor-core instruction and shared memory;
exits non-zero when one fails to compile. Run without TRITON_INTERPRET."""

from __future__ import annotations

import re
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from qbench_triton import kernels

_POINTERS = {"x_ptr": "*u8", "w_ptr": "*i8", "out_ptr": "*u8", "corr_ptr": "*i32",
             "wzp_ptr": "*i32", "bias_ptr": "*fp32", "mult_ptr": "*fp32",
             "partial_ptr": "*i32", "arrival_ptr": "*i32"}
_FLOATS = ("out_zp", "lo", "hi")  # every other argument is a pointer, an i32 or a constexpr
_DIVISIBLE = ("M", "C", "K", "CG", "KG")
_SHAPE = dict(R=3, S=3, HAS_WZP=True, BORDER=True)
# A vector of bytes that a masked load starts from, when `other` is a byte over 127: Triton 3.6
# sign-extends it into the 32-bit word (0xffffff80) instead of repeating it (0x80808080); the
# kernels must use other=0 on byte loads.
_MISPACKED_OTHER = re.compile(r"mov\.u32 %r\d+, 0xf{6,}[89a-f][0-9a-f];")


def compile_kernel(kernel, constants: dict, capability: int, unsigned: bool, warps: int):
    """The compiled kernel for `capability` (80, 90, ...)."""
    constants = dict(constants, X_UNSIGNED=unsigned)
    signature = {name: ("constexpr" if name in constants else _POINTERS.get(name) or
                        ("fp32" if name in _FLOATS else "i32")) for name in kernel.arg_names}
    if not unsigned:
        signature.update(x_ptr="*i8", out_ptr="*i8")
    # as Triton's launcher specialises a ResNet layer: aligned pointers, channel counts and rows
    # divisible by 16
    divisible = {(kernel.arg_names.index(name),): [["tt.divisibility", 16]]
                 for name in [*_POINTERS, *_DIVISIBLE] if name in kernel.arg_names}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=divisible)
    return triton.compile(source, target=GPUTarget("cuda", capability, 32),
                          options={"num_warps": warps, "num_stages": 3})


def main(capabilities: list[int]) -> int:
    variants = [("gemm", kernels.conv_gemm_kernel,
                 dict(_SHAPE, MERGE_S=True, BM=128, BN=128, BK=64)),
                ("direct", kernels.conv_direct_kernel,  # depthwise: vectorised loads
                 dict(_SHAPE, CG=1, KG=1, BM=64, BN=64))]
    status = 0
    for capability in capabilities:
        for name, kernel, constants in variants:
            for unsigned in (True, False):
                compiled = compile_kernel(kernel, constants, capability, unsigned, warps=4)
                ptx = compiled.asm["ptx"]
                mma = sorted({line.split()[0] for line in ptx.splitlines()
                              if "mma" in line and line.strip().startswith(("mma", "wgmma"))})
                print(f"sm_{capability} {name} {'quint8' if unsigned else 'qint8'}: "
                      f"shared {compiled.metadata.shared} B, {' '.join(mma) or 'no mma'}")
                if _MISPACKED_OTHER.search(ptx):
                    print(f"  a masked byte load's default is packed wrongly: {_MISPACKED_OTHER}",
                          file=sys.stderr)
                    status = 1
    return status


if __name__ == "__main__":
    sys.exit(main([int(arg) for arg in sys.argv[1:]] or [80, 90]))
