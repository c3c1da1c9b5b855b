"""The `triton` backend: a Triton implicit-GEMM int8 conv.

Declared so that `qbench backends` shows where it stands; the implementation comes with issue #4.
Until then it is unavailable, never a stand-in that computes something else.
"""

from __future__ import annotations

from qbench import BackendInfo, Verdict, hookimpl

NAME = "triton"


@hookimpl
def qbench_backends() -> list[BackendInfo]:
    return [BackendInfo(NAME, "cuda", description="a Triton implicit-GEMM int8 conv")]


@hookimpl
def qbench_availability(backend: str) -> Verdict | None:
    if backend != NAME:
        return None
    return Verdict.no("not implemented yet (issue #4); it will need triton>=3.2 and a CUDA GPU, or TRITON_INTERPRET=1 to run on the CPU")
