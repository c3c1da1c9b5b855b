"""The triton backend against the exact reference, every feature on small shapes: on a GPU compiled,
without one in Triton's interpreter (conftest sets TRITON_INTERPRET=1), where it is never timed."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from problems import PROBLEMS
from qbench.problem import ConvProblem
from qbench.quantized import ConvParams
from qbench.registry import load_backends
from qbench.runner import CaseRunner, RunSettings
from qbench.suite import Case
from qbench.timing import TimingPolicy

# depthwise; odd channels and conv1 merge a kernel row's pixels (21 channels), ResNeXt's narrow
# groups share GEMM tiles (qbench_triton.layout)
TRITON_DIRECT = {"direct-depthwise", "direct-depthwise-multiplier-2"}


@pytest.fixture(scope="module")
def runner_and_backend():
    backend = load_backends()["triton"]
    if not backend.availability.ok:
        pytest.skip(backend.availability.reason)
    return CaseRunner(RunSettings(policy=TimingPolicy(min_samples=2, max_time_s=0.01))), backend


@pytest.fixture
def stream_k_on(monkeypatch):
    """Stream-K on (`stream.ENABLED`), as QBENCH_TRITON_STREAM_K=1 at import turns it on: the
    interpreter then shares tiles where the kernel may."""
    from qbench_triton import stream

    monkeypatch.setattr(stream, "ENABLED", True)


def _run_compiling(*args: str) -> str:
    """The output of `python ARGS` run without TRITON_INTERPRET (compiling as for a GPU, which
    Triton does without one), which must succeed."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


STANDIN = str(Path(__file__).with_name("triton_standin.py"))


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


@st.composite
def small_problems(draw, in_per_group: st.SearchStrategy[int],
                   out_per_group: st.SearchStrategy[int]) -> ConvProblem:
    """Small problems of these channel counts a group: groups, kernel sizes up to 5x5, strides,
    paddings, dilations, dtypes, zero points, weight schemes, bias, ReLU."""
    groups = draw(st.sampled_from([1, 1, 2]))
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
        bias=draw(st.booleans()), out_dtype=draw(st.sampled_from(["quint8", "qint8"])),
        relu=draw(st.booleans())).validate()


# for the GEMM kernel: any channel count (merged rows)
gemm_problems = small_problems(st.integers(3, 24), st.integers(4, 20))


# compiled (on a GPU), each example's kernel size is a variant of its own to compile
@settings(max_examples=8 if torch.cuda.is_available() else 25, deadline=None)
@given(problem=gemm_problems)
def test_random_problems_are_exact(problem, runner_and_backend):
    runner, backend = runner_and_backend
    row = runner.row("triton", Case("random", problem), backend)
    # mistrusted: mostly clamped outputs (ReLU's zeros among them), compared all the same
    assert row["status"] in ("ok", "mistrusted"), (problem, row["error"])
    assert row["max_err_lsb"] == 0 and row["exact_pct"] == 100.0, (problem, row["details"])


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


SHARED_PROBLEMS = {name: PROBLEMS[name] for name in ("gemm-3x3-pad", "gemm-asymmetric",
                                                      "direct-conv1-like", "gemm-groups")}
SHARED_PROBLEMS["two-group-tiles"] = dataclasses.replace(PROBLEMS["gemm-groups"], in_channels=64,
                                                         out_channels=64, in_zero_point=77)
