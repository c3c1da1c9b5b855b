"""Where a stream-K launch's time goes, on a GPU: `python -m qbench_triton.stream_probe`.

On an H200 every shared launch that tuning tried ran 1.3 to 2.6 times as long as a program per
tile (results/h200-2026-11-27-6b3a359/stream-k.md), where dividing the steps evenly should have
saved the last wave's idle SMs. This times each of TILES on ResNet-50's 3x3 layers of 256 at 14^2
and 512 at 7^2 (batch 32, qint8 in and out, as the resnet-qint8 run) in each launch of
`launches`, each row checked against the exact reference and timed as `qbench run` times (cold
L2, the launch hold, medians), and prints them as a Markdown table:

- `per tile`: a program per tile (the kernel without SHARED);
- `shared, P = tiles`: the shared kernel, one whole tile a program: its code path alone (no tile
  split: no partials, no counters);
- `shared, P = tiles + 1`: nearly every tile split in two: the partials and counters added;
- `shared, N per SM`: the launches tuning tries (`stream.PER_SM_CHOICES` when on).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import triton

from qbench import ConvProblem
from qbench.registry import load_backends
from qbench.runner import CaseRunner, RunSettings
from qbench.suite import Case
from qbench_triton import _config_label, tuning
from qbench_triton.stream import GemmShape, slots

LAYERS = {
    "layer3.conv2": ConvProblem(batch=32, in_channels=256, out_channels=256, height=14, width=14,
                                kernel_size=(3, 3), padding=(1, 1)),
    "layer4.conv2": ConvProblem(batch=32, in_channels=512, out_channels=512, height=7, width=7,
                                kernel_size=(3, 3), padding=(1, 1)),
}
QINT8 = dict(in_dtype="qint8", out_dtype="qint8", weight_qscheme="per_tensor", out_zero_point=0,
             relu=True)
TILES = [(64, 128, 128, 4, 4), (64, 64, 128, 4, 4)]  # (BM, BN, BK, warps, stages): the winners
PER_SM = (1, 2, 3)


def gemm_shape(problem: ConvProblem) -> GemmShape:
    """The GEMM of an ungrouped conv, as the triton backend lays it out (unmerged rows)."""
    oh, ow = problem.output_size
    return GemmShape(problem.batch * oh * ow, problem.out_channels, problem.out_channels,
                     problem.in_channels, problem.kernel_size, False)


def _meta(tile: tuple[int, ...]) -> dict[str, int]:
    """A tile's sizes as a config's kwargs name them, for `GemmShape`."""
    return {"BM": tile[0], "BN": tile[1], "BK": tile[2]}


def launches(shape: GemmShape, tile: tuple[int, ...], sms: int) -> list[tuple[str, int]]:
    """(label, programs) of each launch to time: 0 programs for a program per tile."""
    tiles = shape.tiles(_meta(tile))
    return ([("per tile", 0), ("shared, P = tiles", tiles), ("shared, P = tiles + 1", tiles + 1)]
            + [(f"shared, {per_sm} per SM", per_sm * sms) for per_sm in PER_SM])


@contextmanager
def forced(tile: tuple[int, ...], programs: int) -> Iterator[None]:
    """The triton backend launching only the GEMM kernel's `tile` (the Gluon kernels left out): a
    program per tile (`programs` 0), or shared by `programs` programs, with partials for any
    launch."""
    import qbench_triton

    config = tuning._gemm_config(*tile, per_sm=1 if programs else 0)
    with mock.patch.dict(os.environ, {qbench_triton.WGMMA_ENV: "0"}), \
            mock.patch.object(tuning, "conv_gemm_tuned", triton.autotune(
            configs=[config], key=tuning.TUNING_KEY)(tuning.conv_gemm)), \
            mock.patch.object(tuning, "sharing_slots", lambda shape: _slots_for(shape, tile,
                                                                                programs)), \
            mock.patch.object(qbench_triton, "_per_sm_programs",
                              lambda tiles, steps, per_sm: programs):
        yield


def _slots_for(shape: GemmShape, tile: tuple[int, ...], programs: int) -> int:
    meta = _meta(tile)
    return slots(shape.tiles(meta), shape.steps(meta), programs) if programs else 0


def probe() -> list[dict[str, object]]:
    """A row per layer, tile and launch: programs, status, median µs and max error in LSB."""
    import torch

    backend = load_backends()["triton"]
    runner = CaseRunner(RunSettings(device="cuda"))
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    rows = []
    for name, problem in LAYERS.items():
        case = Case(name, problem.replace(**QINT8).validate())
        for tile in TILES:
            for label, programs in launches(gemm_shape(problem), tile, sms):
                with forced(tile, programs):
                    row = runner.row("stream-probe", case, backend)
                rows.append({"layer": name, "tile": _config_label(tuning._gemm_config(*tile)),
                             "launch": label,
                             "programs": programs or "-", "status": row["status"],
                             "median_us": row["median_us"], "max_err_lsb": row["max_err_lsb"],
                             "error": row["error"]})
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| layer | tile | launch | programs | status | median µs | max LSB |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {row['layer']} | {row['tile']} | {row['launch']} | {row['programs']} | "
              f"{row['status']}{': ' + str(row['error']) if row['error'] else ''} | "
              f"{row['median_us']:.1f} | {row['max_err_lsb']} |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(probe()))
