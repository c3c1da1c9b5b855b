"""The Triton GEMM kernel's stream-K launches (`qbench_triton.stream`, on with
QBENCH_TRITON_STREAM_K=1): tiles shared among programs equal the reference in the interpreter and,
forced, compiled on a GPU; which layers tuning shares; the counters left as found; the probe that
times a shared tile's costs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from problems import PROBLEMS
from qbench.suite import Case
from triton_support import STANDIN, gemm_args, run_compiling


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
    import qbench_triton
    from qbench_triton import kernels, stream

    if INTERPRETER_LAUNCHES[launch] is not None:
        monkeypatch.setattr(stream, "interpreter_programs", INTERPRETER_LAUNCHES[launch])
    problem = SHARED_PROBLEMS[name]
    if partials == "by-quarters":  # tiles 128 wide taken for heavy ones: quarters of 32 columns,
        # over 100 output channels a group, so that each quarter holds some, the last a few
        monkeypatch.setitem(qbench_triton._INTERPRETER_TILES, "BN", 128)
        monkeypatch.setattr(kernels, "HEAVY_TILE_ELEMENTS", tl.constexpr(0))
        problem = dataclasses.replace(problem, out_channels=100 * problem.groups)
    row = runner.row("triton", Case(name, problem.validate()), backend)
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
    from qbench_triton import tuning

    monkeypatch.setenv(qbench_triton.WGMMA_ENV, "0")  # the GEMM kernel alone
    problem = dataclasses.replace(PROBLEMS["gemm-quint8-zero-points"], batch=4, in_channels=64,
                                  height=15, width=15, out_channels=300).validate()
    monkeypatch.setattr(tuning, "sharing_slots", lambda *shape: 64)  # partials for any launch
    for tile in [(64, 128, 128, 4, 3), (64, 128, 256, 8, 3), (128, 256, 64, 8, 3),
                 (64, 64, 64, 4, 4)]:
        for per_sm in (1, 3):
            config = tuning._gemm_config(*tile, per_sm)
            monkeypatch.setattr(tuning, "conv_gemm_tuned", triton.autotune(
                configs=[config], key=tuning.TUNING_KEY)(tuning.conv_gemm))
            row = runner.row("triton", Case(f"shared-{tile}-{per_sm}", problem), backend)
            assert row["status"] == "ok", (config, row["error"])
            assert "stream_k_programs=" in row["details"], row["details"]


@pytest.mark.parametrize("setting,choices,shared", [(None, [], [False]), ("0", [], [False]),
                                                    ("1", [1, 2, 3], [False, True])])
def test_stream_k_is_tuned_only_with_qbench_triton_stream_k_of_1(setting, choices, shared):
    pytest.importorskip("triton")
    code = ("import json; from qbench_triton import stream, tuning;"
            "print(json.dumps([stream.PER_SM_CHOICES, "
            "sorted({config.kwargs['SHARED'] for config in tuning.GEMM_CONFIGS})]))")
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


def test_tuning_shares_tiles_only_of_layers_with_few(monkeypatch):
    pytest.importorskip("triton")
    from qbench_triton import tuning, stream

    monkeypatch.setattr(tuning, "_sm_count", lambda: 132)
    layer4 = stream.GemmShape(32 * 7 * 7, 512, 512, 512, (3, 3), False)
    for choices in [(), (1, 2, 3)]:  # as QBENCH_TRITON_STREAM_K makes them: off, then on
        monkeypatch.setattr(tuning, "GEMM_CONFIGS", [
            tuning._gemm_config(*tile, per_sm) for per_sm in (0, *choices)
            for tile in tuning.GEMM_TILES])
        assert (tuning.sharing_slots(layer4) >= 2) == bool(choices)  # partials made only on

    def shared(args):
        configs = tuning._fitting_gemm_configs(tuning.GEMM_CONFIGS, args, R=3, S=3,
                                               MERGE_S=False)
        return [config for config in configs if config.kwargs["SHARED"]]

    # ResNet-50's layer4 3x3 at batch 32: 1568 rows, 512 channels; 64x128 tiles: 100 on 132 SMs
    tried = shared(gemm_args(32 * 7 * 7, 512, 512, 512, slots=8))
    assert {(64, 128, 1), (64, 128, 3)} <= {
        (config.kwargs["BM"], config.kwargs["BN"], config.kwargs["PROGRAMS_PER_SM"])
        for config in tried}
    launches = set()
    for config in tried:  # each a launch of its own, its partials in the buffers' slots
        assert layer4.tiles(config.kwargs) <= stream.MAX_TILES_PER_SM * 132
        assert 2 <= tuning._shared_slots(layer4, config, 132) <= stream.MAX_SLOTS
        launches.add((tuning._tile(config), tuning._programs(layer4, config, 132)))
    assert len(launches) == len(tried)
    assert not shared(gemm_args(32 * 7 * 7, 512, 512, 512))  # no partials
    # layer1's 3x3 of 64: only its largest tiles are few enough (256x64: 392), not 64x64 (1568)
    layer1 = stream.GemmShape(32 * 56 * 56, 64, 64, 64, (3, 3), False)
    tried = shared(gemm_args(32 * 56 * 56, 64, 64, 64, slots=8))
    assert all(layer1.tiles(config.kwargs) <= stream.MAX_TILES_PER_SM * 132 for config in tried)
    assert (64, 64) not in {(config.kwargs["BM"], config.kwargs["BN"]) for config in tried}
    # and the plan makes partials only where some are tried: not at 112^2, tiles to spare
    assert tuning.sharing_slots(stream.GemmShape(32 * 112 * 112, 64, 64, 64, (3, 3), False)) == 0


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


def test_the_stream_probe_forces_one_tile_shared_by_the_programs_it_names():
    """`qbench_triton.stream_probe.forced`, planned as on an sm_90 GPU without one: the autotuner
    holds the one shared config, the grid has the programs asked for, and the partials the slots
    they need (7 tiles of 9 steps on 5 programs: at most 2 a tile); on Hopper too, where the
    Gluon kernels, left out, would otherwise have been tuned beside it."""
    pytest.importorskip("triton")
    plan = json.loads(run_compiling(STANDIN, "forced"))
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
