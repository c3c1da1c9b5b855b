"""The triton backend against the exact reference, every feature on small shapes: on a GPU compiled,
without one in Triton's interpreter (conftest sets TRITON_INTERPRET=1), where it is never timed;
which kernel a problem takes, and the kernels compiled for sm_80 and sm_90 without a GPU."""

from __future__ import annotations

import dataclasses
import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from problems import PROBLEMS
from qbench.problem import ConvProblem
from qbench.quantized import ConvParams
from qbench.suite import Case
from triton_support import run_compiling, small_problems

FUSION_PROBE = str(Path(__file__).with_name("fusion_probe.py"))


# depthwise; odd channels and conv1 merge a kernel row's pixels (21 channels), ResNeXt's narrow
# groups share GEMM tiles (qbench_triton.layout)
TRITON_DIRECT = {"direct-depthwise", "direct-depthwise-multiplier-2"}


@pytest.mark.parametrize("name", PROBLEMS)
def test_triton_matches_the_reference(name, runner_and_backend):
    runner, backend = runner_and_backend
    row = runner.row("triton", Case(name, PROBLEMS[name].validate()), backend)
    assert row["status"] == "ok", row["error"]
    assert row["max_err_lsb"] <= 1
    assert f"kernel={'direct' if name in TRITON_DIRECT else 'gemm'}" in row["details"]
    if backend.info.interpreted:  # checked, but a simulator's times are never reported
        assert row["timing_mode"] == "interpreted (not timed)"
        assert row["median_us"] != row["median_us"] and row["first_call_ms"] != row["first_call_ms"]


# for the GEMM kernel: any channel count (merged rows); for the direct kernel and tile groups:
# depthwise (1 to 3 outputs a channel), narrow groups (`layout.NARROW_GROUP_MIN` channels and up
# share tiles), weight zero points (the direct kernel)
random_problems = st.one_of(
    small_problems(st.integers(3, 24), st.integers(4, 20)),
    small_problems(st.integers(1, 8), st.integers(1, 3), groups=st.integers(2, 12),
                   weight_zero_points=True))


# compiled (on a GPU), each example's kernel size is a variant of its own to compile
@settings(max_examples=8 if torch.cuda.is_available() else 45, deadline=None)
@given(problem=random_problems)
def test_random_problems_are_exact(problem, runner_and_backend):
    runner, backend = runner_and_backend
    row = runner.row("triton", Case("random", problem), backend)
    # mistrusted: mostly clamped outputs (ReLU's zeros among them), compared all the same
    assert row["status"] in ("ok", "mistrusted"), (problem, row["error"])
    assert row["max_err_lsb"] == 0 and row["exact_pct"] == 100.0, (problem, row["details"])


# ResNet-50's 1x1 of 64 -> 256 at 56^2 (batch 8: 6.4 million outputs) as the GPU runs quantize it
# (qint8, no zero points), and its 3x3 of 64 at 56^2 as PyTorch does (quint8 with a zero point,
# per-channel weights; batch 4, 0.8 million) with padding and ReLU
MILLIONS = {
    "1x1-qint8": ConvProblem(8, 64, 56, 56, 256, (1, 1), in_dtype="qint8", out_dtype="qint8",
                             weight_qscheme="per_tensor", out_zero_point=0),
    "3x3-quint8": ConvProblem(4, 64, 56, 56, 64, (3, 3), padding=(1, 1), in_zero_point=64,
                              relu=True),
}


@pytest.mark.parametrize("name", MILLIONS)
def test_millions_of_outputs_are_exact_on_a_gpu(name, runner_and_backend):
    """Every output equal to the reference, where the H200 runs of the kernels that rounded by a
    floor and a fraction found up to 10 in a million 1 LSB off (a multiply fused into the fraction:
    `compile_check.fused_multiply_adds`), too rare for the small problems to meet."""
    runner, backend = runner_and_backend
    if backend.info.interpreted:
        pytest.skip("millions of outputs: too slow for the interpreter (its arithmetic is the "
                    "reference's, checked on the small problems)")
    row = runner.row("triton", Case(name, MILLIONS[name].validate()), backend)
    assert row["status"] == "ok", row["error"]
    assert row["max_err_lsb"] == 0 and row["exact_pct"] == 100.0, row["details"]


