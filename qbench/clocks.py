"""The GPU's SM clock through NVML (nvidia-ml-py), to recognise samples taken while throttled."""

from __future__ import annotations

from typing import Protocol


class ClockMonitor(Protocol):
    """Reads the current clock and knows the lowest clock a trustworthy sample may run at."""

    floor_mhz: float

    def read_mhz(self) -> float: ...


class NvmlClockMonitor:
    """SM clock of CUDA device `index`; the floor is `fraction` of its default application clock."""

    def __init__(self, index: int, fraction: float):
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        default = pynvml.nvmlDeviceGetDefaultApplicationsClock(self._handle, pynvml.NVML_CLOCK_SM)
        self.floor_mhz = fraction * default

    def read_mhz(self) -> float:
        return float(self._nvml.nvmlDeviceGetClockInfo(self._handle, self._nvml.NVML_CLOCK_SM))


def nvml_monitor(index: int, fraction: float) -> NvmlClockMonitor | None:
    """A monitor when NVML answers, else None (no NVML library, driver or permission)."""
    try:
        return NvmlClockMonitor(index, fraction)
    except Exception:
        return None
