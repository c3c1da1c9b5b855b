"""What the triton backend's kernels spend their time on where it is furthest behind, read from
the GPU's counters: scripts/gpu-check.sh's `counters` step runs it under Nsight Compute,

    ncu --clock-control none --set full --csv --page details --kernel-name regex:conv_gemm \\
        python3 -m qbench_triton.counters > counters.txt
    python3 -m qbench_triton.counters --summary counters.txt

Each config of CONFIGS is forced (the Gluon kernel alone, in that config, no tuning) on each layer
of `stream_probe.LAYERS` (ResNet-50's deep 3x3 layers), then each of GEMM_PROBES' tiles (the GEMM
kernel alone, in that tile) on its layer, all batch 32, qint8 in and out, as the resnet-qint8 run,
and launched once, into a poisoned output checked against the exact reference. The table it
prints lists the launches in order, which is the order of ncu's kernels (the Gluon kernel's, then
the GEMM kernel's, by name): their durations, throughputs against their peaks, L1 and L2 hit
rates, occupancy, stalls. `--summary` tabulates some of them per launch (`summary`). Without ncu
it checks the same launches. Run after the suites' steps, whose compiled kernels Triton finds in
its cache.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import triton

from qbench import ConvProblem
from qbench.check import compare, exact_share_text
from qbench.quantized import QuantizedActivation, output_integers
from qbench.registry import load_backends
from qbench.runner import prepare_case
from qbench.suite import Case
from qbench_triton import _config_label, stream_probe, tuning, wgmma, wgmma_configs
from qbench_triton.stream_probe import LAYERS, QINT8

# (BM, BN, BK, warps, STAGES), SPLIT, L1_REUSE: the tiles that won layer3.conv2 and layer4.conv2 on
# an H200, and 128x128, which loads the fewest bytes a multiply-add, each with and without L1
# reuse; the first in 2 programs a tile (split-K)
CONFIGS = [config for tile, split in [((64, 128, 128, 4, 4), 1), ((64, 64, 128, 4, 4), 1),
                                      ((128, 128, 128, 8, 3), 1), ((64, 128, 128, 4, 4), 2)]
           for reuse in (False, True)
           for config in wgmma_configs._configs([tile], SPLIT=split, L1_REUSE=reuse, PERSIST=0)]


# (layer, its problem, a tile of the GEMM kernel: BM, BN, BK, warps, stages): the tiles that won,
# on an H200 (results/h200-2026-11-27-50e7c51/triton-tuning.jsonl), ResNet-50's 1x1 layers where
# triton took longest against int8 cuDNN (64 -> 256 at 56^2, 1.30 times; the 256 -> 512
# downsample at stride 2, 1.49) and MobileNetV2's layers furthest from their floors in
# microseconds (16 -> 96 at 112^2: 70.0 against 10.6; 24 -> 144 at 56^2: 47.6 against 4.0), the
# last also in 32x256x32 tiles, which take its rows of 144 bytes whole where 64-wide tiles leave
# sectors partial
_PW24_144 = ConvProblem(batch=32, in_channels=24, out_channels=144, height=56, width=56,
                        kernel_size=(1, 1))
GEMM_PROBES = [
    ("layer1.conv3", ConvProblem(batch=32, in_channels=64, out_channels=256, height=56, width=56,
                                 kernel_size=(1, 1)), (64, 128, 64, 4, 4)),
    ("layer2.0.downsample", ConvProblem(batch=32, in_channels=256, out_channels=512, height=56,
                                        width=56, kernel_size=(1, 1), stride=(2, 2)),
     (64, 128, 64, 4, 4)),
    ("pw16-96@112", ConvProblem(batch=32, in_channels=16, out_channels=96, height=112, width=112,
                                kernel_size=(1, 1)), (128, 32, 32, 4, 4)),
    ("pw24-144@56", _PW24_144, (64, 64, 32, 4, 4)),
    ("pw24-144@56", _PW24_144, (32, 256, 32, 4, 4)),
]


def tuner_of(config: triton.Config) -> Any:
    """The Gluon kernel's autotuner holding `config` alone (which it launches untimed)."""
    return triton.autotune(configs=[config], key=wgmma_configs.TUNING_KEY)(
        wgmma.conv_gemm_wgmma_kernel)


