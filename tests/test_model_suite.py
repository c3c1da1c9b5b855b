"""`qbench suite`: a model's distinct convs as a suite that qbench runs, with what quantized
inference fuses into them; bad models are bad input. The models: tests/tiny_models.py."""

from __future__ import annotations

import tomllib

import pandas as pd
import pytest

from qbench.errors import QbenchError
from qbench.model_convs import ConvCall, ModelConvs, model_convs
from qbench.model_loader import load_model
from qbench.problem import ConvProblem
from qbench.suite import load_suite
from qbench.suite_writer import distinct_layers, model_warnings, suite_text

INPUT = (3, 16, 16)
# runs of torch-x86 take activations in 7 bits, which PyTorch's engines compute exactly on every
# CPU, also where they add pairs of products in int16 (`cpu_engines`)
SEVEN_BITS = ("--set", "reduce_range=true")
pytestmark = [
    # tiny_models.Mixed's uneven conv, which qbench leaves out, as PyTorch runs it
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths"),
    # tiny_models' TorchScript modules, which qbench leaves out, and torch.compile's imports
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]


def _problem(batch: int, **fields) -> ConvProblem:
    return ConvProblem(batch=batch, **fields)


# tiny_models.Mixed's layers, as a suite's cases: (name, count, fields)
MIXED = [
    ("stem", 1, dict(in_channels=3, out_channels=8, height=16, width=16, kernel_size=(3, 3),
                     stride=(2, 2), padding=(1, 1), relu=True)),
    ("reduce", 1, dict(in_channels=8, out_channels=8, height=8, width=8, kernel_size=(1, 1),
                       relu=True)),
    ("depthwise", 1, dict(in_channels=8, out_channels=8, height=8, width=8, kernel_size=(3, 3),
                          padding=(1, 1), groups=8, relu=True)),
    ("expand", 2, dict(in_channels=8, out_channels=16, height=8, width=8, kernel_size=(1, 1))),
    ("wide", 1, dict(in_channels=16, out_channels=16, height=8, width=8, kernel_size=(1, 3),
                     padding=(0, 2), dilation=(1, 2), bias=False)),
    ("shared", 1, dict(in_channels=16, out_channels=16, height=8, width=8, kernel_size=(1, 1))),
    ("shared#2", 1, dict(in_channels=16, out_channels=16, height=4, width=4, kernel_size=(1, 1),
                         relu=True)),
    ("reflect", 1, dict(in_channels=16, out_channels=16, height=6, width=6, kernel_size=(3, 3))),
    ("padded", 1, dict(in_channels=16, out_channels=4, height=5, width=5, kernel_size=(3, 3),
                       stride=(2, 2), relu=True)),
    ("functional.conv2d", 1, dict(in_channels=16, out_channels=8, height=4, width=4,
                                  kernel_size=(1, 1), bias=False, relu=True)),
    ("conv2d", 1, dict(in_channels=16, out_channels=4, height=4, width=4, kernel_size=(3, 3),
                       stride=(2, 2), bias=False)),
]


def test_a_models_distinct_convs_become_a_suite_with_their_counts_relus_and_biases(
        run_cli, tmp_path):
    out = tmp_path / "mixed.toml"
    result = run_cli("suite", "tiny_models:mixed", "--input", "3,16,16", "--out", out)
    assert result.exit_code == 0, result.output
    suite = load_suite(out)
    assert suite.name == "mixed"
    expected = [(f"{name}[batch={batch}]", count, _problem(batch, **fields))
                for name, count, fields in MIXED for batch in (1, 32)]
    assert [(case.name, case.count, case.problem) for case in suite.cases] == expected
    comments = [line[2:] for line in out.read_text().splitlines() if line.startswith("# ")]
    assert "expand, downsample.0" in comments  # the modules behind a case
    notes = " ".join(comments)
    assert "13 convolutions (1 left out, below), 11 distinct" in notes
    left_out = "uneven: padding='same' pads one side more here"
    assert f"Left out: {left_out}" in notes
    assert f"qbench suite: Left out: {left_out}" in result.stderr


