"""The Gluon kernels for Hopper (`qbench_triton.wgmma`): every tile config that can do a problem
against the reference in the Gluon emulator on the CPU and, forced, compiled on a Hopper GPU,
split-K and persistent programs among them; which convs and configs they take and plan; the Nsight
Compute counters probe of their main tiles."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qbench.problem import ConvProblem
from qbench.quantized import ConvParams
from qbench.suite import Case
from triton_support import STANDIN, config_tiles, run_compiling, small_problems


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
    # any alignment (288 rows), the padding suite's 30 channels in 3 blocks a tap, 20 in blocks
    # of 32 or of 64 (a tap stride of 64), 4 in rows of 12 lanes, a block of 32 each, and 33 in
    # rows of 99 lanes, the last block of 64 mostly past them
    "wgmma-merged-conv1": ConvProblem(2, 3, 23, 23, 64, (7, 7), stride=(2, 2), padding=(3, 3),
                                      in_zero_point=128),
    "wgmma-merged-blocks": ConvProblem(2, 30, 9, 9, 64, (3, 3), padding=(1, 1), in_dtype="qint8",
                                       in_zero_point=5, relu=True),
    "wgmma-merged-strided": ConvProblem(1, 20, 10, 11, 128, (3, 3), stride=(1, 2),
                                        padding=(1, 1), in_zero_point=200, out_dtype="qint8"),
    "wgmma-merged-narrow": ConvProblem(2, 4, 13, 11, 64, (3, 3), padding=(1, 1),
                                       in_zero_point=140, relu=True),
    "wgmma-merged-odd": ConvProblem(1, 33, 9, 8, 64, (3, 3), stride=(2, 1), padding=(1, 1),
                                    in_dtype="qint8", in_zero_point=-20, out_dtype="qint8"),
}


def _gluon_kernel(problem: ConvProblem) -> tuple[str, object, list]:
    """(the name of the Gluon kernels' autotuned kernel for `problem`, as `wgmma_configs.tuner`
    picks it, the kernel, its configs that can do it: `wgmma_configs.configs_for`, as a BN wider
    than a tile group's output channels would run into the next group's, and past the last)."""
    import qbench_triton
    from qbench.inputs import make_inputs
    from qbench_triton import wgmma, wgmma_configs

    inputs = make_inputs(problem, 0)
    packed = qbench_triton.qbench_prepack("triton", inputs.weight, inputs.bias, inputs.params)
    mapping = packed.layout
    merged = mapping.merge_rows
    name = "conv_merged_wgmma_tuned" if merged else "conv_gemm_wgmma_tuned"
    kernel = wgmma.conv_merged_wgmma_kernel if merged else wgmma.conv_gemm_wgmma_kernel
    return name, kernel, wgmma_configs.configs_for(mapping, packed.has_weight_zero_points,
                                                   packed.kernel_size)


def _gluon_plans_alone(monkeypatch) -> None:
    """Plans with the Gluon kernels and their split-K on (QBENCH_TRITON_WGMMA=1,
    QBENCH_TRITON_SPLIT_K=1), partials for every split, and the Gluon plan launched alone,
    without the GEMM's beside it (`_Choice`)."""
    import qbench_triton
    from qbench_triton import wgmma_configs

    monkeypatch.setenv(qbench_triton.WGMMA_ENV, "1")
    monkeypatch.setenv(wgmma_configs.SPLIT_ENV, "1")
    monkeypatch.setattr(wgmma_configs, "split_slots", lambda *args: max(wgmma_configs.SPLITS))
    monkeypatch.setattr(qbench_triton, "_Choice", lambda plans: plans[-1])


