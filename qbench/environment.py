"""The machine and software a run measured on, recorded in every result file."""

from __future__ import annotations

import functools
import os
import platform
import socket
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

_PACKAGES = ("qbench", "torch", "numpy", "pandas", "pluggy", "triton", "cupy-cuda13x",
             "cupy-cuda12x", "nvidia-cudnn-frontend", "nvidia-ml-py")


_CPUINFO = "/proc/cpuinfo"


@functools.cache
def _cpuinfo_lines(path: str) -> tuple[str, ...]:
    """The lines of Linux's CPU facts at `path`, read once; none where there is no such file."""
    try:
        with open(path) as fh:
            return tuple(fh)
    except OSError:
        return ()


def _cpuinfo_values(key: str, path: str = _CPUINFO) -> list[str]:
    """The values of `path`'s "KEY : value" lines for `key`, in order (one a processor)."""
    return [line.split(":", 1)[1].strip() for line in _cpuinfo_lines(path)
            if line.startswith(key)]


def cpu_model() -> str:
    """The CPU's marketing name where Linux tells it, else what `platform` knows."""
    names = _cpuinfo_values("model name")
    return names[0] if names else platform.processor() or platform.machine()


# Linux's names of the instructions for int8 dot products; without AVX-512 VNNI's, PyTorch's fbgemm
# and oneDNN add pairs of uint8 x int8 products in int16, saturating (README.md).
_INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_dot_instructions(cpuinfo: str = _CPUINFO) -> list[str] | None:
    """Which of `_INT8_DOT_FLAGS` the CPU has, as Linux lists them in `cpuinfo`'s x86 "flags";
    None where it lists none (not Linux, not x86)."""
    lines = _cpuinfo_values("flags", cpuinfo)
    if not lines:
        return None
    flags = {flag for line in lines for flag in line.split()}
    return [flag for flag in _INT8_DOT_FLAGS if flag in flags]


@functools.cache
def device_name(device: str) -> str:
    """A short name for a row's device column: "cpu: <model>" or "cuda: <card>"."""
    if device == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu: {cpu_model()}"


def _gpu() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    gpu: dict[str, Any] = {
        "name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "sm_count": props.multi_processor_count,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:  # NVML: driver and clocks, when nvidia-ml-py is installed
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        gpu["driver"] = pynvml.nvmlSystemGetDriverVersion()
        gpu["sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
        gpu["max_sm_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        gpu["temperature_c"] = pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
    except Exception as exc:  # no NVML is no reason to lose the run
        gpu["nvml"] = f"unavailable: {exc}"
    return gpu


def qbench_variables() -> dict[str, str]:
    """The environment variables of qbench and its plugins that are set (QBENCH_*,
    TRITON_INTERPRET): they change what backends run (`QBENCH_TRITON_STREAM_K=1`, say)."""
    return {name: value for name, value in sorted(os.environ.items())
            if name.startswith("QBENCH_") or name == "TRITON_INTERPRET"}


def collect_environment() -> dict[str, Any]:
    """Host, CPU (its vector instructions as PyTorch dispatches on them, and its int8 dot
    product instructions), GPU and driver (when present), the versions of the libraries in play,
    and qbench's variables (`qbench_variables`)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_int8_dot": cpu_int8_dot_instructions(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "quantized_engines": list(torch.backends.quantized.supported_engines),
        "gpu": _gpu(),
        "packages": versions,
        "variables": qbench_variables(),
    }