# the interpreter's programs: one more than tiles (each takes parts of two), or fewer (some take
# whole tiles besides parts of others)
INTERPRETER_LAUNCHES = {"more-programs": None,
                        "fewer-programs": lambda tiles, steps: max(1, (tiles - 1) // 2)}


@pytest.mark.parametrize("partials", ["whole-tile", "by-quarters"])
@pytest.mark.parametrize("launch", INTERPRETER_LAUNCHES)
@pytest.mark.parametrize("name", SHARED_PROBLEMS)
def test_shared_tiles_match_the_reference(name, launch, partials, runner_and_backend,
                                          stream_k_on, monkeypatch):
    """Stream-K in the interpreter: programs that share tiles, partial sums added by the last to
    arrive, at once or (as tiles over HEAVY_TILE_LIMIT do) by quarters
    (test_every_shared_tile_matches_the_reference_on_a_gpu takes the compiled kernel)."""
    runner, backend = runner_and_backend
    if not backend.info.interpreted:
        pytest.skip("the interpreter's launch; a GPU test forces compiled shared tiles")
    import triton.language as tl
    from qbench_triton import kernels, stream

    if INTERPRETER_LAUNCHES[launch] is not None:
        monkeypatch.setattr(stream, "interpreter_programs", INTERPRETER_LAUNCHES[launch])
    if partials == "by-quarters":  # the interpreter's 16x16 tiles taken for heavy ones
        monkeypatch.setattr(kernels, "HEAVY_TILE_ELEMENTS", tl.constexpr(0))
    row = runner.row("triton", Case(name, SHARED_PROBLEMS[name].validate()), backend)
    assert row["status"] == "ok", row["error"]
    assert "stream_k_programs=" in row["details"], row["details"]


def test_a_shared_launch_leaves_the_counters_as_it_found_them(runner_and_backend, stream_k_on):
    """A plan's next launch, on other activations, finds the tiles' counters as the first found
    them (zeros), so it is as exact as the first (left over, they would have it add the first
    launch's partials): outputs poisoned before each."""
    runner, backend = runner_and_backend
    if not backend.info.interpreted:
        pytest.skip("the interpreter's launch; the GPU tests launch each forced tile repeatedly")
    import qbench_triton
    from qbench.inputs import auto_output_quantization, make_inputs
    from qbench.quantized import QuantizedActivation
    from qbench.reference import reference_accumulator, requantize

    problem = SHARED_PROBLEMS["gemm-3x3-pad"].validate()
    inputs = make_inputs(problem, 0)
    scale, zero_point = auto_output_quantization(
        reference_accumulator(inputs.input, inputs.weight, inputs.params), inputs, problem)
    problem = dataclasses.replace(problem, out_scale=scale, out_zero_point=zero_point)
    packed = qbench_triton.qbench_prepack("triton", inputs.weight, inputs.bias, inputs.params)
    for seed in (0, 1):  # the same quantization, so the same plan
        activation = make_inputs(problem, seed).input
        acc = reference_accumulator(activation, inputs.weight, inputs.params)
        expected = requantize(acc, activation.scale, inputs.weight.scales, inputs.bias, scale,
                              zero_point, problem.out_dtype, relu=False)
        assert len(set(expected.flatten().tolist())) > 50  # not saturated
        output = QuantizedActivation.output_buffer(problem, "cpu", True)
        output.data.fill_(77)
        prepared = qbench_triton.qbench_prepare_input("triton", activation.to("cpu", True))
        qbench_triton.qbench_apply("triton", packed, prepared, output)
        assert torch.equal(output.data, expected), seed
    assert len(packed.plans) == 1
    assert "stream_k_programs" in qbench_triton.qbench_details("triton", packed)


def test_every_gemm_tile_matches_the_reference_on_a_gpu(runner_and_backend, monkeypatch):
    """Each tuning tile, forced, on a problem that none fits evenly (300 output channels, 450
    rows) with a border, quint8 and ReLU: the epilogue's column quarters and the tensor-core
    layouts as compiled, which the interpreter does not share."""
    runner, backend = runner_and_backend
    if backend.info.interpreted:
        pytest.skip("compiled tiles need a GPU; the interpreter runs its own tile size")
    import triton
    import qbench_triton
    from qbench_triton import kernels

    monkeypatch.setenv(qbench_triton.WGMMA_ENV, "0")  # the GEMM kernel alone
    problem = dataclasses.replace(PROBLEMS["gemm-quint8-zero-points"], batch=2, in_channels=64,
                                  height=15, width=15, out_channels=300).validate()
    for bm, bn, bk, warps, stages in kernels.GEMM_TILES:
        config = kernels._gemm_config(bm, bn, bk, warps, stages)
        monkeypatch.setattr(kernels, "conv_gemm_tuned", triton.autotune(
            configs=[config], key=kernels.TUNING_KEY)(kernels.conv_gemm))
        row = runner.row("triton", Case(f"tile-{bm}x{bn}x{bk}", problem), backend)
        assert row["status"] == "ok", (config, row["error"])
        assert f"BM={bm}; BN={bn}; BK={bk}" in row["details"], row["details"]


WGMMA_PROBLEMS = {  # what the Gluon kernel takes (no weight zero points), in no tile's rows
    "wgmma-border": ConvProblem(2, 128, 15, 15, 256, (3, 3), padding=(1, 1), in_dtype="qint8",
                                in_zero_point=-7, relu=True),  # 450 rows, a border table
    "wgmma-quint8-border": ConvProblem(2, 128, 15, 15, 256, (3, 3), padding=(1, 1),
                                       in_zero_point=140),  # outside lanes flipped to -128
    "wgmma-strided-groups": ConvProblem(2, 256, 14, 14, 256, (3, 3), stride=(2, 2),
                                        padding=(2, 2), dilation=(2, 2), groups=2,
                                        in_dtype="qint8", out_dtype="qint8"),  # 98 rows
    # split-K's parts starting mid-tap: taps of 2 blocks of 128, 18 steps in 2 or 3 parts
    "wgmma-split-mid-tap": ConvProblem(1, 256, 9, 9, 128, (3, 3), padding=(1, 1),
                                       in_dtype="qint8", in_zero_point=3, out_dtype="qint8"),
    # merged rows (`wgmma.conv_merged_wgmma_kernel`): conv1's taps of 7 pixels of 3 channels at
    # any alignment (288 rows), the padding suite's 30 channels in 3 blocks a tap, and 20 in
    # blocks of 32 or of 64 (a tap stride of 64)
    "wgmma-merged-conv1": ConvProblem(2, 3, 23, 23, 64, (7, 7), stride=(2, 2), padding=(3, 3),
                                      in_zero_point=128),
    "wgmma-merged-blocks": ConvProblem(2, 30, 9, 9, 64, (3, 3), padding=(1, 1), in_dtype="qint8",
                                       in_zero_point=5, relu=True),
    "wgmma-merged-strided": ConvProblem(1, 20, 10, 11, 128, (3, 3), stride=(1, 2),
                                        padding=(1, 1), in_zero_point=200, out_dtype="qint8"),
}


def _gluon_kernel(problem: ConvProblem) -> tuple[str, object, list]:
    """(the name of `wgmma`'s autotuned kernel for `problem`, as `wgmma.tuner` picks it, the
    kernel, its configs that can do it: `wgmma.configs_for`, as a BN wider than a tile group's
    output channels would run into the next group's, and past the last)."""
    import qbench_triton
    from qbench.inputs import make_inputs
    from qbench_triton import wgmma

    inputs = make_inputs(problem, 0)
    packed = qbench_triton.qbench_prepack("triton", inputs.weight, inputs.bias, inputs.params)
    mapping = packed.layout
    merged = mapping.merge_rows
    name = "conv_merged_wgmma_tuned" if merged else "conv_gemm_wgmma_tuned"
    kernel = wgmma.conv_merged_wgmma_kernel if merged else wgmma.conv_gemm_wgmma_kernel
    return name, kernel, wgmma.configs_for(mapping, packed.has_weight_zero_points,
                                           packed.kernel_size)


def _gluon_plans_alone(monkeypatch) -> None:
    """Plans with the Gluon kernels and their split-K on (QBENCH_TRITON_WGMMA=1,
    QBENCH_TRITON_SPLIT_K=1), partials for every split, and the Gluon plan launched alone,
    without the GEMM's beside it (`_Choice`)."""
    import qbench_triton
    from qbench_triton import wgmma

    monkeypatch.setenv(qbench_triton.WGMMA_ENV, "1")
    monkeypatch.setenv(wgmma.SPLIT_ENV, "1")
    monkeypatch.setattr(wgmma, "split_slots", lambda *args: max(wgmma.SPLITS))
    monkeypatch.setattr(qbench_triton, "_Choice", lambda plans: plans[-1])


def _planned_as_on_hopper(monkeypatch) -> None:
    """Plans made on the CPU as for a Hopper GPU of 132 SMs (not interpreting), nothing
    compiled: for Gluon launches that `gluon_emulator` runs."""
    import qbench_triton
    from qbench_triton import kernels, wgmma

    monkeypatch.setattr(qbench_triton, "interpreting", lambda: False)  # planned as for a GPU
    monkeypatch.setattr(kernels, "compile_candidates", lambda *args, **kwargs: None)
    monkeypatch.setattr(kernels, "_sm_count", lambda: 132)
    monkeypatch.setattr(wgmma, "hopper", lambda device: True)


def test_every_wgmma_tile_matches_the_reference_on_a_hopper_gpu(runner_and_backend, monkeypatch):
    """Each tuning tile of the Gluon kernels (`qbench_triton.wgmma`) that can do the problem,
    split-K's too (its programs meeting at counters while they run at once, as no emulator does),
    forced and launched without the GEMM kernel beside it, on problems that no tile fits in rows:
    qint8 and quint8 inputs with border tables, stride, dilation, tile groups, merged rows,
    quint8 and qint8 outputs, ReLU. Persistent configs launch as for a GPU of one SM, so that
    each of their programs takes several tiles."""
    runner, backend = runner_and_backend
    if backend.info.interpreted:
        pytest.skip("Gluon kernels have no interpreter: they need a GPU (the emulator's test "
                    "runs them on the CPU)")
    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("wgmma needs a Hopper GPU (compute capability 9.x)")
    import triton
    import qbench_triton
    from qbench_triton import kernels, wgmma

    _gluon_plans_alone(monkeypatch)
    sm_count = kernels._sm_count
    gemm_config = kernels._gemm_config(64, 64, 64, 4, 4)  # the GEMM's plan: planned, never run
    monkeypatch.setattr(kernels, "conv_gemm_tuned", triton.autotune(
        configs=[gemm_config], key=kernels.TUNING_KEY)(kernels.conv_gemm))
    failures = []  # every failing config, not only the first: a GPU run is scarce
    for name, problem in WGMMA_PROBLEMS.items():
        tuned, kernel, configs = _gluon_kernel(problem)
        assert configs, name
        # all of them tuned once, so that planning compiles them at once (a thread a core), where
        # a config forced alone would compile by itself: each forced below finds its kernel made
        monkeypatch.setattr(wgmma, tuned, triton.autotune(
            configs=configs, key=wgmma.TUNING_KEY, do_bench=kernels._tuning_bench)(kernel))
        runner.row("triton", Case(f"{name}-tuned", problem.validate()), backend)
        for config in configs:
            monkeypatch.setattr(wgmma, tuned, triton.autotune(
                configs=[config], key=wgmma.TUNING_KEY)(kernel))
            persistent = bool(config.kwargs.get("PERSIST"))
            monkeypatch.setattr(kernels, "_sm_count", (lambda: 1) if persistent else sm_count)
            case = Case(f"{name}-{qbench_triton._config_label(config)}", problem.validate())
            row = runner.row("triton", case, backend)
            tiles = "; ".join(f"{key}={config.kwargs[key]}" for key in ("BM", "BN", "BK"))
            named = "wgmma merged" if "merged" in name else "wgmma"
            if row["status"] != "ok":
                failures.append((case.name, row["status"], row["error"]))
            elif f"kernel={named}; {tiles}" not in row["details"]:
                failures.append((case.name, "details", row["details"]))
    assert not failures, "\n".join(map(str, failures))


class _EmulatedTuning:
    """A Gluon kernel's autotuner as `_Plan.launch` uses one, with a single config, chosen
    already (`best_config`, the chosen kernel `fn`): every launch runs `kernel` in
    `gluon_emulator`, its programs in the grid's order or the `reverse`."""

    configs_timings = None

    def __init__(self, kernel, config, reverse: bool) -> None:
        self.kernel = kernel
        self.best_config = config
        self.reverse = reverse
        self.fn = self

    def __getitem__(self, grid):
        import gluon_emulator

        def launch(*args, **constants) -> None:
            gluon_emulator.launch(self.kernel, grid, *args, reverse=self.reverse,
                                  **(self.best_config.all_kwargs() | constants))

        return launch


def _quantized_case(problem: ConvProblem, ties: bool) -> tuple:
    """(problem with its output quantization, inputs, the reference's output integers): the
    output scale spreads the outputs over their range, or with `ties` (per-tensor weights, no
    bias) is the accumulator's scale times a power of two, so that outputs land on .5 (more
    than 20 of them, or the case fails), and the output zero point odd (a tie goes to v's even
    neighbour, not that of v plus the zero point)."""
    import math

    from qbench.inputs import auto_output_quantization, make_inputs
    from qbench.reference import (effective_scales, reference_accumulator, requantization_terms,
                                  requantize)

    inputs = make_inputs(problem, 0)
    acc = reference_accumulator(inputs.input, inputs.weight, inputs.params)
    scale, zero_point = auto_output_quantization(acc, inputs, problem)
    if ties:
        unit = float(effective_scales(problem.in_scale, inputs.weight.scales)[0])
        scale = unit * 2.0 ** round(math.log2(scale / unit))
        _, multiplier = requantization_terms(problem.in_scale, inputs.weight.scales, None, scale)
        value = acc.to(torch.float32) * multiplier.view(1, -1, 1, 1)
        assert int((value - value.floor() == 0.5).sum()) > 20
        zero_point |= 1
    problem = dataclasses.replace(problem, out_scale=scale, out_zero_point=zero_point)
    expected = requantize(acc, problem.in_scale, inputs.weight.scales, inputs.bias, scale,
                          zero_point, problem.out_dtype, problem.relu)
    return problem, inputs, expected


@pytest.fixture
def emulated_wgmma(monkeypatch):
    """`run(problem, inputs, config, reverse=False)`: the output integers of the Gluon kernel for
    `problem` with `config`, run on the CPU by `gluon_emulator` (outputs poisoned first; its
    programs in the reverse order with `reverse`), planned and launched through the backend as
    on a Hopper GPU with QBENCH_TRITON_WGMMA=1 and QBENCH_TRITON_SPLIT_K=1 (nothing compiled,
    the Gluon plan alone, partials for every split); it checks that `details` name the kernel
    and the tile."""
    pytest.importorskip("triton")
    import qbench_triton
    from qbench.quantized import QuantizedActivation
    from qbench_triton import wgmma

    _gluon_plans_alone(monkeypatch)
    _planned_as_on_hopper(monkeypatch)

    def run(problem: ConvProblem, inputs, config, reverse: bool = False) -> torch.Tensor:
        tuned, kernel, _ = _gluon_kernel(problem)
        monkeypatch.setattr(wgmma, tuned, _EmulatedTuning(kernel, config, reverse))
        packed = qbench_triton.qbench_prepack("triton", inputs.weight, inputs.bias, inputs.params)
        output = QuantizedActivation.output_buffer(problem, "cpu", True)
        output.data.fill_(77)
        prepared = qbench_triton.qbench_prepare_input("triton", inputs.input.to("cpu", True))
        apply = qbench_triton.qbench_apply_relu if problem.relu else qbench_triton.qbench_apply
        apply("triton", packed, prepared, output)
        details = qbench_triton.qbench_details("triton", packed)
        named = "wgmma merged" if tuned == "conv_merged_wgmma_tuned" else "wgmma"
        assert details["kernel"] == named and details["BM"] == config.kwargs["BM"], details
        assert details.get("split_k", 1) == config.kwargs.get("SPLIT", 1), details
        assert details.get("l1_reuse", False) == config.kwargs.get("L1_REUSE", False), details
        assert ("persistent_programs" in details) == bool(config.kwargs.get("PERSIST")), details
        return output.data

    return run


@pytest.mark.parametrize("name", [*WGMMA_PROBLEMS, "wgmma-ties"])
def test_every_wgmma_tile_matches_the_reference_in_the_gluon_emulator(name, emulated_wgmma):
    """The Gluon kernels in `gluon_emulator`, each config that can do the problem (split-K's
    too, whose programs run in either order, so that each part is the last to arrive at its
    tile's counter in one run): their index arithmetic, masks, border tables, epilogue and the
    order of their loads, stores, barriers and waits, output for output equal to the reference.
    "wgmma-ties" puts outputs exactly on .5, rounded half to even."""
    import qbench_triton

    ties = name == "wgmma-ties"
    unquantized = WGMMA_PROBLEMS["wgmma-border"] if not ties else dataclasses.replace(
        WGMMA_PROBLEMS["wgmma-border"], weight_qscheme="per_tensor", bias=False, relu=False)
    problem, inputs, expected = _quantized_case(
        WGMMA_PROBLEMS.get(name, unquantized).validate(), ties)
    _, _, configs = _gluon_kernel(problem)
    assert len(configs) >= 2
    for config in configs:
        for reverse in (False, True) if config.kwargs.get("SPLIT", 1) > 1 else (False,):
            output = emulated_wgmma(problem, inputs, config, reverse)
            assert torch.equal(output, expected), (qbench_triton._config_label(config), reverse)


PERSISTENT_PROBLEMS = {  # 1x1s of a step or two a tile, and with border tables and tile groups
    "1x1-quint8": ConvProblem(2, 128, 15, 15, 256, (1, 1), in_zero_point=140, relu=True),
    "1x1-qint8-stride": ConvProblem(3, 64, 26, 26, 256, (1, 1), stride=(2, 2), in_dtype="qint8",
                                    in_zero_point=-3, out_dtype="qint8"),
    "border": WGMMA_PROBLEMS["wgmma-border"],
    "quint8-border": WGMMA_PROBLEMS["wgmma-quint8-border"],
    "strided-groups": WGMMA_PROBLEMS["wgmma-strided-groups"],
}


@pytest.mark.parametrize("name", PERSISTENT_PROBLEMS)
def test_persistent_programs_carry_their_pipelines_across_tiles_in_the_gluon_emulator(
        name, emulated_wgmma, monkeypatch):
    """The Gluon kernel's persistent configs (`wgmma.PERSISTENT_CONFIGS`) on a GPU of one SM
    (stood in for), so that each program takes several tiles, not all as many, its loads
    running ahead into its next tile's (more than a tile ahead where a tile is one step) and
    past its last, equal to the reference output for output, in either order of programs."""
    import qbench_triton
    from qbench_triton import kernels

    problem, inputs, expected = _quantized_case(PERSISTENT_PROBLEMS[name].validate(), ties=False)
    _, _, configs = _gluon_kernel(problem)
    persistent = [config for config in configs if config.kwargs["PERSIST"]]
    assert persistent, name
    monkeypatch.setattr(kernels, "_sm_count", lambda: 1)
    for config in persistent:
        for reverse in (False, True):
            output = emulated_wgmma(problem, inputs, config, reverse)
            assert torch.equal(output, expected), (qbench_triton._config_label(config), reverse)


# what the Gluon kernels take (`wgmma.configs_for`: channels a group in multiples of 64, at most
# 32 taps, or merged rows, no weight zero points), with a number that picks one of the configs
# that can do it
wgmma_problems = st.tuples(
    st.one_of(small_problems(st.sampled_from([64, 128]), st.sampled_from([64, 128])),
              small_problems(st.integers(3, 30), st.sampled_from([64, 128]))),
    st.integers(0, 2**16))


# the fixture's patches hold for every example; each run sets its own config
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=wgmma_problems)
def test_random_problems_are_exact_in_the_gluon_emulator(drawn, emulated_wgmma):
    problem, pick = drawn
    _, _, configs = _gluon_kernel(problem)
    assume(configs)  # merged rows whose tap stride no block divides, narrow groups
    problem, inputs, expected = _quantized_case(problem, ties=False)
    config = configs[pick % len(configs)]
    reverse = pick // len(configs) % 2 == 1
    assert torch.equal(emulated_wgmma(problem, inputs, config, reverse), expected), (
        problem, config, reverse)


def test_the_autotuner_finds_every_candidate_ready_on_a_gpu(runner_and_backend, monkeypatch):
    """Planning a launch compiles the candidates at once; tuning them adds no kernel variant."""
    runner, backend = runner_and_backend
    if backend.info.interpreted:
        pytest.skip("the interpreter neither compiles nor tunes")
    from qbench_triton import kernels

    variants = kernels.conv_gemm_kernel.device_caches[torch.cuda.current_device()][0]
    after_planning = []
    plan_candidates = kernels.compile_candidates

    def counted(*args, **kwargs):
        plan_candidates(*args, **kwargs)
        after_planning.append(len(variants))

    monkeypatch.setattr(kernels, "compile_candidates", counted)
    problem = dataclasses.replace(PROBLEMS["gemm-3x3-pad"], kernel_size=(2, 5),
                                  padding=(1, 2)).validate()  # a kernel shape of its own
    row = runner.row("triton", Case("own-kernel-shape", problem), backend)
    assert row["status"] == "ok", row["error"]
    assert after_planning and len(variants) == after_planning[-1]


def test_every_shared_tile_matches_the_reference_on_a_gpu(runner_and_backend, monkeypatch):
    """The tiles that won ResNet-50's deep layers on an H200, a larger and a narrower one, each
    forced into shared launches (1 and 3 programs per SM) on a problem of 900 rows and 300
    channels that none fits evenly: the counters' and partials' memory ordering as compiled,
    which the interpreter does not share."""
    runner, backend = runner_and_backend
    if backend.info.interpreted:
        pytest.skip("compiled tiles need a GPU; the interpreter runs its own launch")
    import triton
    import qbench_triton
    from qbench_triton import kernels

    monkeypatch.setenv(qbench_triton.WGMMA_ENV, "0")  # the GEMM kernel alone
    problem = dataclasses.replace(PROBLEMS["gemm-quint8-zero-points"], batch=4, in_channels=64,
                                  height=15, width=15, out_channels=300).validate()
    monkeypatch.setattr(kernels, "sharing_slots", lambda *shape: 64)  # partials for any launch
    for tile in [(64, 128, 128, 4, 3), (64, 128, 256, 8, 3), (128, 256, 64, 8, 3),
                 (64, 64, 64, 4, 4)]:
        for per_sm in (1, 3):
            config = kernels._gemm_config(*tile, per_sm)
            monkeypatch.setattr(kernels, "conv_gemm_tuned", triton.autotune(
                configs=[config], key=kernels.TUNING_KEY)(kernels.conv_gemm))
            row = runner.row("triton", Case(f"shared-{tile}-{per_sm}", problem), backend)
            assert row["status"] == "ok", (config, row["error"])
            assert "stream_k_programs=" in row["details"], row["details"]


@pytest.mark.parametrize("setting,choices,shared", [(None, [], [False]), ("0", [], [False]),
                                                    ("1", [1, 2, 3], [False, True])])
def test_stream_k_is_tuned_only_with_qbench_triton_stream_k_of_1(setting, choices, shared):
    pytest.importorskip("triton")
    code = ("import json; from qbench_triton import kernels, stream;"
            "print(json.dumps([stream.PER_SM_CHOICES, "
            "sorted({config.kwargs['SHARED'] for config in kernels.GEMM_CONFIGS})]))")
    env = {key: value for key, value in os.environ.items() if key != "QBENCH_TRITON_STREAM_K"}
    if setting is not None:
        env["QBENCH_TRITON_STREAM_K"] = setting
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True)
    assert json.loads(proc.stdout) == [choices, shared]


