"""The cudnn backend. Without a GPU: its arithmetic and buffer layouts through the whole runner
with cuDNN emulated on the CPU (tests/cudnn_emulator.py), its graph description, plan cache and
autotuning logic. With a GPU and cudnn-frontend: the same problems against real cuDNN."""

from __future__ import annotations

import dataclasses
import enum
import threading
import time

import pytest
import torch

import qbench_cudnn
from cudnn_emulator import emulated_executor_for
from problems import PROBLEMS
from qbench import UnsupportedError, Verdict
from qbench.problem import ConvProblem
from qbench.random_suite import Bounds, random_layers
from qbench.registry import load_backends
from qbench.runner import CaseRunner, RunSettings
from qbench.suite import Case
from qbench.timing import TimingPolicy
from qbench_cudnn import fp16
from qbench_cudnn import graph as graphs
from qbench_cudnn.numerics import ChannelLayout, offsets, pack_weight
from qbench_cudnn.plans import PLAN_LIMIT, PlanBrokeDevice, PlanCache, alignment, autotune

POLICY = TimingPolicy(min_samples=2, max_time_s=0.005)


def _on_cpu_with_emulated_cudnn(monkeypatch, channel_multiple: int,
                                scale_first_only: bool = False, name: str = "cudnn"):
    backend = load_backends()[name]
    backend = dataclasses.replace(backend, info=dataclasses.replace(backend.info, device="cpu"))
    backend.__dict__["availability"] = Verdict.yes()  # the emulator stands in for the GPU
    monkeypatch.setattr(qbench_cudnn, "executor_for", emulated_executor_for(
        channel_multiple, scale_first_only))
    return backend


# what the emulated engines refuse: (channels not multiples of, offset first)
ENGINES = {"any-channels": (1, False), "channels-by-4": (4, False),
           "scale-first-only": (1, True), "every-limit": (4, True)}


@pytest.mark.parametrize("engines", ENGINES)
@pytest.mark.parametrize("name", PROBLEMS)
def test_arithmetic_matches_the_reference_with_cudnn_emulated(name, engines, monkeypatch):
    channel_multiple, scale_first_only = ENGINES[engines]
    backend = _on_cpu_with_emulated_cudnn(monkeypatch, channel_multiple, scale_first_only)
    problem = PROBLEMS[name].validate()
    row = CaseRunner(RunSettings(policy=POLICY)).row("t", Case(name, problem), backend)
    if problem.weight_zero_point:
        assert row["status"] == "unsupported" and "weight zero point" in row["error"]
        return
    if channel_multiple > 1 and problem.groups > 1 and (
            problem.in_channels % channel_multiple or problem.out_channels % channel_multiple):
        assert row["status"] == "unsupported" and "no plan" in row["error"], row["error"]
        return
    assert row["status"] == "ok", row["error"]
    assert row["max_err_lsb"] <= 1
    padded = channel_multiple > 1 and (problem.in_channels % 4 or problem.out_channels % 4)
    assert ("channels padded" in row["details"]) == bool(padded), row["details"]
    signed_zero_point = problem.in_zero_point - (128 if problem.in_dtype == "quint8" else 0)
    staged_padding = signed_zero_point != 0 and problem.padding != (0, 0)
    assert ("spatial padding staged" in row["details"]) == staged_padding, row["details"]
    assert "plan=emulated" in row["details"]
    assert ("scale first" in row["details"]) == scale_first_only, row["details"]
    staged = padded or problem.in_dtype == "quint8" or staged_padding
    assert ("stage_input_us=" in row["details"]) == bool(staged), row["details"]


@pytest.mark.parametrize("engines", ENGINES)
def test_random_problems_are_within_one_lsb_or_refused_with_cudnn_emulated(engines, monkeypatch):
    """`qbench random-suite`'s problems, small: every row passes the check, or is refused with
    the reason, never a mismatch or an error, whatever the engines refuse."""
    backend = _on_cpu_with_emulated_cudnn(monkeypatch, *ENGINES[engines])
    runner = CaseRunner(RunSettings(policy=POLICY))
    for layer in random_layers(30, seed=len(engines), bounds=Bounds(24, 10)):
        problem = ConvProblem(batch=2, **layer.fields).validate()
        row = runner.row("t", Case(layer.name, problem), backend)
        assert row["status"] in ("ok", "mistrusted", "unsupported"), (problem, row["error"])
        assert row["status"] != "unsupported" or row["error"], problem


