"""`qbench random-suite`: valid, seeded suites of random problems that reach every field of the
problem model, and that `qbench run` checks like any other."""

from __future__ import annotations

import pandas as pd
import torch

from qbench.problem import QDTYPES, REDUCED_QDTYPES
from qbench.suite import load_suite


def _suite(run_cli, path, *args):
    result = run_cli("random-suite", *args, "--out", path)
    assert result.exit_code == 0, result.output
    return load_suite(path)


def test_same_seed_same_suite_other_seed_other_suite(run_cli, tmp_path):
    first, again, other = (run_cli("random-suite", "20", "--seed", seed).output
                           for seed in ("3", "3", "4"))
    assert first == again and first != other
    assert 'name = "random-20-seed-3"' in first and "# Made by `qbench random-suite 20" in first


def test_problems_are_valid_within_bounds_and_reach_every_field(run_cli, tmp_path):
    suite = _suite(run_cli, tmp_path / "r.toml", "300", "--seed", "7", "--max-channels", "40",
                   "--max-size", "20", "--batch", "3")
    problems = [case.problem for case in suite.cases]  # load_suite validated each
    assert len(problems) == 300 and len({case.name for case in suite.cases}) == 300
    assert all(p.batch == 3 and max(p.in_channels, p.out_channels) <= 40
               and max(p.height, p.width) <= 20 for p in problems)
    assert all(p.out_scale is None and p.out_zero_point is None for p in problems)  # auto
    reached = {
        "dense": any(p.groups == 1 and p.in_channels > 1 for p in problems),
        "grouped": any(1 < p.groups < p.in_channels for p in problems),
        "depthwise": any(p.groups == p.in_channels > 1 for p in problems),
        "channel multiplier": any(p.groups == p.in_channels and p.out_channels == 2 * p.groups
                                  for p in problems),
        "non-square kernel": any(p.kernel_size[0] != p.kernel_size[1] for p in problems),
        "stride": any(max(p.stride) > 1 for p in problems),
        "dilation": any(max(p.dilation) > 1 for p in problems),
        "padding": any(max(p.padding) > 0 for p in problems),
        "weight zero point": any(p.weight_zero_point for p in problems),
        "no bias": any(not p.bias for p in problems),
    }
    assert all(reached.values()), reached
    for field in ("in_dtype", "out_dtype", "weight_qscheme", "relu"):
        assert len({getattr(p, field) for p in problems}) == 2, field
    # a quarter of the problems with a weight zero point (README), whatever ReLU's sign rule does
    assert 0.15 < sum(bool(p.weight_zero_point) for p in problems) / len(problems) < 0.35


def test_relu_cases_with_a_weight_zero_point_keep_their_sums_mean_positive(run_cli, tmp_path):
    """Else ReLU would clamp nearly every output on full-range data (a mistrusted case)."""
    suite = _suite(run_cli, tmp_path / "r.toml", "400", "--seed", "1")
    shifted = [case.problem for case in suite.cases
               if case.problem.relu and case.problem.weight_zero_point]
    assert len(shifted) > 10
    for p in shifted:
        mean_x = sum(QDTYPES[p.in_dtype]) / 2 - p.in_zero_point
        assert mean_x * (-0.5 - p.weight_zero_point) >= 0, p


def test_most_outputs_of_every_problem_read_the_image(run_cli, tmp_path):
    """An output whose window is all padding is the zero point whatever the backend computes."""
    suite = _suite(run_cli, tmp_path / "r.toml", "300", "--seed", "5", "--max-size", "8")
    padded = 0
    for p in (case.problem for case in suite.cases):
        window_reads = torch.nn.functional.conv2d(
            torch.ones(1, 1, p.height, p.width), torch.ones(1, 1, *p.kernel_size),
            stride=p.stride, padding=p.padding, dilation=p.dilation) > 0
        assert window_reads.float().mean() >= 0.5, p
        padded += bool(max(p.padding))
    assert padded > 100  # padding is still drawn, often
    only_padding = run_cli("random-suite", "5", "--max-size", "3", "--set", "padding=9",
                           "--set", "kernel_size=1")
    assert only_padding.exit_code == 2 and "of the outputs read only padding" in only_padding.output


def test_qbench_run_checks_a_random_suite(run_cli, tmp_path):
    path = tmp_path / "r.toml"
    _suite(run_cli, path, "25", "--seed", "2")
    out = tmp_path / "out"
    result = run_cli("run", path, "--out", out, "--backends", "reference,torch-fp32",
                     "--max-time", "0.005")
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 50 and set(rows.status) <= {"ok", "mistrusted"}, result.output
    assert result.exit_code == 0


def test_set_fields_are_kept_and_the_rest_drawn_around_them(run_cli, tmp_path):
    path = tmp_path / "r.toml"
    suite = _suite(run_cli, path, "100", "--set", "in_dtype=quint8", "--set", "groups=4",
                   "--set", "kernel_size=[3, 1]")
    problems = [case.problem for case in suite.cases]
    assert all(p.in_dtype == "quint8" and 0 <= p.in_zero_point <= 255 and p.groups == 4
               and p.in_channels % 4 == 0 and p.out_channels % 4 == 0
               and p.kernel_size == (3, 1) for p in problems)
    assert len({p.in_zero_point for p in problems}) > 10  # still drawn
    header = " ".join(line[2:] for line in path.read_text().splitlines() if line.startswith("# "))
    assert "--set in_dtype=quint8 --set groups=4 --set 'kernel_size=[3, 1]'" in header


def test_reduce_range_set_draws_zero_points_within_7_bits(run_cli, tmp_path):
    """What PyTorch's fbgemm and oneDNN compute exactly on CPUs without AVX-512 VNNI (README)."""
    problems = [case.problem for case in _suite(run_cli, tmp_path / "r.toml", "200", "--set",
                                                 "reduce_range=true").cases]
    assert all(p.reduce_range for p in problems)
    for dtype, (low, high) in REDUCED_QDTYPES.items():
        zero_points = {p.in_zero_point for p in problems if p.in_dtype == dtype}
        assert len(zero_points) > 20 and low <= min(zero_points) and max(zero_points) <= high
    assert not any(case.problem.reduce_range
                   for case in _suite(run_cli, tmp_path / "full.toml", "50").cases)


def test_bad_counts_bounds_and_set_fields_are_bad_input(run_cli):
    for args in (["0"], ["5", "--max-channels", "0"], ["5", "--max-size", "-1"]):
        assert run_cli("random-suite", *args).exit_code == 2, args
    for setting, message in (("out_scale=0.5", "field 'out_scale': not a drawn field"),
                             ("in_dtype=int8", "field 'in_dtype': expected one of"),
                             ("colour=red", "field 'colour': unknown field"),
                             ("groups", "expected FIELD=VALUE"),
                             # below their least values: each divided by, or drawn up to, once
                             ("groups=0", "--set: field 'groups': must be >= 1, got 0"),
                             ("in_channels=0", "field 'in_channels': must be >= 1, got 0"),
                             ("kernel_size=[3, -1]", "field 'kernel_size': must be >= 1, got -1"),
                             ("padding=-2", "field 'padding': must be >= 0, got -2")):
        result = run_cli("random-suite", "5", "--set", setting)
        assert result.exit_code == 2 and message in result.output, (setting, result.output)
    impossible = run_cli("random-suite", "5", "--set", "in_channels=6", "--set", "groups=4")
    assert impossible.exit_code == 2
    assert "no valid problem within the bounds and set fields" in impossible.output
    assert "in_channels=6 is not divisible by groups=4" in impossible.output