def _planned_as_on_hopper(monkeypatch) -> None:
    """Plans made on the CPU as for a Hopper GPU of 132 SMs (not interpreting), nothing
    compiled: for Gluon launches that `gluon_emulator` runs."""
    import qbench_triton
    from qbench_triton import tuning, wgmma_configs

    monkeypatch.setattr(qbench_triton, "interpreting", lambda: False)  # planned as for a GPU
    monkeypatch.setattr(tuning, "compile_candidates", lambda *args, **kwargs: None)
    monkeypatch.setattr(tuning, "_sm_count", lambda: 132)
    monkeypatch.setattr(wgmma_configs, "hopper", lambda device: True)


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
    from qbench_triton import tuning, wgmma_configs

    _gluon_plans_alone(monkeypatch)
    sm_count = tuning._sm_count
    gemm_config = tuning._gemm_config(64, 64, 64, 4, 4)  # the GEMM's plan: planned, never run
    monkeypatch.setattr(tuning, "conv_gemm_tuned", triton.autotune(
        configs=[gemm_config], key=tuning.TUNING_KEY)(tuning.conv_gemm))
    failures = []  # every failing config, not only the first: a GPU run is scarce
    for name, problem in WGMMA_PROBLEMS.items():
        tuned, kernel, configs = _gluon_kernel(problem)
        assert configs, name
        # all of them tuned once, so that planning compiles them at once (a thread a core), where
        # a config forced alone would compile by itself: each forced below finds its kernel made
        monkeypatch.setattr(wgmma_configs, tuned, triton.autotune(
            configs=configs, key=wgmma_configs.TUNING_KEY, do_bench=tuning._tuning_bench)(kernel))
        runner.row("triton", Case(f"{name}-tuned", problem.validate()), backend)
        for config in configs:
            monkeypatch.setattr(wgmma_configs, tuned, triton.autotune(
                configs=[config], key=wgmma_configs.TUNING_KEY)(kernel))
            persistent = bool(config.kwargs.get("PERSIST"))
            monkeypatch.setattr(tuning, "_sm_count", (lambda: 1) if persistent else sm_count)
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
    from qbench_triton import wgmma_configs

    _gluon_plans_alone(monkeypatch)
    _planned_as_on_hopper(monkeypatch)

    def run(problem: ConvProblem, inputs, config, reverse: bool = False) -> torch.Tensor:
        tuned, kernel, _ = _gluon_kernel(problem)
        monkeypatch.setattr(wgmma_configs, tuned, _EmulatedTuning(kernel, config, reverse))
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
    """The Gluon kernel's persistent configs (`wgmma_configs.PERSISTENT_CONFIGS`) on a GPU of one SM
    (stood in for), so that each program takes several tiles, not all as many, its loads
    running ahead into its next tile's (more than a tile ahead where a tile is one step) and
    past its last, equal to the reference output for output, in either order of programs."""
    import qbench_triton
    from qbench_triton import tuning

    problem, inputs, expected = _quantized_case(PERSISTENT_PROBLEMS[name].validate(), ties=False)
    _, _, configs = _gluon_kernel(problem)
    persistent = [config for config in configs if config.kwargs["PERSIST"]]
    assert persistent, name
    monkeypatch.setattr(tuning, "_sm_count", lambda: 1)
    for config in persistent:
        for reverse in (False, True):
            output = emulated_wgmma(problem, inputs, config, reverse)
            assert torch.equal(output, expected), (qbench_triton._config_label(config), reverse)


# what the Gluon kernels take (`wgmma_configs.configs_for`: channels a group in multiples of 64, at
# most 32 taps, or merged rows, no weight zero points), with a number that picks one of the
# configs that can do it
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


def test_the_wgmma_kernels_take_the_convs_they_were_written_for():
    """`wgmma_configs.configs_for`: GEMMs without weight zero points; a tap per (r, s), of at most
    32 taps, whose tap channels and tile groups a config divides, with L1 reuse for several taps;
    merged rows (conv1) whose tap stride a config's blocks divide, a row a thread. Tuning prunes
    the configs that do not divide them or are over twice the rows, and L1 reuse for one tap."""
    pytest.importorskip("triton")
    from qbench_triton import wgmma_configs
    from qbench_triton.layout import layout

    def configs(problem, zero_points=False):
        weight = torch.zeros((problem.out_channels, problem.in_channels // problem.groups,
                              *problem.kernel_size), dtype=torch.int8)
        params = ConvParams.of(stride=problem.stride, padding=problem.padding,
                               dilation=problem.dilation, groups=problem.groups)
        mapping = layout(weight, params, zero_points)
        found = wgmma_configs.configs_for(mapping, zero_points, problem.kernel_size)
        assert not found or wgmma_configs.tuner(mapping) is (
            wgmma_configs.conv_merged_wgmma_tuned if mapping.merge_rows
            else wgmma_configs.conv_gemm_wgmma_tuned)
        return found

    resnet = ConvProblem(32, 256, 14, 14, 256, (3, 3), padding=(1, 1))
    assert configs(resnet) and configs(resnet.replace(groups=2))
    assert not configs(resnet, zero_points=True)
    assert not configs(resnet.replace(in_channels=96))  # no BK divides a tap of 96 channels
    assert not configs(resnet.replace(out_channels=48))  # nor BN 48 output channels
    assert not configs(resnet.replace(kernel_size=(7, 7)))  # 49 taps
    conv1 = ConvProblem(32, 3, 224, 224, 64, (7, 7), stride=(2, 2), padding=(3, 3))
    assert config_tiles(configs(conv1)) == {(128, 64, 32), (256, 64, 32)}  # taps of 32 lanes
    assert not configs(conv1, zero_points=True)
    # rows of 36 lanes, their weights padded to 64: blocks of 32 and of 64, tiles of 64 channels
    assert config_tiles(configs(conv1.replace(in_channels=9, kernel_size=(4, 4)))) == {
        (128, 64, 32), (256, 64, 32), (128, 64, 64)}
    args = dict(M=100, SPAN=64, KG=128, K=128, partial_ptr=torch.empty((1, 1, 1)))
    tiles = config_tiles(wgmma_configs._fitting_configs(wgmma_configs.WGMMA_CONFIGS, args, R=3,
                                                        S=3))
    assert tiles == {(64, 128, 64), (128, 128, 64), (64, 64, 64)}
    # L1 reuse where taps overlap: several of them, not a 1x1's one
    reusing = [config for config in configs(resnet) if config.kwargs["L1_REUSE"]]
    assert config_tiles(reusing) == {tile[:3] for tile in wgmma_configs.REUSE_TILES}
    assert not any(config.kwargs["L1_REUSE"] for config in configs(
        resnet.replace(kernel_size=(1, 1), padding=(0, 0))))
    assert config_tiles(wgmma_configs._fitting_configs(wgmma_configs.REUSE_CONFIGS, args, R=3,
                                                       S=3)) == {(64, 64, 64)}
    assert not wgmma_configs._fitting_configs(wgmma_configs.REUSE_CONFIGS, args, R=1, S=1)
    merged = config_tiles(wgmma_configs._fitting_merged_configs(
        wgmma_configs.MERGED_CONFIGS, dict(M=100, SPAN=60, WSTRIDE=64, KG=128)))
    assert merged == {(128, 64, 32), (128, 128, 32), (128, 64, 64)}