def test_the_suite_goes_to_standard_output_and_runs(run_cli, tmp_path):
    result = run_cli("suite", "tiny_models:mixed", "--input", "3,16,16", "--batch", "2",
                     "--name", "mine", "--description", 'a "quoted" \\ description')
    assert result.exit_code == 0, result.stderr
    document = tomllib.loads(result.stdout)
    assert document["suite"] == {"name": "mine", "description": 'a "quoted" \\ description'}
    assert document["defaults"] == {"batch": 2}
    path = tmp_path / "mine.toml"
    path.write_text(result.stdout)
    out = tmp_path / "run"
    ran = run_cli("run", path, "--backends", "torch-x86", "--out", out, "--max-time", "0.01",
                  *SEVEN_BITS)
    rows = pd.read_csv(out / "results.csv")
    assert ran.exit_code == 0, ran.output
    assert len(rows) == len(MIXED) and set(rows.status) == {"ok"}


def test_a_model_that_torch_fx_cannot_trace_gives_its_shapes_and_says_what_is_unknown(run_cli):
    result = run_cli("suite", "tiny_models:Branchy", "--input", "3,16,16", "--batch", "1")
    assert result.exit_code == 0, result.stderr
    suite_cases = tomllib.loads(result.stdout)["case"]
    assert suite_cases == [{"name": "conv", "in_channels": 3, "out_channels": 4, "height": 16,
                            "width": 16, "kernel_size": 3, "padding": 1, "relu": False}]
    assert "torch.fx could not trace it (TraceError" in result.stderr
    assert "# Every float conv's case has relu = false and a bias" in result.stdout


def test_a_quantized_models_convs_keep_their_dtypes_qschemes_zero_points_and_fused_relus(
        run_cli, tmp_path):
    out = tmp_path / "quantized.toml"
    result = run_cli("suite", "tiny_models:Quantized", "--input", "3,16,16", "--batch", "2",
                     "--out", out)
    assert result.exit_code == 0, result.output
    expected = [
        ("stem", dict(in_channels=3, out_channels=8, height=16, width=16, kernel_size=(3, 3),
                      stride=(2, 2), padding=(1, 1), in_zero_point=7, relu=True)),
        ("project", dict(in_channels=8, out_channels=16, height=8, width=8, kernel_size=(1, 1),
                         weight_qscheme="per_tensor", weight_zero_point=3, bias=False)),
        ("reflect", dict(in_channels=16, out_channels=16, height=10, width=10, kernel_size=(3, 3),
                         in_zero_point=64, weight_qscheme="per_tensor")),
        ("head", dict(in_channels=16, out_channels=4, height=8, width=8, kernel_size=(3, 3),
                      padding=(1, 1), relu=True)),
    ]
    suite = load_suite(out)
    assert [(case.name, case.problem) for case in suite.cases] == [
        (name, _problem(2, **fields)) for name, fields in expected]
    notes = " ".join(line[2:] for line in out.read_text().splitlines() if line.startswith("# "))
    assert "Quantized convs: in_dtype, in_zero_point, weight_qscheme" in notes
    skewed = "Left out: skewed: its weight zero points differ between channels (0 to 2)"
    assert skewed in notes and skewed in result.stderr
    ran = run_cli("run", out, "--backends", "torch-x86", "--out", tmp_path / "run",
                  "--max-time", "0.01", *SEVEN_BITS)
    assert ran.exit_code == 0, ran.output
    assert set(pd.read_csv(tmp_path / "run" / "results.csv").status) == {"ok"}


def test_a_quantized_conv_that_adds_a_second_input_is_left_out(run_cli, monkeypatch):
    import torch

    monkeypatch.setattr(torch.backends.quantized, "engine", "onednn")  # the one that runs it
    result = run_cli("suite", "tiny_models:Adding", "--input", "3,16,16")
    assert result.exit_code == 2
    assert ("conv_add: ConvAdd2d adds a second input to the conv's output: qbench's convs have "
            "no such epilogue") in result.stderr
    assert "qbench can measure none of its convs" in result.stderr


