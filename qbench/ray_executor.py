"""Running a suite on Ray: every GPU of a node, or of a cluster, each measurement alone on its card.

Each (case, backend) row is a Ray task. A CUDA row holds one whole GPU (`num_gpus=1`, so Ray never
places two measurements on one card at a time) and one CPU; a CPU row holds every CPU of the
smallest node, so no two CPU measurements, nor a GPU row's host work, share a machine with it.
Rows come back as they finish and are written in that order, each naming the node it ran on (the
`device` column names the card). A task whose worker or node is lost is retried once, which its row
records; lost twice, it becomes an `error` row, and the run goes on. Ray is imported only here:
`pip install 'qbench[ray]'`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from qbench.environment import qbench_variables
from qbench.errors import QbenchError
from qbench.registry import Backend, load_backends
from qbench.runner import CaseRunner, RunSettings, error_row, unavailable_row, work
from qbench.suite import Case, Suite

# per Ray worker process: backends and a CaseRunner (with its prepared case) per run's settings
_RUNNERS: dict[tuple[RunSettings, tuple[str, ...]], tuple[dict[str, Backend], CaseRunner]] = {}


def _row(suite_name: str, case: Case, backend_name: str, settings: RunSettings,
         modules: tuple[str, ...]) -> dict[str, Any]:
    """One row, in a Ray worker; the worker keeps its backends and prepared case between tasks."""
    key = (settings, modules)
    if key not in _RUNNERS:
        _RUNNERS.clear()
        _RUNNERS[key] = (load_backends(modules), CaseRunner(settings))
    backends, runner = _RUNNERS[key]
    return runner.row(suite_name, case, backends[backend_name])


def task_options(device: str, cpus_per_cpu_task: float) -> dict[str, Any]:
    """Ray resources of one row: a whole GPU for a CUDA backend, a whole node's CPUs for a CPU
    backend; retries are ours to make and record."""
    if device == "cuda":
        return {"num_gpus": 1, "num_cpus": 1, "max_retries": 0}
    return {"num_gpus": 0, "num_cpus": cpus_per_cpu_task, "max_retries": 0}


def _runtime_env() -> dict[str, Any]:
    """What workers need to import the same plugins: the driver's sys.path and the variables of
    qbench and its plugins (QBENCH_*, TRITON_INTERPRET)."""
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return {"env_vars": env | qbench_variables()}


def run_on_ray(suite: Suite, backends: Mapping[str, Backend], settings: RunSettings,
               modules: tuple[str, ...], address: str | None,
               skip: Collection[tuple[str, str]] = ()) -> Iterator[dict[str, Any]]:
    """Every row of the run, computed as Ray tasks, in the order they finish."""
    try:
        import ray
    except ImportError:
        raise QbenchError("--executor ray needs Ray: pip install 'qbench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env=_runtime_env())
    try:
        cpus = min(node["Resources"].get("CPU", 1) for node in ray.nodes() if node["Alive"])
        remote_row = ray.remote(_row)
        pending: dict[Any, tuple[Case, Backend, str]] = {}

        def submit(case: Case, backend: Backend, note: str = "") -> None:
            options = task_options(backend.info.device, cpus)
            ref = remote_row.options(**options).remote(suite.name, case, backend.name, settings,
                                                       modules)
            pending[ref] = (case, backend, note)

        for case, backend in work(suite, backends, settings, skip):
            if not backend.availability.ok:
                yield unavailable_row(suite.name, case, backend)
            else:
                submit(case, backend)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            case, backend, note = pending.pop(done[0])
            try:
                row = ray.get(done[0])
            except (ray.exceptions.RayError, OSError) as lost:
                reason = f"{type(lost).__name__}: {str(lost).splitlines()[0]}"
                if not note:
                    submit(case, backend, f"retried once after a lost task ({reason})")
                    continue
                row = error_row(suite.name, case, backend, f'Backend "{backend.name}" lost its '
                                f"Ray task twice: {note}; then {reason}")
            if note and row["status"] != "error":
                row["error"] = "; ".join(filter(None, [row["error"], note]))
            yield row
    finally:
        if started_here:
            ray.shutdown()
