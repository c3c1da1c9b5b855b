"""Runs that cannot be broken: crashes and hangs cost one row each, a resumed run skips the rows it
has, Ctrl-C or SIGTERM keeps every finished row and still writes the report."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import FAKE_PLUGINS, TINY_SUITE

FAST = ("--max-time", "0.01", "--min-samples", "2")
TWO_CASES = TINY_SUITE.replace("relu = [false, true]\n", "")


def test_crashes_and_hangs_lose_no_other_rows(run_cli, write_suite, tmp_path, fake_plugins):
    out = tmp_path / "out"
    backends = ["torch-x86", "faulty-aborts", "faulty-exact", "faulty-segfaults", "faulty-hangs",
                "faulty-raises", "torch-onednn"]
    result = run_cli("run", write_suite(TWO_CASES), "--out", out, "-p", "qbench_faulty",
                     "--backends", ",".join(backends), "--case-timeout", "4", *FAST)
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 2 * len(backends)  # zero lost rows
    assert rows.groupby(["case", "backend"]).size().max() == 1
    status = rows.groupby("backend").status.agg(set).to_dict()
    assert status == {"torch-x86": {"ok"}, "faulty-exact": {"ok"}, "torch-onednn": {"ok"},
                      "faulty-aborts": {"error"}, "faulty-segfaults": {"error"},
                      "faulty-hangs": {"error"}, "faulty-raises": {"error"}}
    error = rows.set_index(["backend", "case"]).error
    # a dead or hung worker's row ends with its last output for the row (C's or Python's)
    assert error["faulty-aborts"].str.endswith(
        "killed by SIGABRT; its last output: faulty-aborts: free(): injected corruption").all()
    # each crash after other rows ran again in a fresh worker: the backend's own fault
    assert error["faulty-aborts"].str.startswith(
        'Backend "faulty-aborts" lost a fresh worker too: the worker process was killed').all()
    # faulty-segfaults prints nothing, but its fresh worker may have (a CI run's did, once, on the
    # second case alone): the death is said, then whatever the worker printed
    segfaults = error["faulty-segfaults"]
    assert segfaults.str.contains("killed by SIGSEGV(?:$|; its last output: )").all(), \
        list(segfaults)
    assert error["faulty-hangs"].str.contains(
        "timed out after 4 s .*; its last output: faulty-hangs: waiting for nothing$").all()
    assert error["faulty-raises"].str.contains("injected failure").all()
    assert result.exit_code == 1 and (out / "report.html").exists()


def test_a_row_killed_by_an_earlier_rows_damage_runs_again_in_a_fresh_worker(
        run_cli, write_suite, tmp_path, fake_plugins):
    """faulty-corrupts leaves its worker to die on the next backend's call, as PyTorch's fbgemm
    leaves a corrupted heap: that row runs again in a fresh worker and says what died before."""
    out = tmp_path / "out"
    result = run_cli("run", write_suite(TWO_CASES), "--out", out, "-p", "qbench_faulty",
                     "--backends", "faulty-corrupts,faulty-exact,torch-x86", *FAST)
    rows = pd.read_csv(out / "results.csv", keep_default_na=False).set_index(["backend", "case"])
    assert result.exit_code == 0, result.output
    assert rows.status.tolist() == ["ok"] * 6
    assert rows.error["faulty-corrupts"].tolist() == ["", ""]
    assert rows.error["torch-x86"].tolist() == ["", ""]
    # the baseline, torch-x86, runs first; b's worker is the one that ran a's row again
    for case, answered in (("a", "2 rows"), ("b", "3 rows")):
        assert rows.error["faulty-exact", case] == (
            f"ran again in a fresh worker: the worker that had answered {answered} (the last: "
            f"{case} / faulty-corrupts) died on it: the worker process was killed by SIGABRT; "
            "its last output: faulty-exact: double free or corruption (!prev)")
        assert f"note {case} / faulty-exact: ran again in a fresh worker" in result.output


def test_resume_skips_the_rows_already_there(run_cli, write_suite, tmp_path):
    suite, out = write_suite(TINY_SUITE), tmp_path / "out"
    run_cli("run", suite, "--out", out, "--backends", "torch-x86", *FAST)
    before = pd.read_csv(out / "results.csv")
    result = run_cli("run", suite, "--resume", out, "--backends", "torch-x86,torch-onednn", *FAST)
    after = pd.read_csv(out / "results.csv")
    assert result.exit_code == 0, result.output
    assert len(after) == 6 and after.groupby(["case", "backend"]).size().max() == 1
    pd.testing.assert_frame_equal(after.iloc[:3], before)  # the earlier rows are untouched
    assert after[after.backend == "torch-onednn"].speedup.notna().all()  # against earlier rows
    assert json.loads((out / "results.json").read_text())["resumed_rows"] == 3


def test_resume_refuses_another_suite(run_cli, write_suite, tmp_path):
    out = tmp_path / "out"
    run_cli("run", write_suite(TINY_SUITE), "--out", out, "--backends", "torch-x86", *FAST)
    other = write_suite(TINY_SUITE.replace('name = "tiny"', 'name = "other"'), "other.toml")
    result = run_cli("run", other, "--resume", out)
    assert result.exit_code == 2 and "holds suite 'tiny', not 'other'" in result.output


def test_resume_refuses_other_set_fields(run_cli, write_suite, tmp_path):
    suite, out = write_suite(TINY_SUITE), tmp_path / "out"
    run_cli("run", suite, "--out", out, "--backends", "torch-x86", "--set", "batch=2", *FAST)
    result = run_cli("run", suite, "--resume", out, "--set", "batch=3")
    assert result.exit_code == 2, result.output
    assert "ran with --set batch=2, this run with --set batch=3" in result.output
    result = run_cli("run", suite, "--resume", out, "--set", "batch=2", "--backends",
                     "torch-x86", *FAST)
    assert result.exit_code == 0, result.output


def _start_hanging_run(write_suite, out: Path) -> subprocess.Popen:
    """`qbench run` of torch-x86 then faulty-hangs, which hangs, in a process group of its own
    (to signal, and to kill should it not stop), once it has written torch-x86's first row."""
    env = {**os.environ, "PYTHONPATH": str(FAKE_PLUGINS)}
    # Ctrl-C ignored here (as a shell without job control starts a background command: pytest
    # run by `(pytest &)`) would be ignored by the child too, and Python's then never raises
    # KeyboardInterrupt; a handler here is reset to the default in the child
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qbench", "run", str(write_suite(TINY_SUITE)), "--out",
             str(out), "-p", "qbench_faulty", "--backends", "torch-x86,faulty-hangs", *FAST],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.time() + 60
        while not _rows_written(out / "results.csv"):  # torch-x86's, then faulty-hangs hangs
            if time.time() > deadline:
                pytest.fail(f"no row in {out / 'results.csv'} within 60 s")
            time.sleep(0.2)
    except BaseException:  # the run must not outlive the test, nor its hanging worker
        _kill_group(proc)
        raise
    time.sleep(1)
    return proc


