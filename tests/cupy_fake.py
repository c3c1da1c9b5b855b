"""A stand-in for the `cupy` module on the CPU: `RawModule(...).get_function(name)` returns a
"kernel" that takes the real kernel's arguments, in the real order and types, and computes what
that kernel's __host__ __device__ functions compute, through tests/cuda/host_check.cu. It checks
the backend's argument marshalling, not the kernels' thread code (the GPU tests do that)."""

from __future__ import annotations

import subprocess
import types

import numpy as np
import torch

KINDS = {"qbench::conv_direct": 0, "qbench::conv_depthwise": 1, "qbench::conv_mma": 2}
UNSIGNED = {"unsigned char": 1, "signed char": 0}


def make_fake_cupy(host_check: str) -> types.ModuleType:
    class Kernel:
        def __init__(self, expression: str):
            name, _, rest = expression.partition("<")
            self.kind = KINDS[name]
            self.template_args = [a.strip() for a in rest.rstrip(">").split(",")]

        def __call__(self, grid, block, args):
            x, w, y, w_sums, w_zero_points, bias_terms, multipliers, *ints = args
            assert all(isinstance(v, np.int32) for v in ints) and len(ints) == 22
            # the kernel reads these as int and float: another dtype is misread on a GPU
            assert (w.dtype, w_sums.dtype, w_zero_points.dtype) == (torch.int8, torch.int32,
                                                                     torch.int32)
            assert bias_terms.dtype == multipliers.dtype == torch.float32
            assert x.dtype == (torch.uint8 if UNSIGNED[self.template_args[0]] else torch.int8)
            assert y.dtype == (torch.uint8 if UNSIGNED[self.template_args[1]] else torch.int8)
            vector = int(self.template_args[2]) if self.kind in (0, 1) else 0
            header = np.array([self.kind, UNSIGNED[self.template_args[0]],
                               UNSIGNED[self.template_args[1]], vector, *ints], dtype="<i4")
            blob = b"".join([header.tobytes(), x.numpy().tobytes(), w.numpy().tobytes(),
                             w_sums.numpy().astype("<i4").tobytes(),
                             w_zero_points.numpy().astype("<i4").tobytes(),
                             bias_terms.numpy().astype("<f4").tobytes(),
                             multipliers.numpy().astype("<f4").tobytes()])
            out = subprocess.run([host_check], input=blob, capture_output=True, check=True).stdout
            y.copy_(torch.frombuffer(bytearray(out), dtype=y.dtype).view(y.shape))

    class RawModule:
        def __init__(self, code: str, options: tuple[str, ...], name_expressions: list[str]):
            assert "#include" in code and any(o.startswith("-I") for o in options)
            self.expressions = list(name_expressions)

        def get_function(self, expression: str) -> Kernel:
            assert expression in self.expressions, expression
            return Kernel(expression)

    cupy = types.ModuleType("cupy")
    cupy.RawModule = RawModule
    cupy.asarray = lambda tensor: tensor  # the "device array" is the CPU tensor itself
    return cupy