def test_the_interpreter_shares_no_tiles_with_stream_k_off(runner_and_backend, monkeypatch):
    runner, backend = runner_and_backend
    if not backend.info.interpreted:
        pytest.skip("the interpreter's launch")
    from qbench_triton import stream

    monkeypatch.setattr(stream, "ENABLED", False)
    row = runner.row("triton", Case("unshared", SHARED_PROBLEMS["gemm-3x3-pad"].validate()),
                     backend)
    assert row["status"] == "ok", row["error"]
    assert "stream_k_programs" not in row["details"]


def test_a_shared_launch_the_buffers_were_not_made_for_is_refused():
    from qbench_triton import _gemm_grid
    from qbench_triton.stream import GemmShape, sharing_buffers

    shape = GemmShape(64, 32, 32, 32, (1, 2), False)  # 8 tiles of 16x16, 4 steps of 16
    meta = {"BM": 16, "BN": 16, "BK": 16, "SHARED": False, "PROGRAMS_PER_SM": 0}

    def twenty(tiles, steps, per_sm):  # programs for 8 tiles of 4 steps: 3 share some tiles
        return 20

    unshared = sharing_buffers(64, 32, 32, 1, 0, torch.device("cpu"))
    grid = _gemm_grid(shape, unshared, twenty)
    assert grid(meta) == (4, 2, 1)
    with pytest.raises(ValueError, match="need 3 slots, where the buffers hold 1 slots"):
        grid(meta | {"SHARED": True, "PROGRAMS_PER_SM": 1})
    shared = sharing_buffers(64, 32, 32, 1, 3, torch.device("cpu"))
    grid = _gemm_grid(shape, shared, twenty)
    assert grid(meta | {"SHARED": True}) == (20, 1, 1)


