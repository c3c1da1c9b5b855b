"""Suite loading: sweeps, pairs, and every malformed suite as a one-line error naming file, case and
field, exit status 2 from the CLI, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from qbench.errors import QbenchError, SuiteError
from qbench.suite import MAX_CASES, load_suite, parse_override, select_cases, table_name

from conftest import ROOT, TINY_SUITE

CASE = """
[[case]]
name = "c"
in_channels = 8
out_channels = 8
height = 8
width = 8
kernel_size = 3
"""


def test_lists_are_sweep_axes_and_pairs_stay_pairs(write_suite):
    path = write_suite("""
        [defaults]
        batch = [1, 4]
        [[case]]
        name = "c"
        in_channels = [4, 8]
        out_channels = 8
        height = 9
        width = 9
        kernel_size = [3, 1]
        stride = [[1, 1], [2, 1]]
        count = 3
    """)
    suite = load_suite(path)
    assert suite.name == "suite"
    assert len(suite.cases) == 2 * 2 * 2
    first = suite.cases[0]
    assert first.name == "c[batch=1,in_channels=4,stride=1x1]"
    assert first.problem.kernel_size == (3, 1) and first.count == 3
    assert {c.problem.stride for c in suite.cases} == {(1, 1), (2, 1)}
    assert first.problem.out_scale is None  # auto


def test_out_scale_auto_or_number(write_suite):
    path = write_suite(CASE + 'out_scale = 0.5\nout_zero_point = "auto"\n')
    problem = load_suite(path).cases[0].problem
    assert problem.out_scale == 0.5 and problem.out_zero_point is None


@pytest.mark.parametrize("suite_file", sorted((ROOT / "suites").glob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_suites_load(suite_file: Path):
    suite = load_suite(suite_file)
    assert suite.cases and suite.description


def test_resnet_suite_has_every_conv_of_resnet50():
    suite = load_suite(ROOT / "suites" / "resnet.toml")
    batch32 = [c for c in suite.cases if c.problem.batch == 32]
    assert sum(c.count for c in batch32) == 53  # 49 convolutions + 4 downsampling 1x1s
    assert {c.problem.batch for c in suite.cases} == {1, 32}


# (suite text, case named in the error, field named in the error, words of the message)
MALFORMED = {
    "toml-syntax": ("[[case]\nname = 1", None, None, "TOML syntax error"),
    "unknown-field": (CASE + "colour = 3\n", "c", "colour", "unknown field"),
    "misspelled-field": (CASE + "strid = 2\n", "c", "strid", "did you mean 'stride'"),
    "wrong-type": (CASE + 'groups = "two"\n', "c", "groups", "expected an integer"),
    "bool-as-int": (CASE + "batch = true\n", "c", "batch", "expected an integer"),
    "channels-vs-groups": (CASE + "groups = 3\n", "c", "groups", "not divisible"),
    "empty-output": (CASE.replace("kernel_size = 3", "kernel_size = 11"), "c", "kernel_size",
                     "output would be empty"),
    "zero-stride": (CASE + "stride = 0\n", "c", "stride", "must be >= 1"),
    "missing-field": (CASE.replace("height = 8\n", ""), "c", "height", "missing field"),
    "missing-name": (CASE.replace('name = "c"\n', ""), "#1", "name", "missing field"),
    "blank-name": (CASE.replace('name = "c"\n', 'name = " "\n'), "#1", "name", "must not be blank"),
    "unknown-backend": (CASE + 'backends = ["torch-x86", "cudnnn"]\n', "c", "backends",
                        "unknown backend 'cudnnn'"),
    "no-cases": ('[suite]\nname = "x"\n', None, None, "no cases"),
    "unknown-dtype": (CASE + 'in_dtype = "int4"\n', "c", "in_dtype", "expected one of"),
    "empty-sweep": (CASE + "batch = []\n", "c", "batch", "empty sweep"),
    "explosion": (CASE + "batch = [" + ", ".join(map(str, range(1, 201))) + "]\nin_scale = ["
                  + ", ".join(f"{s / 100}" for s in range(1, 201)) + "]\n", None, None,
                  f"more than {MAX_CASES}"),
    "zero-scale": (CASE + "in_scale = 0.0\n", "c", "in_scale", "must be a finite number > 0"),
    "negative-out-scale": (CASE + "out_scale = -1\n", "c", "out_scale", "must be a finite number"),
    "huge-scale": (CASE + "in_scale = 1e38\n", "c", "in_scale",
                   "must lie in [1e-20, 1e+20], where float32 requantization stays finite"),
    "tiny-out-scale": (CASE + "out_scale = 1e-30\n", "c", "out_scale", "[1e-20, 1e+20]"),
    "zero-point-range": (CASE + "in_zero_point = 300\n", "c", "in_zero_point", "[0, 255]"),
    "qint8-zero-point-range": (CASE + 'in_dtype = "qint8"\nin_zero_point = 200\n', "c",
                               "in_zero_point", "[-128, 127]"),
    "reduce-range-zero-point": (CASE + "reduce_range = true\nin_zero_point = 128\n", "c",
                                "in_zero_point", "[0, 127] with reduce_range, got 128"),
    "reduce-range-not-bool": (CASE + "reduce_range = 1\n", "c", "reduce_range", "true or false"),
    "duplicate-names": (CASE + CASE, "c", "name", "two cases have this name"),
    "bad-count": (CASE + "count = 0\n", "c", "count", "must be >= 1"),
    "bad-pair": (CASE + "padding = [1, 2, 'x']\n", "c[padding=x]", "padding",
                 "expected an integer or"),
    "unknown-table": (CASE + "[extra]\nx = 1\n", None, "extra", "unknown top-level table"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_suite_names_file_case_and_field(name, write_suite):
    text, case, field, words = MALFORMED[name]
    path = write_suite(text)
    with pytest.raises(SuiteError) as info:
        load_suite(path, known_backends={"torch-x86", "torch", "cudnn"})
    message = str(info.value)
    assert message.startswith(str(path))
    assert words in message
    assert info.value.case == case and info.value.field == field
    if case is not None:
        assert f"case {case!r}" in message
    if field is not None:
        assert f"field {field!r}" in message


def test_missing_file_is_named():
    with pytest.raises(SuiteError, match="no-such.toml: no such file"):
        load_suite("no-such.toml")


@pytest.mark.parametrize("name", ["misspelled-field", "toml-syntax", "unknown-backend",
                                  "explosion"])
def test_cli_reports_bad_suites_in_one_line_with_status_2(name, write_suite, run_cli):
    path = write_suite(MALFORMED[name][0])
    result = run_cli("run", path, "--out", path.parent / "out")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert str(path) in result.output and MALFORMED[name][3] in result.output
    assert not (path.parent / "out").exists()


def test_cli_missing_suite_file(run_cli, tmp_path):
    result = run_cli("run", tmp_path / "absent.toml")
    assert result.exit_code == 2 and "absent.toml: no such file" in result.output


def test_overrides_set_a_field_in_every_case_over_the_suites_values(write_suite):
    path = write_suite(TINY_SUITE)
    plain = load_suite(path)
    assert {c.problem.in_dtype for c in plain.cases} == {"quint8"}
    fields = dict(parse_override(t) for t in ("in_dtype=qint8", "weight_qscheme=per_tensor",
                                             "batch=[1, 2]", "relu=true"))
    suite = load_suite(path, overrides=fields)
    assert len(suite.cases) == 2 * 2  # case "a" swept relu; now relu is set: batch is the sweep
    assert {(c.problem.in_dtype, c.problem.weight_qscheme, c.problem.relu)
            for c in suite.cases} == {("qint8", "per_tensor", True)}
    assert {c.problem.batch for c in suite.cases} == {1, 2}


@pytest.mark.parametrize("text, message", [
    ("in_dtyp=qint8", "--set: field 'in_dtyp': unknown field (did you mean 'in_dtype'?)"),
    ("in_dtype", "--set: expected FIELD=VALUE"),
    ("in_dtype=int4", "field 'in_dtype'"),
])
def test_cli_reports_bad_overrides_in_one_line_with_status_2(text, message, write_suite, run_cli):
    path = write_suite(TINY_SUITE)
    result = run_cli("run", path, "--set", text, "--out", path.parent / "out")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.output, result.output
    assert not (path.parent / "out").exists()


def test_cli_overrides_reach_the_rows_and_the_settings(write_suite, run_cli):
    import json

    import pandas as pd

    path = write_suite(TINY_SUITE)
    out = path.parent / "out"
    result = run_cli("run", path, "--set", "in_dtype=qint8", "--set", "batch=2", "--out", out,
                     "--backends", "torch-x86", "--max-time", "0.01", "--executor", "inline")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv")
    assert set(rows.in_dtype) == {"qint8"} and set(rows.batch) == {2}
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert settings["overrides"] == {"in_dtype": "qint8", "batch": 2}


def test_case_patterns_select_by_name_table_or_shell_pattern():
    """`--case`: a case's own name, its [[case]] table's name (its whole sweep) or an fnmatch
    pattern, in the suite's order; none names every case; a pattern naming no case is refused."""
    suite = load_suite(ROOT / "suites" / "padding.toml", overrides={"batch": 32})
    names = [case.name for case in suite.cases]

    def chosen(*patterns):
        return [case.name for case in select_cases(suite, patterns).cases]

    assert chosen() == names
    assert chosen("in-channels[in_channels=4]") == ["in-channels[in_channels=4]"]  # not a glob
    assert chosen("in-channels") == [name for name in names if name.startswith("in-channels[")]
    assert len(chosen("in-channels")) == 13
    assert chosen("both*", "in-channels[in_channels=4]") == (  # the suite's order
        ["in-channels[in_channels=4]"] + [name for name in names if name.startswith("both")])
    assert chosen("*=33]") == [name for name in names if name.endswith("=33]")]
    with pytest.raises(QbenchError, match=r"padding.toml: --case 'in-channel' names none of its "
                                          r"51 cases \(did you mean 'in-channels'\?\)"):
        select_cases(suite, ["in-channels", "in-channel"])


def test_a_pattern_naming_no_case_lists_the_first_20_tables():
    suite = load_suite(ROOT / "suites" / "resnet.toml")
    tables = list(dict.fromkeys(table_name(case.name) for case in suite.cases))
    with pytest.raises(QbenchError) as refused:
        select_cases(suite, ["nothing"])
    assert len(tables) > 20 and str(refused.value).endswith(
        f"its [[case]] tables: {', '.join(tables[:20])} and {len(tables) - 20} more")