def _rows_written(csv: Path) -> bool:
    """Whether `csv` has a row yet: the run creates it, then writes its header and first row."""
    try:
        return len(pd.read_csv(csv)) >= 1
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return False


def _kill_group(proc: subprocess.Popen) -> None:
    """What is left of the run and its workers: a run that did not stop must not outlive the
    test, nor its hanging worker."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize(("name", "to_group", "status"), [
    ("SIGINT", True, 130),  # Ctrl-C in a terminal: the run's whole process group
    ("SIGTERM", False, 143),  # `kill PID`
    ("SIGTERM", True, 143),  # a batch scheduler's time limit, `timeout`: the group
])
def test_a_stopped_run_keeps_finished_rows_and_writes_the_report(name, to_group, status,
                                                                 write_suite, tmp_path):
    out = tmp_path / "out"
    proc = _start_hanging_run(write_suite, out)
    try:
        signum = signal.Signals[name]
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
        assert _live_processes_in_group(proc.pid) == []  # its worker stopped too
    finally:
        _kill_group(proc)
    assert proc.returncode == status
    rows = pd.read_csv(out / "results.csv")
    assert list(rows.backend) == ["torch-x86"] and rows.status.tolist() == ["ok"]
    assert json.loads((out / "results.json").read_text())["interrupted"] is True
    assert (out / "report.html").exists() and "torch-x86" in stdout
    assert f"interrupted after 1 of 6 rows: the same command with --resume {out}" in stderr


def _live_processes_in_group(group: int, wait_s: float = 10.0) -> list[int]:
    """Linux: the processes of process group `group` but zombies, once there are none or
    `wait_s` has passed."""
    deadline = time.time() + wait_s
    while True:
        live = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):  # a process that ended meanwhile
                state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
                if int(pgrp) == group and state != "Z":
                    live.append(int(stat.parent.name))
        if not live or time.time() > deadline:
            return live
        time.sleep(0.1)


@pytest.mark.skipif(sys.platform != "linux", reason="workers die with their run on Linux alone")
def test_a_run_killed_outright_leaves_no_worker_behind(write_suite, tmp_path):
    proc = _start_hanging_run(write_suite, tmp_path / "out")
    try:
        proc.kill()  # SIGKILL: the run stops no worker itself
        proc.wait(timeout=60)
        assert _live_processes_in_group(proc.pid) == []
    finally:
        _kill_group(proc)
        proc.communicate(timeout=60)  # the pipes, which a worker left behind would hold open


def test_a_worker_whose_device_broke_is_retired(monkeypatch):
    """A worker reports a poisoned device with its row; the parent starts a fresh one."""
    from qbench import isolation

    assert isolation.device_works("cpu")
    monkeypatch.setattr(isolation.torch.cuda, "synchronize",
                        lambda: (_ for _ in ()).throw(RuntimeError("illegal address")))
    assert not isolation.device_works("cuda")