def test_padding_is_used_only_when_cudnn_refuses_the_problems_channels(monkeypatch):
    backend = _on_cpu_with_emulated_cudnn(monkeypatch, channel_multiple=1)
    problem = PROBLEMS["direct-odd-channels"].replace(in_dtype="qint8", in_zero_point=0)
    case = Case("c30", problem.validate())
    row = CaseRunner(RunSettings(policy=POLICY)).row("t", case, backend)
    assert row["status"] == "ok"
    assert "channels as given, spatial padding in the graph" in row["details"]
    assert "stage_input_us" not in row["details"]


def test_refusals_of_every_arrangement_are_reported(monkeypatch):
    backend = _on_cpu_with_emulated_cudnn(monkeypatch, channel_multiple=64)
    row = CaseRunner(RunSettings(policy=POLICY)).row(
        "t", Case("odd", PROBLEMS["direct-odd-channels"].validate()), backend)
    assert row["status"] == "unsupported"
    assert row["error"].count("multiples of 64") == 1  # one reason, for every arrangement:
    assert "(4 arrangements: " in row["error"]  # 2 channel layouts x 2 forms


def test_offsets_fold_bias_and_zero_point_per_channel():
    weight = torch.randint(-128, 128, (3, 2, 3, 3), dtype=torch.int8)
    bias_terms = torch.tensor([0.5, -1.0, 2.0])
    off = offsets(weight, 7, bias_terms)
    assert off.shape == (1, 3, 1, 1)
    sums = weight.to(torch.int64).sum(dim=(1, 2, 3))
    assert torch.equal(off.flatten(), (bias_terms - 7 * sums).float())


def test_padding_is_staged_as_the_zero_point_where_it_is_not_zero(monkeypatch):
    """cuDNN given a per-pixel offset (padding in the graph, zero point not 0) was wrong on an
    H200: the padding goes into the staged input instead, and offsets stay per channel."""
    backend = _on_cpu_with_emulated_cudnn(monkeypatch, channel_multiple=1)
    specs = []
    real = qbench_cudnn.executor_for
    monkeypatch.setattr(qbench_cudnn, "executor_for",
                        lambda spec, pack: (specs.append(spec), real(spec, pack))[1])
    row = CaseRunner(RunSettings(policy=POLICY)).row(
        "t", Case("pad", PROBLEMS["gemm-3x3-pad"].validate()), backend)  # quint8, zero point 0
    assert row["status"] == "ok" and "spatial padding staged" in row["details"]
    assert [(spec.padding, spec.offset.dims) for spec in specs] == [((0, 0), (1, 24, 1, 1))]


def test_weights_are_padded_with_zeros_channels_last():
    weight = torch.randint(-128, 128, (5, 3, 3, 3), dtype=torch.int8)
    layout = ChannelLayout.of(3, 5, groups=1, pad=True)
    assert (layout.padded_in, layout.padded_out) == (4, 8)
    packed = pack_weight(weight, layout)
    assert packed.shape == (8, 4, 3, 3)
    assert packed.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(packed[:5, :3], weight)
    assert not packed[5:].any() and not packed[:, 3:].any()
    assert ChannelLayout.of(6, 6, groups=3, pad=True).padded_in == 6  # groups: never padded