def test_a_torchscript_module_within_a_model_is_left_out_and_named(run_cli):
    result = run_cli("suite", "tiny_models:HoldingScript", "--input", "3,16,16", "--batch", "1")
    assert result.exit_code == 0, result.stderr
    assert [case["name"] for case in tomllib.loads(result.stdout)["case"]] == ["conv"]
    assert "Left out: scripted: TorchScript (torch.jit.ScriptModule)" in result.stderr
    assert "torch.fx could not trace" not in result.stdout


def test_a_model_in_another_dtype_runs_on_zeros_of_its_own():
    import tiny_models

    found = model_convs(tiny_models.bfloat16, INPUT, "bfloat16")
    assert [(call.path, call.fields["relu"]) for call in found.calls] == [("0", True)]


def test_a_compiled_model_is_read_as_the_module_it_compiles():
    import tiny_models

    found = model_convs(tiny_models.compiled(), INPUT, "compiled")
    assert [(call.path, call.fields["relu"]) for call in found.calls] == [("0", True)]
    assert found.untraced is None


def test_an_untraced_model_is_warned_of_only_for_its_float_convs():
    fields = dict(in_channels=4, out_channels=4, height=8, width=8, kernel_size=(1, 1),
                  stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, bias=True, relu=False)
    quantized = ConvCall("q", fields, quantized=True)
    untraced = "torch.fx could not trace it (TraceError: no)"
    assert model_warnings(ModelConvs([quantized], [], untraced)) == []
    assert model_warnings(ModelConvs([quantized, ConvCall("f", fields)], [], untraced)) == [
        f"Every float conv's case has relu = false and a bias: {untraced}, so the ReLUs and "
        "BatchNorms after its convs are unknown."]


@pytest.mark.parametrize("spec, input_shape, message", [
    ("tiny_models", "3,16,16", "expected MODULE:NAME"),
    ("no_such_module_here:model", "3,16,16", "cannot import no_such_module_here"),
    ("tiny_models:missing", "3,16,16", "tiny_models has no missing"),
    ("tiny_models:raising", "3,16,16", "raising() raised RuntimeError: no weights here"),
    ("tiny_models:sized(8, colour=1)", "3,16,16", "sized(8, colour=1) raised TypeError"),
    ("tiny_models:sized(channels)", "3,16,16", "expected NAME or NAME(ARGUMENTS), each argument"),
    ("tiny_models:sized(**options)", "3,16,16", "expected NAME or NAME(ARGUMENTS)"),
    ("tiny_models:sized(8", "3,16,16", "expected NAME or NAME(ARGUMENTS)"),
    ("tiny_models:sized(8)[0]", "3,16,16", "expected NAME or NAME(ARGUMENTS)"),
    ("tiny_models:not_a_model", "3,16,16", "got a list, not a torch.nn.Module"),
    ("tiny_models:mixed", "4,16,16", "on an input of shape (1, 4, 16, 16) it raised"),
    ("tiny_models:linear", "3,16,16", "no 2D conv ran"),
    ("tiny_models:uneven", "3,16,16", "qbench can measure none of its convs"),
    ("tiny_models:scripted", "3,16,16", "TorchScript (torch.jit.ScriptModule) runs its convs "
     "where qbench cannot see them: give the Python module it was scripted from"),
    ("tiny_models:mixed", "3,16", "expected C,H,W"),
    ("tiny_models:mixed", "3,0,16", "expected C,H,W"),
])
def test_bad_models_and_inputs_are_bad_input(run_cli, spec, input_shape, message):
    result = run_cli("suite", spec, "--input", input_shape)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_models_error_is_told_in_one_line(run_cli):
    result = run_cli("suite", "tiny_models:raising", "--input", "3,16,16")
    assert result.exit_code == 2
    assert "raising() raised RuntimeError: no weights here" in result.stderr
    assert "its second line" not in result.stderr


