"""What the triton backend's test files share: runs that compile as for a GPU, the stand-in
planning script, small random problems, the tiles of configs and a GEMM's arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from hypothesis import strategies as st

from qbench.problem import ConvProblem


def run_compiling(*args: str) -> str:
    """The output of `python ARGS` run without TRITON_INTERPRET (compiling as for a GPU, which
    Triton does without one), which must succeed."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


STANDIN = str(Path(__file__).with_name("triton_standin.py"))


FEW_GROUPS = st.sampled_from([1, 1, 2])


@st.composite
def small_problems(draw, in_per_group: st.SearchStrategy[int],
                   out_per_group: st.SearchStrategy[int],
                   groups: st.SearchStrategy[int] = FEW_GROUPS,
                   weight_zero_points: bool = False) -> ConvProblem:
    """Small problems of these channel counts a group and groups: kernel sizes up to 5x5,
    strides, paddings, dilations, dtypes, zero points (the weights' too, where asked, in half
    the problems), weight schemes, bias, ReLU."""
    groups = draw(groups)
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    in_dtype = draw(st.sampled_from(["quint8", "qint8"]))
    low = 0 if in_dtype == "quint8" else -128
    return ConvProblem(
        batch=draw(st.integers(1, 2)), in_channels=groups * draw(in_per_group),
        height=draw(st.integers(max(kernel[0] * dilation[0], 4), 10)),
        width=draw(st.integers(max(kernel[1] * dilation[1], 4), 10)),
        out_channels=groups * draw(out_per_group), kernel_size=kernel,
        stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        padding=(draw(st.integers(0, 3)), draw(st.integers(0, 3))), dilation=dilation,
        groups=groups, in_dtype=in_dtype, in_zero_point=draw(st.integers(low, low + 255)),
        weight_qscheme=draw(st.sampled_from(["per_tensor", "per_channel"])),
        weight_zero_point=draw(st.sampled_from([0, draw(st.integers(-128, 127))]))
        if weight_zero_points else 0,
        bias=draw(st.booleans()), out_dtype=draw(st.sampled_from(["quint8", "qint8"])),
        relu=draw(st.booleans())).validate()


def config_tiles(configs):
    """The (BM, BN, BK) tiles of triton.Configs (those of them a config has)."""
    return {tuple(config.kwargs[name] for name in ("BM", "BN", "BK") if name in config.kwargs)
            for config in configs}


def gemm_args(m, c, cg, kg, k=None, slots=1, span=None):
    """The named arguments that a GEMM kernel's config prune reads, for M rows, C input and K output
    channels (CG and KG a group), a tap's SPAN and `slots` partials' slots."""
    return dict(M=m, C=c, CG=cg, KG=kg, K=k or kg, SPAN=span or cg,
                partial_ptr=torch.empty((slots, 1, 1), dtype=torch.int32))