class RecordingCudnn:
    """Records the graph calls of `graphs.build`, to check what it asks of cuDNN."""

    class data_type:  # noqa: N801 - mirrors cudnn.data_type
        INT8, INT32, FLOAT, HALF = "INT8", "INT32", "FLOAT", "HALF"

    def __init__(self):
        self.calls = []
        recorder = self

        class Tensor:
            def __init__(self, **kw):
                self.attrs = dict(kw)

            def __getattr__(self, name):
                if not name.startswith("set_"):
                    raise AttributeError(name)

                def setter(value):
                    self.attrs[name[4:]] = value
                    return self
                return setter

        class Graph:
            def __init__(self, **kw):
                recorder.calls.append(("pygraph", kw))

            def tensor(self, **kw):
                recorder.calls.append(("tensor", kw))
                return Tensor(**kw)

            def __getattr__(self, op):
                def record(**kw):
                    recorder.calls.append((op, kw))
                    result = Tensor(op=op)
                    recorder.outputs.append(result)
                    return result
                return record

        self.pygraph = Graph
        self.outputs = []


@pytest.mark.parametrize("form, ops", [
    ("offset first", ["add", "mul", "relu", "add"]),
    ("scale first", ["mul", "add", "relu"])])
def test_graph_computes_the_conv_in_int32_and_every_pointwise_op_in_float(form, ops):
    spec = graphs.describe((2, 8, 6, 6), (16, 8, 3, 3), (2, 16, 6, 6), padding=(1, 1),
                           stride=(1, 1), dilation=(1, 1), relu=True, form=form, relu_floor=-3.0)
    cudnn = RecordingCudnn()
    graphs.build(spec, cudnn, handle=0)
    calls = [(name, kw) for name, kw in cudnn.calls if name not in ("pygraph", "tensor")]
    assert [name for name, _ in calls] == ["conv_fprop", *ops, "validate",
                                           "build_operation_graph"]
    assert calls[0][1]["compute_data_type"] == "INT32"
    assert all(kw["compute_data_type"] == "FLOAT" for _, kw in calls[1:1 + len(ops)])
    conv_out, y = cudnn.outputs[0], cudnn.outputs[len(ops)]
    assert conv_out.attrs["data_type"] == "FLOAT"
    assert y.attrs["output"] is True and y.attrs["data_type"] == "INT8"
    assert y.attrs["stride"] == [6 * 6 * 16, 1, 6 * 16, 16] and y.attrs["uid"] == graphs.Y
    tensors = {kw["name"]: kw for name, kw in cudnn.calls if name == "tensor"}
    assert tensors["x"]["stride"] == [6 * 6 * 8, 1, 6 * 8, 8]
    assert tensors["offset"]["dim"] == [1, 16, 1, 1]
    assert ("zero_point" in tensors) == (form == "offset first")
    relu = dict(calls)["relu"]
    assert relu.get("lower_clip") == (-3.0 if form == "scale first" else None)