@contextmanager
def forced(config: triton.Config) -> Iterator[None]:
    """The triton backend launching the Gluon kernel alone, in `config`: the Gluon kernels and
    split-K on (QBENCH_TRITON_WGMMA=1, QBENCH_TRITON_SPLIT_K=1: partials for a split config),
    its tuner holding `config` alone (`tuner_of`), and a plan its Gluon launch without the
    GEMM's beside it."""
    import qbench_triton

    switches = {qbench_triton.WGMMA_ENV: "1", wgmma_configs.SPLIT_ENV: "1"}
    with mock.patch.dict(os.environ, switches), \
            mock.patch.object(wgmma_configs, "conv_gemm_wgmma_tuned", tuner_of(config)), \
            mock.patch.object(qbench_triton, "_Choice", lambda plans: plans[-1]):
        yield


def launch_once(device: str = "cuda") -> list[dict[str, object]]:
    """A row per launch on `device`, in order (CONFIGS on each of LAYERS, then GEMM_PROBES): its
    layer, config, max error in LSB and share exact."""
    backend = load_backends()["triton"]
    launches = [(name, problem, config, forced(config)) for name, problem in LAYERS.items()
                for config in CONFIGS]
    launches += [(name, problem, tuning._gemm_config(*tile), stream_probe.forced(tile, 0))
                 for name, problem, tile in GEMM_PROBES]
    rows: list[dict[str, object]] = []
    cases: dict[str, Any] = {}  # a layer's (prepared case, inputs on `device`), made once
    for name, problem, config, launch in launches:
        if name not in cases:
            prepared = prepare_case(Case(name, problem.replace(**QINT8).validate()), seed=0)
            cases[name] = prepared, prepared.inputs_for(device, backend.info.channels_last)
        prepared, inputs = cases[name]
        with launch:
            packed = backend.prepack(inputs.weight, inputs.bias, inputs.params)
            x = backend.prepare_input(inputs.input)
            output = QuantizedActivation.output_buffer(prepared.problem, device,
                                                       backend.info.channels_last)
            output.data.copy_(prepared.poisoned)
            result = backend.apply_function(prepared.problem.relu)(packed, x, output)
        comparison = compare(output_integers(result, output), prepared.reference_wide)
        rows.append({"launch": len(rows) + 1, "layer": name, "config": _config_label(config),
                     "max_err_lsb": comparison.max_err_lsb, "exact_pct": comparison.exact_pct})
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| launch | layer | config | max LSB | exact % |", "|---|---|---|---|---|"]
    lines += [f"| {row['launch']} | {row['layer']} | {row['config']} | {row['max_err_lsb']} | "
              f"{exact_share_text(row['exact_pct'])} |" for row in rows]
    return "\n".join(lines)


# what `summary` shows of each kernel: metrics of ncu's details page (its sections' names for them)
SUMMARY_METRICS = ["Duration", "Compute (SM) Throughput", "Memory Throughput",
                   "L1/TEX Cache Throughput", "L2 Cache Throughput", "L1/TEX Hit Rate",
                   "L2 Hit Rate", "DRAM Throughput", "Achieved Occupancy", "Registers Per Thread"]


def summary(output: str) -> str:
    """A Markdown row per kernel that ncu profiled, in launch order (`launch_once`'s launches),
    with SUMMARY_METRICS, each as a value and unit ("-" where ncu reported none), from its
    details page as CSV (`--csv --page details`) among `output`'s other lines."""
    lines = [line for line in output.splitlines() if line.startswith('"')]
    kernels: dict[int, dict[str, str]] = {}
    for row in csv.DictReader(lines):
        metric = f"{row['Metric Value']} {row['Metric Unit']}".strip()
        kernels.setdefault(int(row["ID"]), {})[row["Metric Name"]] = metric
    if not kernels:
        return "no kernel in ncu's output"
    table = [f"| launch | {' | '.join(SUMMARY_METRICS)} |",
             "|---" * (len(SUMMARY_METRICS) + 1) + "|"]
    table += [f"| {launch} | " + " | ".join(metrics.get(name, "-") for name in SUMMARY_METRICS)
              + " |" for launch, (_, metrics) in enumerate(sorted(kernels.items()), start=1)]
    return "\n".join(table)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summary"]:
        print(summary(Path(sys.argv[2]).read_text(encoding="utf-8")))
    else:
        print(markdown(launch_once()), flush=True)
