"""--executor ray on a local Ray instance: the same rows as the default executor, a crashing backend
costing only its own row (after one recorded retry), and one measurement per card at a time,
checked with logical GPUs declared to Ray."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from conftest import TINY_SUITE

ray = pytest.importorskip("ray")

from qbench.ray_executor import _runtime_env, task_options  # noqa: E402

ONE_CASE = TINY_SUITE.replace("relu = [false, true]\n", "").split("[[case]]\nname = \"b\"")[0]
BACKENDS = "torch-x86,torch-onednn,faulty-raises,faulty-aborts,faulty-exact"


def test_ray_gives_the_rows_of_the_default_executor(run_cli, write_suite, tmp_path, fake_plugins):
    suite = write_suite(ONE_CASE)
    outcomes = {}
    for executor in ("process", "ray"):
        out = tmp_path / executor
        run_cli("run", suite, "--out", out, "--executor", executor, "-p", "qbench_faulty",
                "--backends", BACKENDS, "--max-time", "0.01")
        rows = pd.read_csv(out / "results.csv")
        outcomes[executor] = rows
    key = ["case", "backend", "status"]
    assert (sorted(map(tuple, outcomes["ray"][key].values))
            == sorted(map(tuple, outcomes["process"][key].values)))
    ray_rows = outcomes["ray"].set_index("backend")
    assert len(ray_rows) == 5 and ray_rows.node.notna().all()
    assert "lost its Ray task twice" in ray_rows.loc["faulty-aborts", "error"]
    assert ray_rows.loc["faulty-exact", "status"] == "ok"
    assert ray_rows.loc["torch-onednn", "speedup"] > 0  # filled in whatever order rows came


def test_one_measurement_per_card_and_per_cpu_node():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        def probe():
            start = time.time()
            time.sleep(0.3)
            return tuple(ray.get_gpu_ids()), start, time.time()

        remote = ray.remote(probe)
        gpu_runs = ray.get([remote.options(**task_options("cuda", 2)).remote() for _ in range(4)])
        cpu_runs = ray.get([remote.options(**task_options("cpu", 2)).remote() for _ in range(3)])
    finally:
        ray.shutdown()
    assert all(len(gpus) == 1 for gpus, _, _ in gpu_runs)
    for i, (gpus_a, start_a, end_a) in enumerate(gpu_runs):
        for gpus_b, start_b, end_b in gpu_runs[i + 1:]:
            if gpus_a == gpus_b:  # one card: never at once
                assert end_a <= start_b or end_b <= start_a
    assert len({gpus for gpus, _, _ in gpu_runs}) == 2  # both cards were used
    cpu_runs.sort(key=lambda run: run[1])
    assert all(a[2] <= b[1] for a, b in zip(cpu_runs, cpu_runs[1:]))  # CPU rows one at a time


def test_workers_get_the_variables_of_qbench_and_its_plugins(monkeypatch):
    monkeypatch.setenv("QBENCH_TRITON_STREAM_K", "0")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    env = _runtime_env()["env_vars"]
    assert env["QBENCH_TRITON_STREAM_K"] == "0" and env["TRITON_INTERPRET"] == "1"
    assert "UNRELATED_VARIABLE" not in env