def test_plan_cache_builds_each_key_once_across_threads():
    cache: PlanCache[str] = PlanCache()
    builds = []

    def build(key):
        def make():
            builds.append(key)
            time.sleep(0.02)
            return f"plan-{key}"
        return make

    results = []
    threads = [threading.Thread(target=lambda k=k: results.append(cache.get(k, build(k))))
               for k in ("a", "b") * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(builds) == ["a", "b"] and len(cache) == 2
    assert sorted(results) == ["plan-a"] * 4 + ["plan-b"] * 4


def test_a_failed_build_is_not_cached():
    cache: PlanCache[int] = PlanCache()
    with pytest.raises(RuntimeError):
        cache.get("k", lambda: (_ for _ in ()).throw(RuntimeError("no engine")))
    assert cache.get("k", lambda: 3) == 3


class FakePlans:
    """A graph whose plans take the given times per heuristics mode; None: the plan fails to
    build; "poison": it runs and breaks the CUDA context; a mode missing from `times` has no
    engine."""

    class heur_mode(enum.Enum):  # noqa: N801
        A = "A"
        FALLBACK = "FALLBACK"

    def __init__(self, times):
        self.all_times = times
        self.times = None

    def create_execution_plans(self, modes):
        (mode,) = modes
        self.times = self.all_times.get(mode.name)

    def check_support(self):
        if self.times is None:
            raise RuntimeError("CUDNN_STATUS_NOT_SUPPORTED: no engine")

    def get_execution_plan_count(self):
        return len(self.times)

    def build_plan_at_index(self, index):
        if self.times[index] is None:
            raise RuntimeError("CUDNN_STATUS_NOT_SUPPORTED")

    def get_plan_name_at_index(self, index):
        return f"engine{index}"

    def get_workspace_size_plan_at_index(self, index):
        return 64 * index


def _tune(times):
    """autotune over FakePlans; a plan timed "poison" raises and leaves the device broken."""
    broken = []

    def time_plan(graph, index):
        if graph.times[index] == "poison":
            broken.append(index)
            raise RuntimeError("CUDA error: misaligned address")
        return graph.times[index]

    return autotune(lambda: FakePlans(times), FakePlans, time_plan, lambda: not broken)


def test_autotune_keeps_the_fastest_plan_that_builds():
    tuned = _tune({"A": [3e-6, None, 1e-6, 2e-6], "FALLBACK": [1e-9]})
    assert (tuned.plan_index, tuned.plan_name, tuned.workspace_size) == (2, "engine2", 128)
    assert (tuned.candidates, tuned.tried, tuned.runnable, tuned.mode) == (4, 4, 3, "A")


def test_autotune_tries_the_first_plans_in_the_heuristics_order_at_most():
    times = {"A": [5e-6] * 3 + [1e-6] + [2e-6] * (PLAN_LIMIT - 3)}
    assert _tune(times).plan_index == 3
    times = {"A": [5e-6] * PLAN_LIMIT + [1e-6]}  # the fastest, ranked past the limit
    tuned = _tune(times)
    assert (tuned.candidates, tuned.tried, tuned.runnable) == (PLAN_LIMIT + 1, PLAN_LIMIT,
                                                               PLAN_LIMIT)
    assert tuned.plan_index == 0


def test_autotune_takes_fallback_plans_only_when_none_of_the_heuristics_runs():
    tuned = _tune({"A": [None], "FALLBACK": [5e-6, 4e-6]})
    assert (tuned.plan_index, tuned.mode, tuned.candidates) == (1, "FALLBACK", 2)
    assert _tune({"FALLBACK": [5e-6]}).mode == "FALLBACK"


def test_autotune_without_a_runnable_plan_says_why():
    with pytest.raises(RuntimeError, match="no cuDNN plan ran: .*A: .*no engine.*NOT_SUPPORTED"):
        _tune({"FALLBACK": [None]})


def test_a_plan_that_breaks_the_cuda_context_stops_tuning_and_is_named():
    with pytest.raises(PlanBrokeDevice, match="plan engine1 .*misaligned address"):
        _tune({"A": [3e-6, "poison", 1e-6]})


def test_alignment_is_the_largest_power_of_two_up_to_16():
    assert [alignment(p) for p in (0, 32, 8, 12, 6, 7)] == [16, 16, 8, 4, 2, 1]


def test_unavailable_without_cudnn_frontend_or_gpu_says_what_it_needs():
    backend = load_backends()["cudnn"]
    if backend.availability.ok:
        pytest.skip("cudnn is available here")
    assert any(word in backend.availability.reason
               for word in ("nvidia-cudnn-frontend", "CUDA device", "cuDNN library"))


def _real_row(backend_name: str, name: str) -> dict:
    """PROBLEMS[name]'s row on the real backend (skipped where it is unavailable)."""
    backend = load_backends()[backend_name]
    if not backend.availability.ok:
        pytest.skip(backend.availability.reason)
    return CaseRunner(RunSettings(policy=POLICY)).row(
        "t", Case(name, PROBLEMS[name].validate()), backend)


@pytest.mark.gpu
@pytest.mark.parametrize("name", PROBLEMS)
def test_real_cudnn_matches_the_reference(name):
    problem = PROBLEMS[name]
    row = _real_row("cudnn", name)
    if problem.weight_zero_point or (problem.groups == problem.in_channels and
                                     row["status"] == "unsupported"):
        assert row["status"] == "unsupported" and row["error"], row  # cuDNN's own reason
        return
    assert row["status"] == "ok", row["error"]
    assert row["max_err_lsb"] <= 1
    assert "plan=" in row["details"] and row["first_call_ms"] > 0


@pytest.mark.parametrize("name", PROBLEMS)
def test_fp16_graph_matches_the_reference_with_cudnn_emulated(name, monkeypatch):
    """cudnn-fp16 takes every problem, weight zero points too (its weights are dequantized)."""
    backend = _on_cpu_with_emulated_cudnn(monkeypatch, channel_multiple=1, name="cudnn-fp16")
    row = CaseRunner(RunSettings(policy=POLICY)).row(
        "t", Case(name, PROBLEMS[name].validate()), backend)
    assert row["status"] == "ok" and row["max_err_lsb"] <= 1, row["error"]
    assert row["numerics"] == "fp16" and "plan=emulated" in row["details"]


def test_fp16_output_that_the_plan_never_writes_cannot_pass(monkeypatch):
    """The first call's output starts as NaN, which the host reads as its poison: every element
    128 LSB off (the call after timing returns a buffer of its own too, never filled, so that the
    row's largest error may be more)."""
    backend = _on_cpu_with_emulated_cudnn(monkeypatch, channel_multiple=1, name="cudnn-fp16")
    monkeypatch.setattr(qbench_cudnn, "executor_for",
                        lambda spec, pack, build: (lambda variant_pack: None, {}))
    row = CaseRunner(RunSettings(policy=POLICY)).row(
        "t", Case("lazy", PROBLEMS["gemm-3x3-pad"].validate()), backend)
    assert row["status"] == "mismatch" and row["max_err_lsb"] >= 128 and row["exact_pct"] == 0


@pytest.mark.parametrize("bias, relu, ops", [(True, True, ["add", "relu"]), (True, False, ["add"]),
                                             (False, True, ["relu"]), (False, False, [])])
def test_fp16_graph_is_one_conv_with_its_bias_and_relu_in_float(bias, relu, ops):
    spec = fp16.describe((2, 8, 6, 6), (16, 4, 3, 3), (2, 16, 3, 3), padding=(1, 1),
                         stride=(2, 2), dilation=(1, 1), relu=relu, bias=bias)
    cudnn = RecordingCudnn()
    fp16.build(spec, cudnn, handle=0)
    calls = [(name, kw) for name, kw in cudnn.calls if name not in ("pygraph", "tensor")]
    assert [name for name, _ in calls] == ["conv_fprop", *ops, "validate",
                                           "build_operation_graph"]
    assert all(kw["compute_data_type"] == "FLOAT" for _, kw in calls[:1 + len(ops)])
    y = cudnn.outputs[len(ops)]
    assert y.attrs["output"] is True and y.attrs["data_type"] == "HALF"
    assert y.attrs["stride"] == [3 * 3 * 16, 1, 3 * 16, 16] and y.attrs["uid"] == graphs.Y
    assert all(t.attrs["data_type"] == "FLOAT" for t in cudnn.outputs[:len(ops)])
    tensors = {kw["name"]: kw for name, kw in cudnn.calls if name == "tensor"}
    assert {name: kw["data_type"] for name, kw in tensors.items()} == (
        {"x": "HALF", "w": "HALF"} | ({"bias": "HALF"} if bias else {}))
    assert tensors["w"]["stride"] == [3 * 3 * 4, 1, 3 * 4, 4]
    if bias:
        assert tensors["bias"]["dim"] == [1, 16, 1, 1] and tensors["bias"]["uid"] == fp16.BIAS


@pytest.mark.gpu
@pytest.mark.parametrize("name", PROBLEMS)
def test_real_cudnn_fp16_matches_the_reference(name):
    row = _real_row("cudnn-fp16", name)
    if row["status"] == "unsupported":  # no fp16 engine for it: cuDNN's reason
        assert row["error"], row
        return
    assert row["status"] == "ok" and row["max_err_lsb"] <= 1, row["error"]
    assert "plan=" in row["details"] and row["first_call_ms"] > 0


def test_unsupported_error_is_raised_for_weight_zero_points():
    from qbench.inputs import make_inputs

    inputs = make_inputs(PROBLEMS["gemm-weight-zero-point"].validate(), 1)
    with pytest.raises(UnsupportedError, match="weight zero point"):
        qbench_cudnn.qbench_prepack("cudnn", inputs.weight, inputs.bias, inputs.params)