def test_weight_zero_points_never_share_tiles(runner_and_backend, stream_k_on):
    """Not even where the interpreter would share their tiles otherwise."""
    runner, backend = runner_and_backend
    row = runner.row("triton", Case("zw", PROBLEMS["gemm-weight-zero-point"].validate()), backend)
    assert row["status"] == "ok", row["error"]
    assert "stream_k_programs" not in row["details"]


def test_narrow_groups_with_weight_zero_points_take_the_direct_kernel(runner_and_backend):
    """Groups sharing a GEMM tile would mix their activations' sums, which weight zero points
    need per group."""
    runner, backend = runner_and_backend
    problem = dataclasses.replace(PROBLEMS["direct-resnext-width-4"], weight_zero_point=-3)
    row = runner.row("triton", Case("resnext-zw", problem.validate()), backend)
    assert row["status"] == "ok", row["error"]
    assert row["max_err_lsb"] <= 1 and "kernel=direct" in row["details"]


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
    assert not merged(64) and not merged(256)  # whole blocks per tap already
    assert not merged(3, size=7, dilation=(1, 2))  # a row's pixels are not contiguous
    assert not merged(3)  # 9 channels a row: the direct kernel, which merges nothing


def test_a_choice_of_two_tuned_plans_keeps_the_faster_and_outputs_last(monkeypatch):
    """`_Choice`: each plan tunes in the first launch, their choices are timed alike, and the
    faster is launched once more (its output stays) and kept, with both tunings' timings."""
    triton = pytest.importorskip("triton")
    import qbench.timing
    from qbench_triton import _Choice, _Plan

    launches = []
    slow = triton.Config({"BM": 64, "BN": 64, "BK": 64}, num_warps=4, num_stages=3)
    fast = triton.Config({"BM": 64, "BN": 128, "BK": 128, "STAGES": 4}, num_warps=4,
                         num_stages=1)

    class Kernel:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append(self.name)

    def tuner(name, config, ms):
        class Autotuner(Kernel):  # tunes on its first launch, as Triton's does per key
            fn = Kernel(name)
            best_config = config

            def __getitem__(self, grid):
                def run(*args, **kwargs):
                    launches.append(f"tune {name}")
                    self.configs_timings = {config: [ms]}
                return run
        return Autotuner(name)

    def times(run, runs, device):  # each plan's median as its tuning found it
        before = len(launches)
        run()
        return [{"gemm": 2.0, "wgmma": 1.0}[launches[before]]] * runs

    monkeypatch.setattr(qbench.timing, "tuning_times_ms", times)
    choice = _Choice((_Plan(tuner("gemm", slow, 2.0), lambda meta: (1,), (), {}),
                      _Plan(tuner("wgmma", fast, 1.0), lambda meta: (1,), (), {})))
    kept = choice.launch(torch.zeros(1), "w", "out")
    assert launches[:2] == ["tune gemm", "tune wgmma"] and launches[-1] == "wgmma"
    assert kept.config is fast and kept.tuning_medians_us() == {
        "64x128x128/4w/4s/wgmma": 1000.0, "64x64x64/4w/3s": 2000.0}
    kept.launch("x", "w", "out")
    assert launches[-1] == "wgmma"