@pytest.mark.parametrize("zero_point", [0, -5])
@pytest.mark.parametrize("block", [16, 32])
def test_lanes_past_a_taps_channels_stay_out_of_the_sums(block, zero_point, runner_and_backend,
                                                          monkeypatch):
    """Taps of 20 and 40 channels (a pixel's, with the width dilated; else a kernel row's merged)
    in blocks of 16 or 32, which do not divide them (EVEN_SPAN false): the lanes past a tap's
    channels, which read its neighbour's, enter neither the weight zero points' row sums nor,
    where the blocks run past the weights' 16-byte padding, the products with the next tap's
    weights."""
    runner, backend = runner_and_backend
    if not backend.info.interpreted:
        pytest.skip("the interpreter's blocks; compiled, the GPU tests' 64 channels in blocks of "
                    "128 and 256")
    import qbench_triton

    monkeypatch.setitem(qbench_triton._INTERPRETER_TILES, "BK", block)
    for channels, dilation in itertools.product((20, 40), ((1, 1), (1, 2))):
        problem = dataclasses.replace(PROBLEMS["gemm-weight-zero-point"], in_channels=channels,
                                      dilation=dilation, weight_zero_point=zero_point).validate()
        row = runner.row("triton", Case(f"span-{channels}-{dilation}", problem), backend)
        assert row["status"] == "ok", (channels, dilation, row["error"])
        assert f"BK={block}" in row["details"]


@pytest.mark.parametrize("width", [32, 64, 128, 256])
def test_the_epilogue_takes_a_tiles_columns_whole_in_halves_or_in_quarters(
        width, runner_and_backend, monkeypatch):
    """Tiles 32, 64, 128 and 256 channels wide (the interpreter's own are 16), whose epilogue
    takes their columns whole, in halves of 32 and in quarters of 32 and 64 (pieces of no fewer
    than 32 channels), on 150 output channels, which none divides (the widest takes them in one
    tile, as 32x256x32 takes MobileNetV2's 144), at a padded border, with quint8 zero points and
    ReLU: each piece's channels get their own terms and land in their own columns."""
    runner, backend = runner_and_backend
    if not backend.info.interpreted:
        pytest.skip("the interpreter's tiles; compiled, the GPU tests force every tuning tile")
    import qbench_triton

    monkeypatch.setitem(qbench_triton._INTERPRETER_TILES, "BN", width)
    problem = dataclasses.replace(PROBLEMS["gemm-quint8-zero-points"], out_channels=150,
                                  height=4, width=4).validate()
    row = runner.row("triton", Case(f"epilogue-{width}", problem), backend)
    assert row["status"] == "ok", row["error"]
    assert row["exact_pct"] == 100 and f"BN={width}" in row["details"], row["details"]


@pytest.mark.parametrize("in_dtype", ["quint8", "qint8"])
def test_kernels_of_over_32_taps_check_their_bounds_each_step(in_dtype, runner_and_backend):
    """A 7x7 kernel over 16 channels (49 taps of a pixel each, more than the 32 bits of the
    taps-inside mask): each step checks its tap's bounds, at the padded borders too."""
    runner, backend = runner_and_backend
    problem = ConvProblem(batch=1, in_channels=16, height=9, width=8, out_channels=8,
                          kernel_size=(7, 7), padding=(3, 2), in_dtype=in_dtype,
                          in_zero_point=5 if in_dtype == "qint8" else 140).validate()
    row = runner.row("triton", Case("taps-49", problem), backend)
    assert row["status"] == "ok", row["error"]
    assert "kernel=gemm" in row["details"]


