"""The `cudnn` backend: the fused cuDNN-frontend int8 conv graph.

Declared so that `qbench backends` shows where it stands; the implementation comes with issue #5.
Until then it is unavailable, never a stand-in that computes something else.
"""

from __future__ import annotations

from qbench import BackendInfo, Verdict, hookimpl

NAME = "cudnn"


@hookimpl
def qbench_backends() -> list[BackendInfo]:
    return [BackendInfo(NAME, "cuda", description="the fused cuDNN-frontend int8 conv graph")]


@hookimpl
def qbench_availability(backend: str) -> Verdict | None:
    if backend != NAME:
        return None
    return Verdict.no("not implemented yet (issue #5); it will need nvidia-cudnn-frontend>=1.22, the cuDNN runtime and a CUDA GPU")
