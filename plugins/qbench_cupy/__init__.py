"""The `cupy` backend: hand-written CUDA C int8 conv kernels launched through cupy.RawModule.

Declared so that `qbench backends` shows where it stands; the implementation comes with issue #6.
Until then it is unavailable, never a stand-in that computes something else.
"""

from __future__ import annotations

from qbench import BackendInfo, Verdict, hookimpl

NAME = "cupy"


@hookimpl
def qbench_backends() -> list[BackendInfo]:
    return [BackendInfo(NAME, "cuda", description="hand-written CUDA C int8 conv kernels launched through cupy.RawModule")]


@hookimpl
def qbench_availability(backend: str) -> Verdict | None:
    if backend != NAME:
        return None
    return Verdict.no("not implemented yet (issue #6); it will need cupy-cuda13x (or cupy-cuda12x) and a CUDA GPU")