def test_every_gemm_tile_matches_the_reference_on_a_gpu(runner_and_backend, monkeypatch):
    """Each tuning tile, forced, on a problem that none fits evenly (300 output channels, 450
    rows) with a border, quint8 and ReLU: the epilogue's column pieces and the tensor-core
    layouts as compiled, which the interpreter does not share."""
    runner, backend = runner_and_backend
    if backend.info.interpreted:
        pytest.skip("compiled tiles need a GPU; the interpreter runs its own tile size")
    import triton
    import qbench_triton
    from qbench_triton import tuning

    monkeypatch.setenv(qbench_triton.WGMMA_ENV, "0")  # the GEMM kernel alone
    problem = dataclasses.replace(PROBLEMS["gemm-quint8-zero-points"], batch=2, in_channels=64,
                                  height=15, width=15, out_channels=300).validate()
    for bm, bn, bk, warps, stages in tuning.GEMM_TILES:
        config = tuning._gemm_config(bm, bn, bk, warps, stages)
        monkeypatch.setattr(tuning, "conv_gemm_tuned", triton.autotune(
            configs=[config], key=tuning.TUNING_KEY)(tuning.conv_gemm))
        row = runner.row("triton", Case(f"tile-{bm}x{bn}x{bk}", problem), backend)
        assert row["status"] == "ok", (config, row["error"])
        assert f"BM={bm}; BN={bn}; BK={bk}" in row["details"], row["details"]


def test_every_direct_config_matches_the_reference_on_a_gpu(runner_and_backend, monkeypatch):
    """Each tuning config of the direct kernel, forced (tuning times every one but checks only
    the one it keeps), its taps a loop and unrolled, on a depthwise 3x3 that no tile fits evenly
    (200 channels, 450 rows) at padded borders, quint8 with a zero point of 200 and ReLU."""
    runner, backend = runner_and_backend
    if backend.info.interpreted:
        pytest.skip("compiled configs need a GPU; the interpreter runs its own tile size")
    import triton
    from qbench_triton import _config_label, tuning

    problem = dataclasses.replace(PROBLEMS["direct-depthwise"], height=15, width=15,
                                  in_channels=200, out_channels=200, groups=200,
                                  in_zero_point=200, relu=True).validate()
    for config in tuning.DIRECT_CONFIGS:
        monkeypatch.setattr(tuning, "conv_direct_tuned", triton.autotune(
            configs=[config], key=tuning.DIRECT_TUNING_KEY)(tuning.conv_direct_kernel))
        row = runner.row("triton", Case(f"direct-{_config_label(config)}", problem), backend)
        assert row["status"] == "ok", (config, row["error"])
        assert f"unrolled_taps={config.kwargs['UNROLL_TAPS']}" in row["details"], row["details"]


def test_narrow_groups_with_weight_zero_points_take_the_direct_kernel(runner_and_backend):
    """Groups sharing a GEMM tile would mix their activations' sums, which weight zero points
    need per group."""
    runner, backend = runner_and_backend
    problem = dataclasses.replace(PROBLEMS["direct-resnext-width-4"], weight_zero_point=-3)
    row = runner.row("triton", Case("resnext-zw", problem.validate()), backend)
    assert row["status"] == "ok", row["error"]
    assert row["max_err_lsb"] <= 1 and "kernel=direct" in row["details"]


@pytest.mark.parametrize("unroll", [False, True])
@pytest.mark.parametrize("name", ["direct-depthwise", "direct-depthwise-multiplier-2",
                                  "direct-resnext-width-4"])
def test_the_direct_kernel_is_exact_with_its_taps_a_loop_or_unrolled(name, unroll,
                                                                     runner_and_backend,
                                                                     monkeypatch):
    """Both forms of the direct kernel's taps (tuning tries each), at padded borders, where its
    lanes outside the image hold the activations' zero point: quint8 with one of 200, qint8 with
    weight zero points, narrow groups with them."""
    runner, backend = runner_and_backend
    if not backend.info.interpreted:
        pytest.skip("the interpreter's direct kernel; compiled, tuning times both forms")
    import qbench_triton

    monkeypatch.setitem(qbench_triton._INTERPRETER_DIRECT, "UNROLL_TAPS", unroll)
    problem = PROBLEMS[name]
    if problem.in_dtype == "quint8":
        problem = dataclasses.replace(problem, in_zero_point=200)
    if name == "direct-resnext-width-4":
        problem = dataclasses.replace(problem, weight_zero_point=-3)
    row = runner.row("triton", Case(name, problem.validate()), backend)
    assert row["status"] == "ok", row["error"]
    assert row["exact_pct"] == 100 and f"unrolled_taps={unroll}" in row["details"], row["details"]


