"""Backends in worker processes, one per device, so that a crash or a hang costs one row.

Each (case, backend) is sent to the worker of the backend's device, which answers with its row
(`CaseRunner`). A worker that dies (abort, segfault, a CUDA error that poisons its context) yields
an `error` row naming the signal or exit status; one that does not answer within the per-case
timeout is killed and yields an `error` row saying so. Either way a fresh worker takes the next
row and the sweep goes on. Workers are started with "spawn" (safe with CUDA) and ignore Ctrl-C,
which the parent handles.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Collection, Iterator, Mapping
from multiprocessing.connection import Connection
from typing import Any

from qbench.registry import Backend, load_backends
from qbench.runner import CaseRunner, RunSettings, error_row, plan, unavailable_row
from qbench.suite import Case, Suite


class WorkerLost(Exception):
    """The worker died or hung; the message says how."""


def _serve(conn: Connection, modules: tuple[str, ...], settings: RunSettings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    backends = load_backends(modules)
    runner = CaseRunner(settings)
    while True:
        try:
            suite_name, case, backend_name = conn.recv()
        except EOFError:
            return
        conn.send(runner.row(suite_name, case, backends[backend_name]))


class Worker:
    """One worker process and its end of the pipe."""

    def __init__(self, modules: tuple[str, ...], settings: RunSettings):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, modules, settings),
                                       daemon=True, name="qbench-worker")
        self.process.start()
        child.close()

    def row(self, suite_name: str, case: Case, backend: str, timeout_s: float) -> dict[str, Any]:
        """The worker's row for (case, backend), or WorkerLost."""
        try:
            self.conn.send((suite_name, case, backend))
            if not self.conn.poll(timeout_s):
                raise WorkerLost(f"timed out after {timeout_s:g} s (the worker was killed)")
            return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise WorkerLost(self._death()) from None

    def _death(self) -> str:
        self.process.join(timeout=10)
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"the worker process was killed by {signal.Signals(-code).name}"
        return f"the worker process exited with status {code}"

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()


def run_isolated(suite: Suite, backends: Mapping[str, Backend], settings: RunSettings,
                 modules: tuple[str, ...], timeout_s: float,
                 skip: Collection[tuple[str, str]] = ()) -> Iterator[dict[str, Any]]:
    """Every row of the run, computed in worker processes, in order; see the module docstring."""
    workers: dict[str, Worker] = {}
    try:
        for case, chosen in plan(suite, backends, settings):
            for backend in chosen:
                if (case.name, backend.name) in skip:
                    continue
                if not backend.availability.ok:
                    yield unavailable_row(suite.name, case, backend)
                    continue
                device = backend.info.device
                worker = workers.get(device) or workers.setdefault(device,
                                                                   Worker(modules, settings))
                try:
                    yield worker.row(suite.name, case, backend.name, timeout_s)
                except WorkerLost as lost:
                    worker.stop()
                    del workers[device]
                    yield error_row(suite.name, case, backend,
                                    f'Backend "{backend.name}" lost its worker: {lost}')
    finally:
        for worker in workers.values():
            worker.stop()
