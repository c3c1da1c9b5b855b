"""What a plugin tells the host about each backend it provides (public types for plugin authors)."""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass
from typing import Literal

Numerics = Literal["int8", "fp32", "fp16"]


@dataclass(frozen=True)
class BackendInfo:
    """One backend a plugin provides.

    name: unique across plugins, e.g. "torch-x86".
    device: "cpu" or "cuda": where its tensors live; the runner hands it data on that device.
    version: the version of the library doing the work (e.g. torch's), shown in reports.
    numerics: "int8" for a quantized conv. "fp32"/"fp16" mark a float reference point that users
        compare int8 against: the host hands it dequantized activations and quantizes its float
        output itself, outside the timed region; it is never presented as a quantized result.
    channels_last: the backend wants NHWC activations and outputs; the host lays them out so.
    default: run when neither the suite nor the command line names backends.
    interpreted: runs in a simulator (Triton's interpreter): checked like any backend, never timed,
        since its times say nothing about performance.
    description: one line for `qbench backends`.
    """

    name: str
    device: Literal["cpu", "cuda"]
    version: str = ""
    numerics: Numerics = "int8"
    channels_last: bool = False
    default: bool = True
    interpreted: bool = False
    description: str = ""


@dataclass(frozen=True)
class Verdict:
    """An answer to "available?" or "supports this problem?", with the reason when it is no."""

    ok: bool
    reason: str = ""

    @classmethod
    def yes(cls) -> Verdict:
        return cls(True)

    @classmethod
    def no(cls, reason: str) -> Verdict:
        return cls(False, reason)


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def installed_version(module: str) -> str:
    """The version of the installed distribution that provides the top-level import package
    `module` (e.g. "cudnn" -> nvidia-cudnn-frontend's), or "" when there is none. Imports nothing,
    so a plugin's `qbench_backends` can report versions cheaply."""
    for name in _distributions().get(module, []):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""