def test_narrow_groups_share_a_tile_with_block_diagonal_weights():
    from qbench_triton.layout import block_diagonal, groups_per_tile, layout

    assert [groups_per_tile(32, width) for width in (4, 8, 16, 32)] == [8, 4, 2, 1]
    assert groups_per_tile(4, 4) == 4  # all of them, if that is fewer than 32 channels
    weight = torch.randint(-128, 128, (6, 2, 3, 3), dtype=torch.int8)  # groups of 2 -> 2
    packed = weight.permute(0, 2, 3, 1)
    tiled = block_diagonal(packed.contiguous(), group_out=2, per_tile=3)
    assert tiled.shape == (6, 3, 3, 6)
    for k in range(6):
        slot = k // 2
        assert torch.equal(tiled[k, :, :, 2 * slot:2 * slot + 2], packed[k])
        others = tiled[k].clone()
        others[:, :, 2 * slot:2 * slot + 2] = 0
        assert not others.any()  # zeros at the other groups' channels
    resnext = layout(torch.zeros((256, 8, 3, 3), dtype=torch.int8), ConvParams(groups=32), False)
    assert (resnext.kernel, resnext.groups_per_tile, resnext.tile_in, resnext.tile_out) == \
        ("gemm", 4, 32, 32)
    depthwise = layout(torch.zeros((64, 1, 3, 3), dtype=torch.int8), ConvParams(groups=64), False)
    assert depthwise.kernel == "direct"


def test_kernel_rows_merge_only_where_channels_leave_blocks_part_empty():
    from qbench_triton.layout import layout

    def merged(channels, size=3, dilation=(1, 1)):
        weight = torch.zeros((8, channels, size, size), dtype=torch.int8)
        return layout(weight, ConvParams(dilation=dilation), False).merge_rows

    assert merged(3, size=7) and merged(30)  # conv1, the padding suite: 21 and 90 per row
    assert merged(3) and merged(5)  # rows of 9 and 15 lanes: a block each
    assert not merged(64) and not merged(256)  # whole blocks per tap already
    assert not merged(3, size=7, dilation=(1, 2))  # a row's pixels are not contiguous
    assert not merged(2)  # 6 lanes a row: the direct kernel, which merges nothing
    assert not merged(8, size=1)  # a 1x1's tap merges no pixels: 8 lanes, the direct kernel


@pytest.mark.parametrize(("channels", "size", "stride"), [
    (4, 3, 32), (3, 7, 32), (8, 2, 32), (30, 3, 96), (33, 3, 128), (15, 3, 64), (17, 1, 32),
    (32, 3, 32), (48, 3, 48)])
def test_a_merged_rows_weights_fill_whole_blocks(channels, size, stride):
    """A merged row's weights are zero-padded to a multiple of a block, 32 lanes, so that blocks
    of 32 divide its stride (the Gluon kernel's must): rows of 12, 45 and 99 lanes too. A tap of
    one pixel's channels, a multiple of 16, keeps them."""
    from qbench_triton.layout import layout

    weight = torch.randint(-128, 128, (8, channels, size, size), dtype=torch.int8)
    mapping = layout(weight, ConvParams(), False)
    assert mapping.kernel == "gemm" and mapping.tap_stride == stride
    lanes = size * channels if mapping.merge_rows else channels
    assert mapping.span == lanes
    taps = weight.permute(0, 2, 3, 1).reshape(8, -1, lanes)
    assert torch.equal(mapping.weight[:, :, :lanes], taps)
    assert not mapping.weight[:, :, lanes:].any()


@pytest.mark.parametrize("zero_point", [0, 3])
def test_round_half_to_even_in_the_kernel(runner_and_backend, zero_point):
    """Outputs that land exactly on .5 round to the even neighbour, as the reference does, before
    the output zero point is added (an odd one would move the tie)."""
    import qbench.functional as qf

    x = torch.quantize_per_tensor(torch.arange(1.0, 9.0).view(1, 8, 1, 1), 1.0, 0, torch.quint8)
    w = torch.quantize_per_tensor(torch.eye(8).view(8, 8, 1, 1), 1.0, 0, torch.qint8)
    # output scale 2: x / 2 = 0.5, 1, 1.5, ... 4 -> 0, 1, 2, 2, 2, 3, 4, 4
    out = qf.conv2d(x, w, None, scale=2.0, zero_point=zero_point, backend="triton")
    assert out.int_repr().flatten().tolist() == [q + zero_point for q in [0, 1, 2, 2, 2, 3, 4, 4]]