def test_the_wgmma_kernels_take_the_convs_they_were_written_for():
    """`wgmma.configs_for`: GEMMs without weight zero points; a tap per (r, s), of at most 32
    taps, whose tap channels and tile groups a config divides, with L1 reuse for several taps;
    merged rows (conv1) whose tap stride a config's blocks divide, a row a thread. Tuning prunes
    the configs that do not divide them or are over twice the rows, and L1 reuse for one tap."""
    pytest.importorskip("triton")
    from qbench_triton import wgmma
    from qbench_triton.layout import layout

    def configs(problem, zero_points=False):
        weight = torch.zeros((problem.out_channels, problem.in_channels // problem.groups,
                              *problem.kernel_size), dtype=torch.int8)
        params = ConvParams.of(stride=problem.stride, padding=problem.padding,
                               dilation=problem.dilation, groups=problem.groups)
        mapping = layout(weight, params, zero_points)
        found = wgmma.configs_for(mapping, zero_points, problem.kernel_size)
        assert not found or wgmma.tuner(mapping) is (
            wgmma.conv_merged_wgmma_tuned if mapping.merge_rows else wgmma.conv_gemm_wgmma_tuned)
        return found

    resnet = ConvProblem(32, 256, 14, 14, 256, (3, 3), padding=(1, 1))
    assert configs(resnet) and configs(resnet.replace(groups=2))
    assert not configs(resnet, zero_points=True)
    assert not configs(resnet.replace(in_channels=96))  # no BK divides a tap of 96 channels
    assert not configs(resnet.replace(out_channels=48))  # nor BN 48 output channels
    assert not configs(resnet.replace(kernel_size=(7, 7)))  # 49 taps
    conv1 = ConvProblem(32, 3, 224, 224, 64, (7, 7), stride=(2, 2), padding=(3, 3))
    assert _config_tiles(configs(conv1)) == {(128, 64, 32), (256, 64, 32)}  # taps of 32 lanes
    assert not configs(conv1, zero_points=True)
    assert not configs(conv1.replace(in_channels=9, kernel_size=(4, 4)))  # a tap stride of 48
    args = dict(M=100, SPAN=64, KG=128, K=128, partial_ptr=torch.empty((1, 1, 1)))
    tiles = _config_tiles(wgmma._fitting_configs(wgmma.WGMMA_CONFIGS, args, R=3, S=3))
    assert tiles == {(64, 128, 64), (128, 128, 64), (64, 64, 64)}
    # L1 reuse where taps overlap: several of them, not a 1x1's one
    reusing = [config for config in configs(resnet) if config.kwargs["L1_REUSE"]]
    assert _config_tiles(reusing) == {tile[:3] for tile in wgmma.REUSE_TILES}
    assert not any(config.kwargs["L1_REUSE"] for config in configs(
        resnet.replace(kernel_size=(1, 1), padding=(0, 0))))
    assert _config_tiles(wgmma._fitting_configs(wgmma.REUSE_CONFIGS, args, R=3, S=3)) == {
        (64, 64, 64)}
    assert not wgmma._fitting_configs(wgmma.REUSE_CONFIGS, args, R=1, S=1)
    merged = _config_tiles(wgmma._fitting_merged_configs(
        wgmma.MERGED_CONFIGS, dict(M=100, SPAN=60, WSTRIDE=64, KG=128)))
    assert merged == {(128, 64, 32), (128, 128, 32), (128, 64, 64)}


def test_split_k_is_tried_only_with_qbench_triton_split_k_of_1_on_layers_of_few_tiles(
        monkeypatch):
    """Split-K (`wgmma.SPLIT_CONFIGS`) joins the Gluon kernel's candidates with
    QBENCH_TRITON_SPLIT_K=1 alone, on layers of fewer tiles than two an SM (`worth_splitting`:
    ResNet-50's layer3.conv2 at batch 32 has 196 of 64x128 for an H200's 132 SMs; a 3x3 of 64
    outputs at 56^2, as layer1's, 1568 of 64x64) whose parts each fill the pipeline, as far as
    the plan's partials have slots."""
    pytest.importorskip("triton")
    from qbench_triton import kernels, wgmma
    from qbench_triton.layout import layout
    from qbench_triton.stream import GemmShape

    monkeypatch.setattr(kernels, "_sm_count", lambda: 132)

    def splits(problem, slots=3):
        """The splits tried for `problem`: (configs_for's, the prune's, `split_slots`)."""
        weight = torch.zeros((problem.out_channels, problem.in_channels, *problem.kernel_size),
                             dtype=torch.int8)
        mapping = layout(weight, ConvParams.of(padding=problem.padding), False)
        rows = problem.batch * problem.height * problem.width
        args = dict(M=rows, SPAN=mapping.span, KG=mapping.tile_out, K=problem.out_channels,
                    partial_ptr=torch.empty((slots, 1, 1)))
        candidates = wgmma.configs_for(mapping, False, problem.kernel_size)
        r, s = problem.kernel_size
        pruned = wgmma._fitting_configs(candidates, args, R=r, S=s)
        tiles = {(*tile, config.kwargs["SPLIT"]) for config in pruned
                 for tile in _config_tiles([config]) if config.kwargs["SPLIT"] > 1}
        shape = GemmShape(rows, mapping.tile_out, problem.out_channels, mapping.span,
                          problem.kernel_size, False)
        return ({config.kwargs["SPLIT"] for config in candidates} - {1}, tiles,
                wgmma.split_slots(shape, 132))

    layer3 = ConvProblem(32, 256, 14, 14, 256, (3, 3), padding=(1, 1))
    assert splits(layer3) == (set(), set(), 0)
    monkeypatch.setenv(wgmma.SPLIT_ENV, "1")
    assert splits(layer3) == ({2, 3}, {(64, 128, 128, 2), (64, 128, 128, 3), (128, 128, 128, 2),
                                       (128, 128, 128, 3)}, 3)  # not 64x64: 392 tiles
    assert splits(layer3, slots=2)[1] == {(64, 128, 128, 2), (128, 128, 128, 2)}
    assert splits(layer3.replace(height=56, width=56, out_channels=64))[1:] == (set(), 0)
    # a 1x1 of 256 channels: 2 steps of 128, too few for any part to fill the pipeline
    assert splits(layer3.replace(kernel_size=(1, 1), padding=(0, 0)))[1:] == (set(), 0)


