"""Peak dense int8 tensor throughput and memory bandwidth of common cards, for the roofline.

Numbers are NVIDIA's datasheet figures; datasheets quote int8 with 2:4 sparsity, so the dense rate
is half of it. Names are matched against the CUDA device name, most specific first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DevicePeak:
    """A card's dense int8 peak (TOPS) and memory bandwidth (GB/s), with where they come from."""

    name: str
    matches: tuple[str, ...]
    int8_tops: float
    bandwidth_gbs: float
    source: str


PEAKS = (
    DevicePeak("H100 SXM", ("H100 80GB HBM3", "H100 SXM"), 1979, 3350,
               "NVIDIA H100 Tensor Core GPU datasheet: 3,958 int8 TOPS sparse, 3.35 TB/s"),
    DevicePeak("H100 NVL", ("H100 NVL",), 1671, 3900,
               "NVIDIA H100 datasheet: 3,341 int8 TOPS sparse, 3.9 TB/s"),
    DevicePeak("H100 PCIe", ("H100 PCIe",), 1513, 2000,
               "NVIDIA H100 datasheet: 3,026 int8 TOPS sparse, 2 TB/s"),
    DevicePeak("H200", ("H200",), 1979, 4800,
               "NVIDIA H200 datasheet: 3,958 int8 TOPS sparse, 4.8 TB/s"),
    DevicePeak("A100 80GB SXM", ("A100-SXM4-80GB", "A100 80GB SXM"), 624, 2039,
               "NVIDIA A100 datasheet: 1,248 int8 TOPS sparse, 2,039 GB/s"),
    DevicePeak("A100 80GB PCIe", ("A100 80GB PCIe",), 624, 1935,
               "NVIDIA A100 datasheet: 1,248 int8 TOPS sparse, 1,935 GB/s"),
    DevicePeak("A100 40GB", ("A100-SXM4-40GB", "A100-PCIE-40GB"), 624, 1555,
               "NVIDIA A100 datasheet: 1,248 int8 TOPS sparse, 1,555 GB/s"),
    DevicePeak("L40S", ("L40S",), 733, 864,
               "NVIDIA L40S datasheet: 1,466 int8 TOPS sparse, 864 GB/s"),
    DevicePeak("L4", ("L4",), 242.5, 300,
               "NVIDIA L4 datasheet: 485 int8 TOPS sparse, 300 GB/s"),
)


def peak_for(device: str) -> DevicePeak | None:
    """The peak entry whose name pattern occurs in `device` (e.g. "cuda: NVIDIA H200"), if any."""
    for peak in PEAKS:
        if any(pattern in device for pattern in peak.matches):
            return peak
    return None