def test_a_model_that_is_one_conv_names_its_case_after_its_class(run_cli):
    result = run_cli("suite", "torch.nn:Conv2d(3, 8, 3)", "--input", "3,8,8", "--batch", "1")
    assert result.exit_code == 0, result.stderr
    assert [case["name"] for case in tomllib.loads(result.stdout)["case"]] == ["Conv2d"]
    uneven = run_cli("suite", "tiny_models:uneven", "--input", "3,16,16")
    assert "Left out: Conv2d: padding='same' pads one side more" in uneven.stderr


def test_a_function_called_with_literal_arguments_gives_the_model(run_cli):
    result = run_cli("suite", "tiny_models:sized(6, kernel=1)", "--input", "3,8,8", "--batch", "1")
    assert result.exit_code == 0, result.stderr
    document = tomllib.loads(result.stdout)
    assert document["suite"]["name"] == "sized-6-kernel-1"
    assert document["case"] == [{"name": "0", "in_channels": 3, "out_channels": 6, "height": 8,
                                 "width": 8, "kernel_size": 1, "relu": True}]
    assert "Made by `qbench suite 'tiny_models:sized(6, kernel=1)' --input 3,8,8`" in " ".join(
        line[2:] for line in result.stdout.splitlines() if line.startswith("# "))


def test_a_model_of_ones_own_is_found_in_the_current_directory(run_cli, tmp_path, monkeypatch):
    import sys

    (tmp_path / "my_net_for_qbench.py").write_text(
        "from torch import nn\nnet = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    result = run_cli("suite", "my_net_for_qbench:net", "--input", "3,8,8", "--batch", "1")
    assert result.exit_code == 0, result.stderr
    assert tomllib.loads(result.stdout)["case"] == [{
        "name": "0", "in_channels": 3, "out_channels": 4, "height": 8, "width": 8,
        "kernel_size": 1, "relu": True}]


def test_an_out_file_that_cannot_be_written_is_bad_input(run_cli, tmp_path):
    out = tmp_path / "no such folder" / "suite.toml"
    result = run_cli("suite", "tiny_models:mixed", "--input", "3,16,16", "--out", out)
    assert result.exit_code == 2
    assert f"--out {out}: No such file or directory" in result.stderr


def test_calls_of_one_problem_are_one_layer_named_after_the_first():
    stem = dict(in_channels=3, out_channels=8, height=16, width=16, kernel_size=(3, 3),
                stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1, bias=True, relu=True)
    other = stem | {"height": 8}
    calls = [ConvCall("a", stem), ConvCall("b", other), ConvCall("c", dict(stem)),
             ConvCall("b", other | {"relu": False})]
    layers = distinct_layers(calls)
    assert [(layer.name, layer.paths) for layer in layers] == [
        ("a", ("a", "c")), ("b", ("b",)), ("b#2", ("b",))]


def test_the_suite_text_round_trips_any_name_and_description():
    odd = 'tab\t"quote" back\\slash\nnew line \x7f del \U0001f600 é'
    layer = distinct_layers([ConvCall(odd, dict(
        in_channels=4, out_channels=4, height=5, width=7, kernel_size=(3, 1), stride=(1, 2),
        padding=(1, 0), dilation=(1, 1), groups=2, bias=False, relu=False))])
    document = tomllib.loads(suite_text(odd, odd, [1, 8], layer, [odd]))
    assert document["suite"] == {"name": odd, "description": odd}
    assert document["defaults"] == {"batch": [1, 8]}
    assert document["case"] == [{"name": odd, "in_channels": 4, "out_channels": 4, "height": 5,
                                 "width": 7, "kernel_size": [3, 1], "stride": [1, 2],
                                 "padding": [1, 0], "groups": 2, "bias": False, "relu": False}]


def test_loading_a_model_instance_or_factory():
    import tiny_models

    assert load_model("tiny_models:linear") is tiny_models.linear
    assert isinstance(load_model("tiny_models:mixed"), tiny_models.Mixed)
    with pytest.raises(QbenchError, match="no weights here"):
        load_model("tiny_models:raising")


def test_a_conv_called_by_keyword_is_read_too():
    import torch

    class Keyword(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(input=x)

    found = model_convs(Keyword(), INPUT, "keyword")
    assert [(call.path, call.fields["height"]) for call in found.calls] == [("conv", 16)]