def test_after_tuning_the_chosen_config_is_launched_without_the_autotuner():
    triton = pytest.importorskip("triton")
    from qbench_triton import _Plan

    launches = []

    class Kernel:  # records launches as a JIT function's [grid](*args, **kwargs)
        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((self, grid, args, kwargs))

    class Autotuner(Kernel):  # Triton's: launches `fn` with the config it chose
        fn = Kernel()
        best_config = triton.Config({"BM": 64, "BN": 32, "BK": 32}, num_warps=4, num_stages=3)

    tuner = Autotuner()
    plan = _Plan(tuner, lambda meta: (10 // meta["BM"] + 1, 2), ("tail",), {"R": 3})
    tuned = plan.launch("x", "w", "out")
    assert launches[-1][0] is tuner and tuned.config is Autotuner.best_config
    tuned.launch("x", "w", "out")
    kernel, grid, args, kwargs = launches[-1]
    assert kernel is Autotuner.fn and grid == (1, 2) and args == ("x", "w", "out", "tail")
    assert kwargs["R"] == 3 and (kwargs["BM"], kwargs["num_warps"], kwargs["num_stages"]) == \
        (64, 4, 3)


def test_details_name_the_tuned_candidates_and_the_runner_up():
    triton = pytest.importorskip("triton")
    from qbench_triton import _Plan

    best = triton.Config({"BM": 64, "BN": 32, "BK": 32}, num_warps=4, num_stages=3)
    second = triton.Config({"BM": 128, "BN": 64, "BK": 128}, num_warps=8, num_stages=3)
    third = triton.Config({"BM": 32, "BN": 64, "BK": 64}, num_warps=4, num_stages=4)

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: None

    class Autotuner:  # tunes on a key's first launch, as Triton's does, and caches the choice
        fn = Kernel()
        tuned_keys: set = set()

        def __getitem__(self, grid):
            def run(*args, **kwargs):
                if kwargs["key"] not in self.tuned_keys:
                    self.tuned_keys.add(kwargs["key"])
                    self.configs_timings = {third: [2.0, 1.9, 2.1], best: [1.0, 0.9, 1.1],
                                            second: [1.25, 1.2, 1.3]}
                self.best_config = best
            return run

    tuner = Autotuner()
    tuned = _Plan(tuner, lambda meta: (1, 1), (), {"key": "a"}).launch("x", "w", "out")
    assert tuned.tuning_facts() == {"candidates": 3, "runner_up": "128x64x128/8w/3s +25%"}
    assert tuned.tuning_medians_us() == {"64x32x32/4w/3s": 1000.0, "128x64x128/8w/3s": 1250.0,
                                         "32x64x64/4w/4s": 2000.0}
    cached = _Plan(tuner, lambda meta: (1, 1), (), {"key": "a"}).launch("x", "w", "out")
    assert cached.config is best and cached.tuning_facts() == {}


def test_the_tuning_log_has_a_line_for_each_launch_that_tuned(tmp_path, monkeypatch):
    """QBENCH_TRITON_TUNING_LOG: the problem and every timed config's median, once per tuning."""
    triton = pytest.importorskip("triton")
    from types import SimpleNamespace

    from qbench_triton import TUNING_LOG_ENV, _launch, _Plan

    config = triton.Config({"BM": 64, "BN": 32, "BK": 32}, num_warps=4, num_stages=3)

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: None

    class Autotuner:  # tunes on its first launch, as Triton's does per key
        fn = Kernel()
        best_config = config

        def __getitem__(self, grid):
            def run(*args, **kwargs):
                self.configs_timings = {config: [0.02]}
            return run

    monkeypatch.setenv(TUNING_LOG_ENV, str(tmp_path / "tuning.jsonl"))
    x = torch.zeros((1, 2, 3, 4), dtype=torch.uint8)  # NHWC
    activation = SimpleNamespace(scale=0.5, zero_point=3, dtype="quint8")
    output = SimpleNamespace(data=torch.zeros((1, 5, 2, 3), dtype=torch.uint8).to(
        memory_format=torch.channels_last), scale=0.25, zero_point=0, dtype="quint8")
    key = (x.shape, x.device, 0.5, 3, "quint8", (1, 2, 3, 5), 0.25, 0, "quint8", False)
    packed = SimpleNamespace(plans={key: _Plan(Autotuner(), lambda meta: (1, 1), (), {})},
                             layout=SimpleNamespace(weight=None, kernel="gemm"),
                             kernel_size=(3, 3), params=ConvParams.of(padding=1), last=None)
    _launch(packed, (x, activation), output, relu=False)
    _launch(packed, (x, activation), output, relu=False)  # tuned already: not logged
    (line,) = (tmp_path / "tuning.jsonl").read_text().splitlines()
    assert json.loads(line) == {
        "input_nhwc": [1, 2, 3, 4], "output_nhwc": [1, 2, 3, 5], "kernel_size": [3, 3],
        "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1,
        "in_dtype": "quint8", "kernel": "gemm", "median_us": {"64x32x32/4w/3s": 20.0}}


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
    every GEMM tuning config compiles for sm_90 without spilling registers, and the Gluon
    kernel's each issue a step's loads while a wgmma runs."""
    pytest.importorskip("triton")
    from qbench_triton import kernels

    lines = _run_compiling("-m", "qbench_triton.compile_check", "80", "90").splitlines()
    kernel_lines = [line for line in lines if " config " not in line]
    assert len(kernel_lines) == 12
    assert all("mma.sync.aligned.m16n8k32" in line
               for line in kernel_lines if "sm_80 gemm" in line)
    assert all("wgmma.mma_async" in line for line in kernel_lines if "sm_90 gemm" in line)
    config_lines = [line for line in lines if line.startswith("sm_90 gemm config ")]
    assert len(config_lines) == 2 * len(set(kernels.GEMM_TILES))  # each alone and shared
    assert all(line.endswith("no spills") for line in config_lines)
    steps = [int(re.search(r"(\d+) instructions a reduction step", line)[1])
             for line in config_lines]
    assert all(0 < step < 400 for step in steps), steps
    from qbench_triton import wgmma

    wgmma_lines = [line for line in lines if line.startswith("sm_90 wgmma config ")]
    # qint8 and quint8, a tap per pixel and merged rows
    assert len(wgmma_lines) == 2 * (len(wgmma.WGMMA_CONFIGS) + len(wgmma.SPLIT_CONFIGS)
                                    + len(wgmma.REUSE_CONFIGS) + len(wgmma.PERSISTENT_CONFIGS)
                                    + len(wgmma.MERGED_CONFIGS))
    for line in wgmma_lines:  # every load of a step issued while a wgmma runs
        beside, loads = map(int, re.search(r"(\d+) of (\d+) loads beside a wgmma", line).groups())
        assert loads and beside == loads and line.endswith("no spills"), line
        persist = re.search(r"/persist(\d+) .* (\d+) programs an SM", line)
        assert not persist or int(persist[1]) <= int(persist[2]), line  # all running at once


@pytest.mark.parametrize(("mode", "planned", "grid"), [
    ("wgmma", 5, [7, 2, 1]),  # 392 rows, 128 channels: 64x64 tiles (4, and 64x64x64 with L1 reuse)
    ("wgmma-merged", 3, [7, 1, 1]),  # conv1's merged rows, 392 rows, 64 channels: its 3 configs
    # a 1x1 of 128 channels at 25,088 rows: the 12 tiles a program each, and the 4 persistent
    # configs of at least two tiles a program (not 64x128x64 in 3 an SM, nor 128x128x64 in 2:
    # 784 and 392 tiles for 396 and 264 programs); 64x64 tiles in 3 programs on each of 132 SMs
    ("wgmma-persistent", 16, [396]),
])
def test_planning_with_the_wgmma_kernels_on_compiles_their_candidates_at_once(mode, planned, grid):
    """On a Hopper GPU (stood in for), by default, a qint8 launch's plan tunes the Gluon kernel
    for its layout beside the GEMM (`_Choice`), its candidates compiled by planning."""
    pytest.importorskip("triton")
    compiles = json.loads(_run_compiling(STANDIN, mode))
    assert compiles == {"plan": "_Choice", "planned": planned, "compiled_after": 0,
                        "grid": grid}, compiles


def test_split_k_plans_its_partials_and_compiles_its_candidates_at_once():
    """With QBENCH_TRITON_SPLIT_K=1 on a Hopper GPU (stood in for), a 3x3 of 128 channels at
    392 rows (7 tiles of 64x128, 9 steps of 128): its plan makes partials of 3 slots, compiles
    the split candidates with the rest (the 9 tiles whose blocks divide 128 channels, the 5 with
    L1 reuse, and 4 splits, each with and without it: 2 of 64x128 and of 64x64 tiles, 128x128's
    in 2 and 3, as 3 parts of 3 steps fill its 3 stages), and splits a tile's programs on the
    grid's third axis."""
    pytest.importorskip("triton")
    compiles = json.loads(_run_compiling(STANDIN, "wgmma-split"))
    assert compiles == {"plan": "_Choice", "planned": 22, "compiled_after": 0, "slots": 3,
                        "grid": [7, 1, 2]}, compiles


def test_qbench_triton_wgmma_of_0_plans_the_gemm_kernel_alone():
    """QBENCH_TRITON_WGMMA=0 leaves the Gluon kernels out of a Hopper GPU's tuning."""
    pytest.importorskip("triton")
    assert json.loads(_run_compiling(STANDIN, "wgmma-off")) == {"plan": "_Plan"}


@pytest.mark.parametrize("in_dtype", ["qint8", "quint8"])
def test_planning_compiles_every_tuning_candidate_at_once(in_dtype):
    """A launch's plan compiles its tuning candidates at once (`kernels.compile_candidates`), so
    that the autotuner, which would compile them one at a time, finds each compiled: planned as
    on an sm_90 GPU without one (tests/triton_standin.py)."""
    pytest.importorskip("triton")
    compiles = json.loads(_run_compiling(STANDIN, in_dtype))
    assert compiles["planned"] > 1 and compiles["compiled_after"] == 0, compiles


def _config_tiles(configs):
    return {tuple(config.kwargs[name] for name in ("BM", "BN", "BK") if name in config.kwargs)
            for config in configs}


def _gemm_args(m, c, cg, kg, k=None, slots=1, span=None):
    return dict(M=m, C=c, CG=cg, KG=kg, K=k or kg, SPAN=span or cg,
                partial_ptr=torch.empty((slots, 1, 1), dtype=torch.int32))


def test_tuning_skips_tiles_wider_than_twice_the_problem():
    pytest.importorskip("triton")
    from qbench_triton import kernels

    def fitting(args, r, s, merge):
        return kernels._fitting_gemm_configs(kernels.GEMM_CONFIGS, args, R=r, S=s, MERGE_S=merge)

    whole = [config for config in kernels.GEMM_CONFIGS if not config.kwargs["SHARED"]]
    layer1 = _gemm_args(32 * 56 * 56, 64, 64, 64)  # 3x3 64 -> 64: no 128- or 256-wide BN
    assert _config_tiles(fitting(layer1, 3, 3, False)) == {
        tiles for tiles in _config_tiles(whole) if tiles[1] <= 64 and tiles[2] <= 64}
    conv1 = _gemm_args(32 * 112 * 112, 3, 3, 64, span=21)  # a row of 7 pixels x 3 channels
    assert {tiles[2] for tiles in _config_tiles(fitting(conv1, 7, 7, True))} == {32}  # BK
    grouped = _gemm_args(32 * 56 * 56, 64, 16, 16)  # groups' spans are their own channels
    assert _config_tiles(fitting(grouped, 3, 3, False)) == {(128, 32, 32), (256, 32, 32)}
    tiny = _gemm_args(4, 16, 16, 8)  # nothing fits: one of the smallest configs
    (smallest,) = _config_tiles(fitting(tiny, 1, 1, False))
    assert sum(smallest) == min(map(sum, _config_tiles(whole)))
    depthwise = kernels._fitting_direct_configs(kernels.DIRECT_CONFIGS, dict(M=6, K=24))
    assert _config_tiles(depthwise) == {(32, 32)}


def test_tuning_shares_tiles_only_of_layers_with_few(monkeypatch):
    pytest.importorskip("triton")
    from qbench_triton import kernels, stream

    monkeypatch.setattr(kernels, "_sm_count", lambda: 132)
    layer4 = stream.GemmShape(32 * 7 * 7, 512, 512, 512, (3, 3), False)
    for choices in [(), (1, 2, 3)]:  # as QBENCH_TRITON_STREAM_K makes them: off, then on
        monkeypatch.setattr(kernels, "GEMM_CONFIGS", [
            kernels._gemm_config(*tile, per_sm) for per_sm in (0, *choices)
            for tile in kernels.GEMM_TILES])
        assert (kernels.sharing_slots(layer4) >= 2) == bool(choices)  # partials made only on

    def shared(args):
        configs = kernels._fitting_gemm_configs(kernels.GEMM_CONFIGS, args, R=3, S=3,
                                                MERGE_S=False)
        return [config for config in configs if config.kwargs["SHARED"]]

    # ResNet-50's layer4 3x3 at batch 32: 1568 rows, 512 channels; 64x128 tiles: 100 on 132 SMs
    tried = shared(_gemm_args(32 * 7 * 7, 512, 512, 512, slots=8))
    assert {(64, 128, 1), (64, 128, 3)} <= {
        (config.kwargs["BM"], config.kwargs["BN"], config.kwargs["PROGRAMS_PER_SM"])
        for config in tried}
    launches = set()
    for config in tried:  # each a launch of its own, its partials in the buffers' slots
        assert layer4.tiles(config.kwargs) <= stream.MAX_TILES_PER_SM * 132
        assert 2 <= kernels._shared_slots(layer4, config, 132) <= stream.MAX_SLOTS
        launches.add((kernels._tile(config), kernels._programs(layer4, config, 132)))
    assert len(launches) == len(tried)
    assert not shared(_gemm_args(32 * 7 * 7, 512, 512, 512))  # no partials
    # layer1's 3x3 of 64: only its largest tiles are few enough (256x64: 392), not 64x64 (1568)
    layer1 = stream.GemmShape(32 * 56 * 56, 64, 64, 64, (3, 3), False)
    tried = shared(_gemm_args(32 * 56 * 56, 64, 64, 64, slots=8))
    assert all(layer1.tiles(config.kwargs) <= stream.MAX_TILES_PER_SM * 132 for config in tried)
    assert (64, 64) not in {(config.kwargs["BM"], config.kwargs["BN"]) for config in tried}
    # and the plan makes partials only where some are tried: not at 112^2, tiles to spare
    assert kernels.sharing_slots(stream.GemmShape(32 * 112 * 112, 64, 64, 64, (3, 3), False)) == 0


@pytest.mark.parametrize("tiles,steps,programs", [(100, 18, 132), (196, 18, 396), (7, 5, 3),
                                                  (4, 3, 3), (1, 72, 18), (13, 1, 5)])
def test_stream_k_slots_count_the_programs_of_each_tile(tiles, steps, programs):
    """`stream.slots` and `first_program` against the programs' ranges spelt out."""
    from qbench_triton import stream

    total = tiles * steps
    sharing = [[program for program in range(programs)
                if program * total // programs < (tile + 1) * steps
                and (program + 1) * total // programs > tile * steps] for tile in range(tiles)]
    assert stream.slots(tiles, steps, programs) == max(map(len, sharing))
    assert all(stream.first_program(tile * steps, total, programs) == programs_of_tile[0]
               for tile, programs_of_tile in enumerate(sharing))


@settings(max_examples=200, deadline=None)
@given(tiles=st.integers(1, 600), steps=st.integers(1, 80), per_sm=st.sampled_from([1, 2, 3]),
       sms=st.integers(1, 160))
def test_a_shared_launch_keeps_its_programs_within_bounds(tiles, steps, per_sm, sms):
    """Each program MIN_STEPS steps at least (unless one takes all), no tile shared by more than
    MAX_SLOTS programs, within the kernel's int32 arithmetic where worth trying."""
    from qbench_triton import stream

    programs = stream.shared_programs(tiles, steps, per_sm, sms)
    assert 1 <= programs <= per_sm * sms
    assert programs == 1 or tiles * steps // programs >= stream.MIN_STEPS
    assert stream.slots(tiles, steps, programs) <= stream.MAX_SLOTS


def test_the_tuning_log_shows_what_stream_k_and_the_wgmma_kernel_did(tmp_path):
    """`python -m qbench_triton.tuning_log FILE`: for stream-K, the Gluon kernel, its split-K,
    its L1 reuse and its persistent programs, per shape that tried the kind, its best against
    the best program per tile and their ratio; shapes that tried none are left out, no kind
    counts as a program per tile, a split Gluon config counts as split-K alone, and one split
    with L1 reuse as L1 reuse."""
    record = {"input_nhwc": [32, 7, 7, 512], "output_nhwc": [32, 7, 7, 512],
              "kernel_size": [3, 3], "in_dtype": "qint8"}
    log = tmp_path / "tuning.jsonl"
    log.write_text("\n".join(json.dumps(record | {"median_us": medians}) for medians in [
        {"64x128x256/8w/3s": 19.4, "128x256x64/8w/3s/stream1": 14.55, "64x64x64/4w/4s": 23.1},
        {"64x64x128/4w/4s": 18.0, "64x128x128/4w/4s/wgmma": 19.8,
         "64x64x128/4w/4s/stream2": 9.0, "64x128x128/4w/4s/wgmma/split2": 12.6,
         "64x128x128/4w/4s/wgmma/l1": 15.3, "64x128x128/4w/4s/wgmma/split2/l1": 12.0,
         "64x64x128/4w/4s/wgmma/persist3": 19.0},
        {"64x64x32/4w/4s": 249.0}]) + "\n")
    proc = subprocess.run([sys.executable, "-m", "qbench_triton.tuning_log", str(log)],
                          capture_output=True, text=True, check=True)
    # a table per kind
    _, stream_k, wgmma, split_k, reuse, persistent = proc.stdout.split("| input NHWC ")
    assert "| program per tile (µs) | stream-K (µs) | ratio |" in stream_k
    assert ("| 32x7x7x512 | 32x7x7x512 | 3x3 | qint8 | 64x128x256/8w/3s 19.4 "
            "| 128x256x64/8w/3s/stream1 14.6 | 0.75 |") in stream_k.splitlines()
    assert stream_k.strip().splitlines()[-1] == "stream-K faster on 2 of 2 shapes that tried it"
    assert ("| 32x7x7x512 | 32x7x7x512 | 3x3 | qint8 | 64x64x128/4w/4s 18.0 "
            "| 64x128x128/4w/4s/wgmma 19.8 | 1.10 |") in wgmma.splitlines()
    assert wgmma.strip().splitlines()[-1] == "wgmma faster on 0 of 1 shapes that tried it"
    assert ("| 32x7x7x512 | 32x7x7x512 | 3x3 | qint8 | 64x64x128/4w/4s 18.0 "
            "| 64x128x128/4w/4s/wgmma/split2 12.6 | 0.70 |") in split_k.splitlines()
    assert split_k.strip().splitlines()[-1] == "split-K faster on 1 of 1 shapes that tried it"
    assert ("| 32x7x7x512 | 32x7x7x512 | 3x3 | qint8 | 64x64x128/4w/4s 18.0 "
            "| 64x128x128/4w/4s/wgmma/split2/l1 12.0 | 0.67 |") in reuse.splitlines()
    assert reuse.strip().splitlines()[-1] == "L1 reuse faster on 1 of 1 shapes that tried it"
    assert ("| 32x7x7x512 | 32x7x7x512 | 3x3 | qint8 | 64x64x128/4w/4s 18.0 "
            "| 64x64x128/4w/4s/wgmma/persist3 19.0 | 1.06 |") in persistent.splitlines()
    assert persistent.splitlines()[-1] == "persistent faster on 0 of 1 shapes that tried it"


def test_the_stream_probe_forces_one_tile_shared_by_the_programs_it_names():
    """`qbench_triton.stream_probe.forced`, planned as on an sm_90 GPU without one: the autotuner
    holds the one shared config, the grid has the programs asked for, and the partials the slots
    they need (7 tiles of 9 steps on 5 programs: at most 2 a tile); on Hopper too, where the
    Gluon kernels, left out, would otherwise have been tuned beside it."""
    pytest.importorskip("triton")
    plan = json.loads(_run_compiling(STANDIN, "forced"))
    assert plan["plan"] == "_Plan"
    (config,) = plan["configs"]
    assert "BM: 64, BN: 64, BK: 64, SHARED: True" in config and "num_stages: 4" in config
    assert plan["grid"] == [5, 1, 1] and plan["partials"] == [2, 392, 64]


def test_the_stream_probe_times_each_launch_of_a_tile():
    pytest.importorskip("triton")
    from qbench_triton import stream_probe

    layer4 = stream_probe.gemm_shape(stream_probe.LAYERS["layer4.conv2"])
    assert (layer4.rows, layer4.out_channels, layer4.span) == (1568, 512, 512)
    assert stream_probe.launches(layer4, (64, 128, 128, 4, 4), 132) == [
        ("per tile", 0), ("shared, P = tiles", 100), ("shared, P = tiles + 1", 101),
        ("shared, 1 per SM", 132), ("shared, 2 per SM", 264), ("shared, 3 per SM", 396)]
    table = stream_probe.markdown([{"layer": "layer4.conv2", "tile": "64x128x128/4w/4s",
                                    "launch": "per tile", "programs": "-", "status": "ok",
                                    "median_us": 19.71, "max_err_lsb": 0, "error": ""}])
    assert table.splitlines()[-1] == ("| layer4.conv2 | 64x128x128/4w/4s | per tile | - | ok "
                                      "| 19.7 | 0 |")


def test_a_config_label_names_each_variant():
    """`_config_label`: the tile, warps and stages; a Gluon config's kernel, split and L1 reuse
    in that order; a shared GEMM launch's programs per SM."""
    pytest.importorskip("triton")
    import qbench_triton
    from qbench_triton import kernels, wgmma

    label = qbench_triton._config_label
    assert label(wgmma._configs([(128, 128, 128, 8, 3)], SPLIT=2, L1_REUSE=True)[0]) == (
        "128x128x128/8w/3s/wgmma/split2/l1")
    assert label(wgmma.WGMMA_CONFIGS[0]) == "64x128x128/4w/4s/wgmma"
    assert label(wgmma.MERGED_CONFIGS[0]) == "128x64x32/4w/3s/wgmma"
    assert label(kernels._gemm_config(64, 64, 64, 4, 4)) == "64x64x64/4w/4s"
    assert label(kernels._gemm_config(64, 64, 64, 4, 4, per_sm=2)) == "64x64x64/4w/4s/stream2"


def test_the_counters_probe_launches_each_config_once_exactly_in_the_gluon_emulator(monkeypatch):
    """`qbench_triton.counters.launch_once` as the GPU runs it, its Gluon launches run by
    `gluon_emulator` on a small layer that every config can do (split-K's too): a row per
    config in order, each output equal to the reference."""
    pytest.importorskip("triton")
    import qbench_triton
    from qbench_triton import counters, wgmma

    _planned_as_on_hopper(monkeypatch)
    monkeypatch.setattr(counters, "tuner_of", lambda config: _EmulatedTuning(
        wgmma.conv_gemm_wgmma_kernel, config, reverse=False))
    monkeypatch.setattr(counters, "LAYERS", {
        "small": ConvProblem(1, 256, 9, 9, 128, (3, 3), padding=(1, 1))})
    rows = counters.launch_once("cpu")
    assert [row["config"] for row in rows] == [
        qbench_triton._config_label(config) for config in counters.CONFIGS]
    assert all(row["max_err_lsb"] == 0 and row["exact_pct"] == 100.0 for row in rows), rows


def test_the_counters_probe_forces_configs_that_tuning_would_try_on_its_layers(monkeypatch):
    """`qbench_triton.counters`: each of its CONFIGS is a candidate that tuning would time on
    each layer it launches (split-K on), past the prune; `forced` holds that config alone in
    the Gluon tuner and plans the Gluon launch without the GEMM's; its table lists launches in
    order."""
    pytest.importorskip("triton")
    import qbench_triton
    from qbench_triton import counters, kernels, wgmma
    from qbench_triton.layout import layout
    from qbench_triton.stream import GemmShape

    monkeypatch.setattr(kernels, "_sm_count", lambda: 132)
    monkeypatch.setenv(wgmma.SPLIT_ENV, "1")
    for problem in counters.LAYERS.values():
        weight = torch.zeros((problem.out_channels, problem.in_channels, *problem.kernel_size),
                             dtype=torch.int8)
        mapping = layout(weight, ConvParams.of(padding=problem.padding), False)
        shape = GemmShape(problem.batch * problem.height * problem.width, mapping.tile_out,
                          problem.out_channels, mapping.span, problem.kernel_size, False)
        args = dict(M=shape.rows, SPAN=shape.span, KG=shape.group_out, K=shape.out_channels,
                    partial_ptr=torch.empty((wgmma.split_slots(shape, 132), 1, 1)))
        tried = wgmma._fitting_configs(wgmma.configs_for(mapping, False, problem.kernel_size),
                                       args, R=3, S=3)
        labels = {qbench_triton._config_label(config) for config in tried}
        assert {qbench_triton._config_label(config) for config in counters.CONFIGS} <= labels
    config = counters.CONFIGS[-1]
    with counters.forced(config):
        assert wgmma.conv_gemm_wgmma_tuned.configs == [config]
        assert qbench_triton._Choice(("gemm", "gluon")) == "gluon"
    assert qbench_triton._Choice(("gemm", "gluon")).plans == ("gemm", "gluon")
    assert counters.markdown([{"launch": 1, "layer": "layer3.conv2", "config": "64x128x128/4w/4s"
                               "/wgmma/l1", "max_err_lsb": 0, "exact_pct": 100.0}]).splitlines()[
        -1] == "| 1 | layer3.conv2 | 64x128x128/4w/4s/wgmma/l1 | 0 | 100.00 |"


def test_the_counters_summary_tabulates_ncus_csv_per_launch_in_order():
    """`qbench_triton.counters.summary`: from ncu's details page as CSV, among the probe's table
    and ncu's own lines, a row per kernel in launch order (by ncu's ID), each of
    SUMMARY_METRICS as value and unit, "-" where ncu reported none."""
    pytest.importorskip("triton")
    from qbench_triton import counters

    header = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
              '"Block Size","Grid Size","Device","CC","Section Name","Metric Name",'
              '"Metric Unit","Metric Value"')

    def metric(kernel, section, name, unit, value):
        return (f'"{kernel}","7","python3","127.0.0.1","conv_gemm_wgmma_kernel","1","7",'
                f'"(128, 1, 1)","(98, 2, 1)","0","9.0","{section}","{name}","{unit}","{value}"')

    output = "\n".join([
        "| launch | layer | config | max LSB | exact % |", "==PROF== Connected to process 7",
        header,
        metric(1, "GPU Speed Of Light Throughput", "Duration", "us", "13.95"),
        metric(1, "Memory Workload Analysis", "L2 Hit Rate", "%", "91.20"),
        metric(0, "GPU Speed Of Light Throughput", "Duration", "us", "15.10"),
        metric(0, "Occupancy", "Achieved Occupancy", "%", "23.71"),
        metric(0, "Launch Statistics", "Registers Per Thread", "register/thread", "166"),
        "==PROF== Disconnected from process 7"])
    table = counters.summary(output).splitlines()
    assert table[0] == f"| launch | {' | '.join(counters.SUMMARY_METRICS)} |"
    assert len(table) == 4
    first, second = ([cell.strip() for cell in row.strip("|").split("|")] for row in table[2:])
    named = dict(zip(["launch", *counters.SUMMARY_METRICS], first, strict=True))
    assert named["launch"] == "1" and named["Duration"] == "15.10 us"
    assert named["Achieved Occupancy"] == "23.71 %" and named["L2 Hit Rate"] == "-"
    assert named["Registers Per Thread"] == "166 register/thread"
    assert dict(zip(["launch", *counters.SUMMARY_METRICS], second, strict=True))[
        "L2 Hit Rate"] == "91.20 %"
    assert counters.summary("==ERROR== the profiler could not start") == (
        "no kernel in ncu's output")
