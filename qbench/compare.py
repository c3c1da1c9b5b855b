"""Comparing two runs, NVBench-style: per problem and backend the ratio of medians, labelled
against the noise of both runs.

A row's noise is the relative width of its median's 95 % confidence interval, or, where too few
samples gave no interval, its relative spread (p90 - p10) / median. With `noise` the larger of the
two runs' noises, `ratio` = new median / old median and d = |ratio - 1|:
    SAME    d <= threshold, or d <= noise <= 10 %   (no difference worth naming)
    NOISY   threshold < d <= noise, noise > 10 %    (a difference the noise cannot confirm)
    FASTER / SLOWER   d > max(noise, threshold), ratio < 1 / ratio > 1
The threshold (default 5 %) stands for what a median's own interval cannot see: drift between runs
(clocks, temperature, neighbours on a shared machine), which on a shared CPU alone can move every
median by 10 % or more.
A `mismatch` row is timed too (its outputs were wrong): such rows still match, and their `check`
says so, since their ratios time wrong results.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pandas as pd

from qbench.problem import ConvProblem
from qbench.results import COLUMNS, FAILING_STATUSES, load_results
from qbench.suite import table_name

NOISY_ABOVE = 0.10
DEFAULT_THRESHOLD = 0.05
# requantization constants and the activations' range (values, and files of schema 4 and older
# have none): they change no work
_NO_WORK = ("out_scale", "out_zero_point", "reduce_range")
# the same problem on the same backend: the case's name without a sweep's "[field=value]" suffix
# (a field swept in one run may be set with --set in the other) and every problem field the rows
# record but _NO_WORK
PROBLEM_KEY = ["case_name", "backend", *(field.name for field in fields(ConvProblem)
                                         if field.name in COLUMNS and field.name not in _NO_WORK)]
# how a row was timed: rows timed otherwise in the two runs still match (`timing_changes`)
HOW_TIMED = ["device", "timing_mode"]


def row_noise(rows: pd.DataFrame) -> pd.Series:
    """Relative noise of each row's median (see the module docstring)."""
    ci = rows["median_ci_pct"].where(rows["median_ci_pct"].map(math.isfinite), math.nan)
    return ci.fillna(rows["spread_pct"]) / 100


def label(ratio: float, noise: float, threshold: float = DEFAULT_THRESHOLD) -> str:
    """SAME, NOISY, FASTER or SLOWER for one matched row."""
    difference = abs(ratio - 1)
    if difference <= threshold:
        return "SAME"
    if difference <= noise:
        return "NOISY" if noise > NOISY_ABOVE else "SAME"
    return "FASTER" if ratio < 1 else "SLOWER"


def check_text(status_old: str, status_new: str) -> str:
    """A matched row's `check`: empty where neither run's outputs failed the check, else the two
    statuses (`ok -> mismatch`), or the one where both runs had it."""
    if status_old not in FAILING_STATUSES and status_new not in FAILING_STATUSES:
        return ""
    return status_new if status_old == status_new else f"{status_old} -> {status_new}"


def compare_runs(old: str | Path, new: str | Path,
                 threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Rows timed in both runs, matched on PROBLEM_KEY, with the new run's case name, each run's
    HOW_TIMED (`device_old`, `device_new`, ...) and status, the ratio, noise, label and
    `check` (`check_text`)."""
    frames = []
    for directory in (old, new):
        _, rows = load_results(directory)
        timed = rows[rows["median_us"].notna()].copy()
        timed["noise"] = row_noise(timed)
        timed["case_name"] = timed["case"].map(table_name)
        frames.append(timed[PROBLEM_KEY + ["case", *HOW_TIMED, "status", "median_us", "noise"]])
    matched = frames[0].drop(columns="case").merge(frames[1], on=PROBLEM_KEY,
                                                    suffixes=("_old", "_new"))
    matched["ratio"] = matched["median_us_new"] / matched["median_us_old"]
    matched["noise"] = matched[["noise_old", "noise_new"]].max(axis=1)
    matched["label"] = [label(r, n, threshold)
                        for r, n in zip(matched["ratio"], matched["noise"])]
    matched["check"] = [check_text(old_status, new_status) for old_status, new_status
                        in zip(matched["status_old"], matched["status_new"])]
    return matched


def timing_changes(matched: pd.DataFrame) -> list[str]:
    """"COLUMN OLD -> NEW" for each pair of different values of HOW_TIMED that matched rows were
    timed with (`device cuda: NVIDIA H100 80GB HBM3 -> cuda: NVIDIA H200`, `timing_mode cold ->
    hot`), in order of first appearance: their ratios measure that as much as the code."""
    changes = []
    for column in HOW_TIMED:
        old, new = f"{column}_old", f"{column}_new"
        changed = matched.loc[matched[old] != matched[new], [old, new]].drop_duplicates()
        changes += [f"{column} {before} -> {after}"
                    for before, after in changed.itertuples(index=False)]
    return changes


def regressions(matched: pd.DataFrame, fail_above_pct: float) -> pd.DataFrame:
    """Rows labelled SLOWER whose median grew by more than `fail_above_pct` percent."""
    return matched[(matched["label"] == "SLOWER")
                   & (matched["ratio"] > 1 + fail_above_pct / 100)]


def new_failures(matched: pd.DataFrame) -> pd.DataFrame:
    """Rows whose outputs failed the check in the new run and passed it in the old."""
    return matched[matched["status_new"].isin(FAILING_STATUSES)
                   & ~matched["status_old"].isin(FAILING_STATUSES)]