def test_split_k_is_tried_only_with_qbench_triton_split_k_of_1_on_layers_of_few_tiles(
        monkeypatch):
    """Split-K (`wgmma_configs.SPLIT_CONFIGS`) joins the Gluon kernel's candidates with
    QBENCH_TRITON_SPLIT_K=1 alone, on layers of fewer tiles than two an SM (`worth_splitting`:
    ResNet-50's layer3.conv2 at batch 32 has 196 of 64x128 for an H200's 132 SMs; a 3x3 of 64
    outputs at 56^2, as layer1's, 1568 of 64x64) whose parts each fill the pipeline, as far as
    the plan's partials have slots."""
    pytest.importorskip("triton")
    from qbench_triton import tuning, wgmma_configs
    from qbench_triton.layout import layout
    from qbench_triton.stream import GemmShape

    monkeypatch.setattr(tuning, "_sm_count", lambda: 132)

    def splits(problem, slots=3):
        """The splits tried for `problem`: (configs_for's, the prune's, `split_slots`)."""
        weight = torch.zeros((problem.out_channels, problem.in_channels, *problem.kernel_size),
                             dtype=torch.int8)
        mapping = layout(weight, ConvParams.of(padding=problem.padding), False)
        rows = problem.batch * problem.height * problem.width
        args = dict(M=rows, SPAN=mapping.span, KG=mapping.tile_out, K=problem.out_channels,
                    partial_ptr=torch.empty((slots, 1, 1)))
        candidates = wgmma_configs.configs_for(mapping, False, problem.kernel_size)
        r, s = problem.kernel_size
        pruned = wgmma_configs._fitting_configs(candidates, args, R=r, S=s)
        tiles = {(*tile, config.kwargs["SPLIT"]) for config in pruned
                 for tile in config_tiles([config]) if config.kwargs["SPLIT"] > 1}
        shape = GemmShape(rows, mapping.tile_out, problem.out_channels, mapping.span,
                          problem.kernel_size, False)
        return ({config.kwargs["SPLIT"] for config in candidates} - {1}, tiles,
                wgmma_configs.split_slots(shape, 132))

    layer3 = ConvProblem(32, 256, 14, 14, 256, (3, 3), padding=(1, 1))
    assert splits(layer3) == (set(), set(), 0)
    monkeypatch.setenv(wgmma_configs.SPLIT_ENV, "1")
    assert splits(layer3) == ({2, 3}, {(64, 128, 128, 2), (64, 128, 128, 3), (128, 128, 128, 2),
                                       (128, 128, 128, 3)}, 3)  # not 64x64: 392 tiles
    assert splits(layer3, slots=2)[1] == {(64, 128, 128, 2), (128, 128, 128, 2)}
    assert splits(layer3.replace(height=56, width=56, out_channels=64))[1:] == (set(), 0)
    # a 1x1 of 256 channels: 2 steps of 128, too few for any part to fill the pipeline
    assert splits(layer3.replace(kernel_size=(1, 1), padding=(0, 0)))[1:] == (set(), 0)


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
    compiles = json.loads(run_compiling(STANDIN, mode))
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
    compiles = json.loads(run_compiling(STANDIN, "wgmma-split"))
    assert compiles == {"plan": "_Choice", "planned": 22, "compiled_after": 0, "slots": 3,
                        "grid": [7, 1, 2]}, compiles