def test_qbench_backends_explains_what_triton_needs_without_gpu_or_interpreter():
    env_code = ("import os; os.environ.pop('TRITON_INTERPRET', None);"
                "from qbench.registry import load_backends;"
                "print(load_backends()['triton'].availability.reason)")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: triton is available compiled")
    proc = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, check=True)
    assert "no CUDA device" in proc.stdout and "TRITON_INTERPRET=1" in proc.stdout


def test_kernels_compile_for_sm80_and_sm90_without_a_gpu():
    """Triton ships ptxas: the compiled path's errors (int8 dot shapes, types) show up here too,
    every GEMM and direct kernel tuning config compiles for sm_90 without spilling registers,
    and the Gluon kernel's each issue a step's loads while a wgmma runs; no kernel has a float
    multiply-add (compile_check exits non-zero on any: the requantization's product would not be
    rounded on its own, as the reference rounds it)."""
    pytest.importorskip("triton")
    from qbench_triton import tuning

    lines = run_compiling("-m", "qbench_triton.compile_check", "80", "90").splitlines()
    kernel_lines = [line for line in lines if " config " not in line]
    assert len(kernel_lines) == 12
    assert all("mma.sync.aligned.m16n8k32" in line
               for line in kernel_lines if "sm_80 gemm" in line)
    assert all("wgmma.mma_async" in line for line in kernel_lines if "sm_90 gemm" in line)
    config_lines = [line for line in lines if line.startswith("sm_90 gemm config ")]
    assert len(config_lines) == 2 * len(set(tuning.GEMM_TILES))  # each alone and shared
    assert all(line.endswith("no spills") for line in config_lines)
    steps = [int(re.search(r"(\d+) instructions a reduction step", line)[1])
             for line in config_lines]
    assert all(0 < step < 400 for step in steps), steps
    from qbench_triton import wgmma_configs
    from qbench_triton.compile_check import narrow_merged_configs

    direct_lines = [line for line in lines if line.startswith("sm_90 direct config ")]
    assert len(direct_lines) == len(tuning.DIRECT_CONFIGS)  # each with its taps a loop, unrolled
    assert all(line.endswith("no spills") for line in direct_lines)
    wgmma_lines = [line for line in lines if line.startswith("sm_90 wgmma config ")]
    # qint8 and quint8: a tap per pixel, merged rows of conv1 and of 12 lanes (blocks of 32)
    narrow = narrow_merged_configs()
    assert len(wgmma_lines) == 2 * (len(narrow) + sum(len(configs) for configs in (
        wgmma_configs.WGMMA_CONFIGS, wgmma_configs.SPLIT_CONFIGS, wgmma_configs.REUSE_CONFIGS,
        wgmma_configs.PERSISTENT_CONFIGS, wgmma_configs.MERGED_CONFIGS)))
    assert sum(" merged narrow " in line for line in wgmma_lines) == 2 * len(narrow) > 0
    for line in wgmma_lines:  # every load of a step issued while a wgmma runs
        beside, loads = map(int, re.search(r"(\d+) of (\d+) loads beside a wgmma", line).groups())
        assert loads and beside == loads and line.endswith("no spills"), line
        persist = re.search(r"/persist(\d+) .* (\d+) programs an SM", line)
        assert not persist or int(persist[1]) <= int(persist[2]), line  # all running at once


def test_the_compile_check_finds_a_multiply_fused_with_an_addition():
    """What `compile_check` refuses in the kernels: Triton fuses v * s + c into one FMA (one
    rounding), and not with a clamp in between (the product rounded on its own, as the reference
    rounds it)."""
    pytest.importorskip("triton")
    fused, clamped = map(int, run_compiling(FUSION_PROBE).split())
    assert fused > 0 and clamped == 0
