"""Test-only backends that misbehave in known ways, to prove the host catches each one.

faulty-raises: apply raises. faulty-lazy: apply writes nothing (only the poison can catch it).
faulty-aborts, faulty-segfaults, faulty-hangs: apply kills its process or never returns (run these
only in worker processes). faulty-corrupts: exact, but leaves its process as a library that
corrupts the heap does: another faulty backend's next call there aborts.
faulty-off-by-two: the exact result plus 2 LSB. faulty-refuses: prepack raises UnsupportedError.
faulty-stale: exact on a packed weight's first call, then writes nothing, as a plan cached by the
first call that kept a stale output pointer would (only a check after the timed calls catches it).
faulty-exact: the reference, written in place (a control that must pass), slowed down by
QBENCH_FAULTY_DELAY_S seconds per call when that is set.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from dataclasses import dataclass

import torch

from qbench import BackendInfo, UnsupportedError, hookimpl
from qbench.problem import dtype_range
from qbench.reference import reference_conv2d

NAMES = ("faulty-raises", "faulty-lazy", "faulty-off-by-two", "faulty-refuses", "faulty-exact",
         "faulty-aborts", "faulty-segfaults", "faulty-hangs", "faulty-corrupts", "faulty-stale")
_process_corrupted = False  # by faulty-corrupts


@dataclass
class _Packed:
    weight: torch.Tensor
    bias: torch.Tensor | None
    params: object
    calls: int = 0  # of apply


@hookimpl
def qbench_backends():
    return [BackendInfo(name, "cpu", default=False) for name in NAMES]


@hookimpl
def qbench_prepack(backend, weight, bias, params):
    if backend not in NAMES:
        return None
    if backend == "faulty-refuses":
        raise UnsupportedError("faulty-refuses refuses everything")
    return _Packed(weight, bias, params)


def _apply(backend, packed, input, output, relu):
    global _process_corrupted
    if backend not in NAMES:
        return None
    if _process_corrupted and backend != "faulty-corrupts":
        os.write(2, f"{backend}: double free or corruption (!prev)\n".encode())
        os.abort()
    _process_corrupted = backend == "faulty-corrupts"
    if backend == "faulty-raises":
        raise RuntimeError("injected failure")
    if backend == "faulty-aborts":
        os.write(2, b"faulty-aborts: free(): injected corruption\n")  # as glibc says it
        os.abort()
    if backend == "faulty-segfaults":
        ctypes.string_at(0)  # reads address 0
    if backend == "faulty-hangs":
        print("faulty-hangs: waiting for nothing", file=sys.stderr)
        time.sleep(3600)
    if backend == "faulty-lazy":
        return None
    packed.calls += 1
    if backend == "faulty-stale" and packed.calls > 1:
        return None
    time.sleep(float(os.environ.get("QBENCH_FAULTY_DELAY_S", "0")))
    exact = reference_conv2d(input, packed.weight, packed.bias, packed.params, output.scale,
                             output.zero_point, output.dtype, relu)
    if backend == "faulty-off-by-two":
        lo, hi = dtype_range(output.dtype)
        exact = (exact.to(torch.int16) + 2).clamp(lo, hi).to(exact.dtype)
    output.data.copy_(exact)
    return None


@hookimpl
def qbench_apply(backend, packed, input, output):
    return _apply(backend, packed, input, output, relu=False)


@hookimpl
def qbench_apply_relu(backend, packed, input, output):
    return _apply(backend, packed, input, output, relu=True)