def test_qbench_triton_wgmma_of_0_plans_the_gemm_kernel_alone():
    """QBENCH_TRITON_WGMMA=0 leaves the Gluon kernels out of a Hopper GPU's tuning."""
    pytest.importorskip("triton")
    assert json.loads(run_compiling(STANDIN, "wgmma-off")) == {"plan": "_Plan"}


def test_the_counters_probe_launches_each_config_once_exactly_in_the_gluon_emulator(monkeypatch):
    """`qbench_triton.counters.launch_once` as the GPU runs it, its Gluon launches run by
    `gluon_emulator` on a small layer that every config can do (split-K's too), then its GEMM
    probes, small, in the interpreter: a row per launch in order, each output equal to the
    reference."""
    pytest.importorskip("triton")
    import qbench_triton
    from qbench_triton import counters, tuning, wgmma

    _planned_as_on_hopper(monkeypatch)
    monkeypatch.setattr(counters, "tuner_of", lambda config: _EmulatedTuning(
        wgmma.conv_gemm_wgmma_kernel, config, reverse=False))
    monkeypatch.setattr(counters, "LAYERS", {
        "small": ConvProblem(1, 256, 9, 9, 128, (3, 3), padding=(1, 1))})
    tile = (64, 128, 64, 4, 4)
    monkeypatch.setattr(counters, "GEMM_PROBES", [
        ("small 1x1", ConvProblem(1, 64, 6, 6, 48, (1, 1), stride=(2, 2)), tile)])
    rows = counters.launch_once("cpu")
    assert [row["config"] for row in rows] == [
        qbench_triton._config_label(config) for config in counters.CONFIGS] + [
        qbench_triton._config_label(tuning._gemm_config(*tile))]
    assert rows[-1]["layer"] == "small 1x1"
    assert all(row["max_err_lsb"] == 0 and row["exact_pct"] == 100.0 for row in rows), rows


def test_the_counters_probe_forces_configs_that_tuning_would_try_on_its_layers(monkeypatch):
    """`qbench_triton.counters`: each of its CONFIGS is a candidate that tuning would time on
    each layer it launches (split-K on), past the prune, and so is each GEMM probe's tile on its
    layer; `forced` holds that config alone in the Gluon tuner and plans the Gluon launch
    without the GEMM's; its table lists launches in order."""
    pytest.importorskip("triton")
    import qbench_triton
    from qbench_triton import counters, tuning, wgmma_configs
    from qbench_triton.layout import layout
    from qbench_triton.stream import GemmShape

    monkeypatch.setattr(tuning, "_sm_count", lambda: 132)
    monkeypatch.setenv(wgmma_configs.SPLIT_ENV, "1")
    for problem in counters.LAYERS.values():
        weight = torch.zeros((problem.out_channels, problem.in_channels, *problem.kernel_size),
                             dtype=torch.int8)
        mapping = layout(weight, ConvParams.of(padding=problem.padding), False)
        shape = GemmShape(problem.batch * problem.height * problem.width, mapping.tile_out,
                          problem.out_channels, mapping.span, problem.kernel_size, False)
        args = dict(M=shape.rows, SPAN=shape.span, KG=shape.group_out, K=shape.out_channels,
                    partial_ptr=torch.empty((wgmma_configs.split_slots(shape, 132), 1, 1)))
        tried = wgmma_configs._fitting_configs(
            wgmma_configs.configs_for(mapping, False, problem.kernel_size), args, R=3, S=3)
        labels = {qbench_triton._config_label(config) for config in tried}
        assert {qbench_triton._config_label(config) for config in counters.CONFIGS} <= labels
    for _, problem, tile in counters.GEMM_PROBES:
        oh, ow = problem.output_size
        shape = GemmShape(problem.batch * oh * ow, problem.out_channels, problem.out_channels,
                          problem.in_channels, problem.kernel_size, False)
        tried = tuning.tuning_candidates(tuning.GEMM_CONFIGS, shape, 0)
        assert tuning._gemm_config(*tile) in tried, (problem, tile)
    config = counters.CONFIGS[-1]
    with counters.forced(config):
        assert wgmma_configs.conv_gemm_wgmma_tuned.configs == [config]
        assert qbench_triton._Choice(("gemm", "gluon")) == "gluon"
    assert qbench_triton._Choice(("gemm", "gluon")).plans == ("gemm", "gluon")
    assert counters.markdown([{"launch": 1, "layer": "layer3.conv2", "config": "64x128x128/4w/4s"
                               "/wgmma/l1", "max_err_lsb": 0, "exact_pct": 100.0}]).splitlines()[
        -1] == "| 1 | layer3.conv2 | 64x128x128/4w/4s/wgmma/l1 | 0 | 100 |"


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
