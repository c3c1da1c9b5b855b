"""What the L2 flush leaves for the call it precedes (GPU; a probe, not a test):
`python benchmarks/flush_probe.py`, a Markdown table on stdout.

`--timing cold` zeroes 256 MiB before each sample, as `triton.testing.do_bench` and NVBench flush;
that leaves the L2 full of dirty lines, and each line the timed call brings in may first cost a
write-back of one of them. `--timing cold-read` reads the buffer instead and leaves clean lines
(`qbench.timing.l2_flush`). This times device-to-device copies of the sizes that ResNet-50's
memory-bound 1x1 layers move, in both modes and hot, each with qbench's own sampler. A copy of N
MiB brings 2N into the L2: if memory-bound and the dirty lines cost their write-back, `cold` moves
up to 3N to and from memory (N read, 2N written back) where `cold-read` moves N (its output stays
in the L2 while it fits), so `cold` takes up to 3 times as long; where the two agree, the dirty
lines cost nothing.
"""

from __future__ import annotations

import torch

from qbench.timing import Sampler, TimingPolicy, measure

MIB = 2**20
COPY_MIB = (2, 8, 16, 32)  # each way: ResNet-50's 1x1 layers at batch 32 move 6 to 32 MiB
MODES = ("cold", "cold-read", "hot")
POLICY = TimingPolicy(warmup=1, min_samples=30, max_time_s=0.5, target_ci=0.01)


def copy_medians_us(mib: int) -> dict[str, float]:
    """The median microseconds of copying `mib` MiB on the GPU, per timing mode."""
    source = torch.randint(-128, 128, (mib * MIB,), dtype=torch.int8, device="cuda")
    target = torch.empty_like(source)
    return {mode: measure(lambda: target.copy_(source), Sampler("cuda", mode), POLICY).median_us
            for mode in MODES}


def main() -> None:
    print(f"{torch.cuda.get_device_name()}: a copy of N MiB moves 2N; GB/s from those bytes\n")
    print("| copy MiB | " + " | ".join(f"{mode} us (GB/s)" for mode in MODES)
          + " | cold / cold-read |")
    print("|---" * (len(MODES) + 2) + "|")
    for mib in COPY_MIB:
        medians = copy_medians_us(mib)
        cells = [f"{us:.1f} ({2 * mib * MIB / us / 1e3:,.0f})" for us in medians.values()]
        print(f"| {mib} | " + " | ".join(cells)
              + f" | {medians['cold'] / medians['cold-read']:.2f} |")


if __name__ == "__main__":
    main()
