"""What the L2 flush leaves for the call it precedes (GPU; a probe, not a test):
`python -m qbench.flush_probe`, a Markdown table on stdout.

`--timing cold` zeroes 256 MiB before each sample, as `triton.testing.do_bench` and NVBench flush;
that leaves the L2 full of dirty lines, and each line the timed call brings in may first cost a
write-back of one of them. `--timing cold-read` reads the buffer instead and leaves clean lines
(`qbench.timing.l2_flush`). This times three memory-bound calls on N MiB, of the sizes ResNet-50's
1x1 layers move, in both modes and hot, each with qbench's own sampler:

* `read` (a max over N MiB): `cold` may move 2N to and from memory (N read, N written back), where
  `cold-read` moves N;
* `write` (N MiB zeroed): `cold` may write back N, where `cold-read` writes nothing back while N
  fits in the L2 (the output stays there, as a layer's may);
* `copy` (N MiB to another N): `cold` may move 3N, `cold-read` N.

Where `cold` takes longer than `cold-read` by about those bytes, the dirty lines cost the timed
call their write-back; where the two agree, they cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from qbench.timing import TIMING_MODES, Sampler, TimingPolicy, measure

MIB = 2**20
SIZES_MIB = (2, 8, 16, 32)  # ResNet-50's 1x1 layers at batch 32 read or write 1 to 25 MiB
MODES = tuple(mode for mode in TIMING_MODES if mode != "graph")
POLICY = TimingPolicy(warmup=1, min_samples=30, max_time_s=0.5, target_ci=0.01)


def calls(mib: int, device: str) -> dict[str, tuple[Callable[[], object], int]]:
    """Per name, a call on `mib` MiB of int8 on `device` and the bytes it must move."""
    source = torch.randint(-128, 128, (mib * MIB,), dtype=torch.int8, device=device)
    target = torch.empty_like(source)
    return {"read": (source.max, mib * MIB), "write": (target.zero_, mib * MIB),
            "copy": (lambda: target.copy_(source), 2 * mib * MIB)}


def probe_table(device: str = "cuda", sizes_mib: tuple[int, ...] = SIZES_MIB,
                policy: TimingPolicy = POLICY) -> str:
    """The Markdown table: per call and size, each mode's median microseconds with the bandwidth
    they imply, and cold's median over cold-read's."""
    lines = ["| call | MiB | " + " | ".join(f"{mode} us (GB/s)" for mode in MODES)
             + " | cold / cold-read |", "|---" * (len(MODES) + 3) + "|"]
    for mib in sizes_mib:
        for name, (call, moved) in calls(mib, device).items():
            medians = {mode: measure(call, Sampler(device, mode), policy).median_us
                       for mode in MODES}
            cells = [f"{us:.1f} ({moved / us / 1e3:,.0f})" for us in medians.values()]
            lines.append(f"| {name} | {mib} | " + " | ".join(cells)
                         + f" | {medians['cold'] / medians['cold-read']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(f"{torch.cuda.get_device_name()}; GB/s from the bytes each call must move\n")
    print(probe_table())
