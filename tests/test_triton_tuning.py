"""The triton backend's autotuning: every candidate compiled at once and found ready, the faster of
two plans kept, the chosen config then launched directly, `details` and the tuning log naming the
candidates, and which tiles tuning tries."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from problems import PROBLEMS
from qbench.quantized import ConvParams
from qbench.suite import Case
from triton_support import STANDIN, config_tiles, gemm_args, run_compiling


def test_the_autotuner_finds_every_candidate_ready_on_a_gpu(runner_and_backend, monkeypatch):
    """Planning a launch compiles the candidates at once; tuning them adds no kernel variant."""
    runner, backend = runner_and_backend
    if backend.info.interpreted:
        pytest.skip("the interpreter neither compiles nor tunes")
    from qbench_triton import kernels, tuning

    variants = kernels.conv_gemm_kernel.device_caches[torch.cuda.current_device()][0]
    after_planning = []
    plan_candidates = tuning.compile_candidates

    def counted(*args, **kwargs):
        plan_candidates(*args, **kwargs)
        after_planning.append(len(variants))

    monkeypatch.setattr(tuning, "compile_candidates", counted)
    problem = dataclasses.replace(PROBLEMS["gemm-3x3-pad"], kernel_size=(2, 5),
                                  padding=(1, 2)).validate()  # a kernel shape of its own
    row = runner.row("triton", Case("own-kernel-shape", problem), backend)
    assert row["status"] == "ok", row["error"]
    assert after_planning and len(variants) == after_planning[-1]


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


@pytest.mark.parametrize("in_dtype", ["qint8", "quint8"])
def test_planning_compiles_every_tuning_candidate_at_once(in_dtype):
    """A launch's plan compiles its tuning candidates at once (`tuning.compile_candidates`), so
    that the autotuner, which would compile them one at a time, finds each compiled: planned as
    on an sm_90 GPU without one (tests/triton_standin.py)."""
    pytest.importorskip("triton")
    compiles = json.loads(run_compiling(STANDIN, in_dtype))
    assert compiles["planned"] > 1 and compiles["compiled_after"] == 0, compiles


def test_tuning_skips_tiles_wider_than_twice_the_problem():
    pytest.importorskip("triton")
    from qbench_triton import tuning

    def fitting(args, r, s, merge):
        return tuning._fitting_gemm_configs(tuning.GEMM_CONFIGS, args, R=r, S=s, MERGE_S=merge)

    whole = [config for config in tuning.GEMM_CONFIGS if not config.kwargs["SHARED"]]
    layer1 = gemm_args(32 * 56 * 56, 64, 64, 64)  # 3x3 64 -> 64: no 128- or 256-wide BN,
    assert config_tiles(fitting(layer1, 3, 3, False)) == {  # no BK of 32, as 64 divides a tap
        tiles for tiles in config_tiles(whole) if tiles[1] <= 64 and tiles[2] == 64}
    expanding = gemm_args(32 * 56 * 56, 24, 24, 144)  # MobileNetV2's 1x1 24 -> 144
    assert config_tiles(fitting(expanding, 1, 1, False)) == {
        tiles for tiles in config_tiles(whole) if tiles[2] == 32}
    assert {(64, 128, 32), (128, 128, 32), (32, 256, 32)} <= config_tiles(
        fitting(expanding, 1, 1, False))
    odd = gemm_args(32 * 14 * 14, 96, 96, 576)  # 1x1 96 -> 576: blocks of 64 leave a half
    assert {tiles[2] for tiles in config_tiles(fitting(odd, 1, 1, False))} == {32, 64, 128}
    conv1 = gemm_args(32 * 112 * 112, 3, 3, 64, span=21)  # a row of 7 pixels x 3 channels
    assert {tiles[2] for tiles in config_tiles(fitting(conv1, 7, 7, True))} == {32}  # BK
    grouped = gemm_args(32 * 56 * 56, 64, 16, 16)  # groups' spans are their own channels
    assert config_tiles(fitting(grouped, 3, 3, False)) == {(128, 32, 32), (256, 32, 32)}
    tiny = gemm_args(4, 16, 16, 8)  # nothing fits: one of the smallest configs
    (smallest,) = config_tiles(fitting(tiny, 1, 1, False))
    assert sum(smallest) == min(map(sum, config_tiles(whole)))
    depthwise = tuning._fitting_direct_configs(tuning.DIRECT_CONFIGS, dict(M=6, K=24))
    assert config_tiles(depthwise) == {(32, 32)}


def test_the_tuning_log_shows_what_stream_k_and_the_wgmma_kernel_did(tmp_path):
    """`python -m qbench_triton.tuning_log FILE`: for stream-K, the Gluon kernel, its split-K,
    its L1 reuse, its persistent programs and the direct kernel's unrolled taps, per shape that
    tried the kind, its best against the best plain kernel (a program per tile, the taps a loop)
    and their ratio; shapes that tried none are left out, no kind counts as plain, a split Gluon
    config counts as split-K alone, and one split with L1 reuse as L1 reuse."""
    record = {"input_nhwc": [32, 7, 7, 512], "output_nhwc": [32, 7, 7, 512],
              "kernel_size": [3, 3], "in_dtype": "qint8"}
    log = tmp_path / "tuning.jsonl"
    log.write_text("\n".join(json.dumps(record | {"median_us": medians}) for medians in [
        {"64x128x256/8w/3s": 19.4, "128x256x64/8w/3s/stream1": 14.55, "64x64x64/4w/4s": 23.1},
        {"64x64x128/4w/4s": 18.0, "64x128x128/4w/4s/wgmma": 19.8,
         "64x64x128/4w/4s/stream2": 9.0, "64x128x128/4w/4s/wgmma/split2": 12.6,
         "64x128x128/4w/4s/wgmma/l1": 15.3, "64x128x128/4w/4s/wgmma/split2/l1": 12.0,
         "64x64x128/4w/4s/wgmma/persist3": 19.0},
        {"64x64x32/4w/4s": 249.0},
        {"32x32/4w/3s": 9.4, "32x32/4w/3s/unrolled": 4.7, "64x64/4w/3s/unrolled": 6.0}]) + "\n")
    proc = subprocess.run([sys.executable, "-m", "qbench_triton.tuning_log", str(log)],
                          capture_output=True, text=True, check=True)
    # a table per kind
    _, stream_k, wgmma, split_k, reuse, persistent, unrolled = proc.stdout.split("| input NHWC ")
    assert "| plain kernel (µs) | stream-K (µs) | ratio |" in stream_k
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
    assert persistent.strip().splitlines()[-1] == \
        "persistent faster on 0 of 1 shapes that tried it"
    assert ("| 32x7x7x512 | 32x7x7x512 | 3x3 | qint8 | 32x32/4w/3s 9.4 "
            "| 32x32/4w/3s/unrolled 4.7 | 0.50 |") in unrolled.splitlines()
    assert unrolled.splitlines()[-1] == "unrolled taps faster on 1 of 1 shapes that tried it"


def test_a_config_label_names_each_variant():
    """`_config_label`: the tile, warps and stages; a Gluon config's kernel, split and L1 reuse
    in that order; a shared GEMM launch's programs per SM."""
    pytest.importorskip("triton")
    import qbench_triton
    from qbench_triton import tuning, wgmma_configs

    label = qbench_triton._config_label
    assert label(wgmma_configs._configs([(128, 128, 128, 8, 3)], SPLIT=2, L1_REUSE=True)[0]) == (
        "128x128x128/8w/3s/wgmma/split2/l1")
    assert label(wgmma_configs.WGMMA_CONFIGS[0]) == "64x128x128/4w/4s/wgmma"
    assert label(wgmma_configs.MERGED_CONFIGS[0]) == "128x64x32/4w/3s/wgmma"
    assert label(tuning._gemm_config(64, 64, 64, 4, 4)) == "64x64x64/4w/4s"
    assert label(tuning._gemm_config(64, 64, 64, 4, 4, per_sm=2)) == "64x64x64/4w/4s/stream2"
