"""Plan one Triton GEMM launch as on an sm_90 GPU, without one: a stand-in for Triton's CUDA driver
names the target, and Triton compiles (it ships ptxas) but launches nothing. Prints, as JSON, how
many kernel variants planning compiled and how many a second warm-up of every tuning candidate
compiled after it (none, if planning compiled them all); with `forced`, the plan's type, configs
and grid of a launch that `qbench_triton.stream_probe.forced` makes (64x64 tiles shared by 5
programs, the device taken for a Hopper GPU); with
`wgmma`, the same counts for the Gluon kernel's candidates (QBENCH_TRITON_WGMMA unset, the device
taken for a Hopper GPU), the plan's type and the Gluon kernel's grid; with `wgmma-merged`, the same
for conv1's merged rows (its own Gluon kernel); with `wgmma-split`, the same with
QBENCH_TRITON_SPLIT_K=1 on 128 channels, the partials' slots besides and the grid of 64x128 tiles
split in 2; with `wgmma-persistent`, the same counts for a 1x1 of 128 channels at 25,088 rows
(batch 8 at 56^2), its persistent candidates among them, and the grid of three persistent
programs an SM of 64x64 tiles; with `wgmma-off`, the plan's type with QBENCH_TRITON_WGMMA=0.
Run without TRITON_INTERPRET: `python tests/triton_standin.py quint8`."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver

import qbench_triton
from qbench.inputs import make_inputs
from qbench.problem import ConvProblem
from qbench.quantized import QuantizedActivation, nhwc_view
from qbench_triton import kernels, stream_probe, tuning, wgmma_configs


class StandInDriver:
    """What Triton asks its driver while compiling: the target, the device and its stream."""

    def get_current_target(self) -> GPUTarget:
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0


def main(mode: str) -> None:
    driver.set_active(StandInDriver())
    tuning._sm_count = lambda: 132  # an H100's SMs, for stream-K's pruning
    problem = ConvProblem(batch=2, in_channels=128 if mode == "wgmma-split" else 64,
                          out_channels=128 if mode in ("wgmma", "wgmma-split") else 64,
                          height=14, width=14, kernel_size=(3, 3), padding=(1, 1),
                          in_dtype=mode if mode in ("qint8", "quint8") else "qint8",
                          out_dtype="quint8", out_scale=0.5, out_zero_point=3).validate()
    if mode == "wgmma-merged":  # conv1 at 28^2: 392 rows, taps of 7 pixels of 3 channels
        problem = dataclasses.replace(problem, in_channels=3, height=28, width=28,
                                      kernel_size=(7, 7), stride=(2, 2), padding=(3, 3))
    if mode == "wgmma-persistent":  # 25,088 rows: 1,568 tiles of 64x64, 784 of 64x128
        problem = dataclasses.replace(problem, batch=8, in_channels=128, out_channels=256,
                                      height=56, width=56, kernel_size=(1, 1), padding=(0, 0))
    inputs = make_inputs(problem, 0)
    packed = qbench_triton.qbench_prepack("triton", inputs.weight, inputs.bias, inputs.params)
    x, activation = qbench_triton.qbench_prepare_input("triton", inputs.input.to("cpu", True))
    output = QuantizedActivation.output_buffer(problem, "cpu", True)
    out = nhwc_view(output.data)
    if mode == "forced":  # 392 rows: 7 tiles of 64x64, shared by 5 programs, on "Hopper"
        wgmma_configs.hopper = lambda device: True
        with stream_probe.forced((64, 64, 64, 4, 4), 5):
            plan = qbench_triton._plan(packed, x, activation, out, output, relu=False)
            (config,) = tuning.conv_gemm_tuned.configs
            print(json.dumps({"plan": type(plan).__name__, "configs": [str(config)],
                              "grid": plan.grid(config.all_kwargs()),
                              "partials": list(plan.tail[4].shape)}))  # after 4 pointers
        return
    if mode.startswith("wgmma"):
        wgmma_planning(packed, x, activation, out, output, off=mode == "wgmma-off",
                       split=mode == "wgmma-split", persistent=mode == "wgmma-persistent")
        return
    plan = qbench_triton._plan(packed, x, activation, out, output, relu=False)
    compiled = kernels.conv_gemm_kernel.device_caches[0][0]
    planned = len(compiled)
    tuning.conv_gemm_tuned.warmup(x, packed.layout.weight, out, *plan.tail, grid=plan.grid,
                                  **plan.constants)  # one config after another, as tuning would
    print(json.dumps({"triton": triton.__version__, "planned": planned,
                      "compiled_after": len(compiled) - planned}))


def wgmma_planning(packed, x, activation, out, output, off: bool, split: bool,
                   persistent: bool) -> None:
    """Plan a launch as the Gluon kernels' setting says (unset, or 0 if `off`; split-K on if
    `split`), the device taken for a Hopper GPU: prints the plan's type and, if it has a Gluon
    kernel's, the variants of that kernel for the layout compiled by planning and by a second
    warm-up, and its grid for 64x64 tiles (with `split`, the partials' slots and the grid of
    64x128 tiles in 2 instead; with `persistent`, of 64x64 tiles in 3 programs an SM)."""
    os.environ.pop(qbench_triton.WGMMA_ENV, None)
    if off:
        os.environ[qbench_triton.WGMMA_ENV] = "0"
    if split:
        os.environ[wgmma_configs.SPLIT_ENV] = "1"
    wgmma_configs.hopper = lambda device: True
    plan = qbench_triton._plan(packed, x, activation, out, output, relu=False)
    if off:
        print(json.dumps({"plan": type(plan).__name__}))
        return
    tuner = wgmma_configs.tuner(packed.layout)
    compiled = tuner.fn.device_caches[0][0]
    planned = len(compiled)
    gluon = plan.plans[-1]
    tuner.warmup(x, packed.layout.weight, out, *gluon.tail, grid=gluon.grid, **gluon.constants)
    facts = {"plan": type(plan).__name__, "planned": planned,
             "compiled_after": len(compiled) - planned}
    if split:  # after the tensor-core operands' 3 pointers: the partials
        facts |= {"slots": gluon.tail[3].shape[0],
                  "grid": gluon.grid({"BM": 64, "BN": 128, "BK": 128, "SPLIT": 2})}
    elif persistent:
        facts["grid"] = gluon.grid({"BM": 64, "BN": 64, "BK": 128, "PERSIST": 3})
    else:
        facts["grid"] = gluon.grid({"BM": 64, "BN": 64, "BK": 64})
    print(json.dumps(facts))


if __name__ == "__main__":
    main(sys.argv[1])
