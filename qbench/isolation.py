"""Backends in worker processes, one per device, so that a crash or a hang costs one row.

Each (case, backend) is sent to the worker of the backend's device, which answers with its row
(`CaseRunner`) and whether its device still works. A worker that dies (abort, segfault) yields an
`error` row naming the signal or exit status; one that does not answer within the per-case timeout
is killed and yields an `error` row saying so; one whose CUDA context an error has poisoned (a
sticky error such as an illegal address) sends its row and is retired. In each case a fresh worker
takes the next row and the sweep goes on. Workers are started with "spawn" (safe with CUDA) and ignore Ctrl-C,
which the parent handles.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Collection, Iterator, Mapping
from multiprocessing.connection import Connection
from typing import Any

import torch

from qbench.registry import Backend, load_backends
from qbench.runner import CaseRunner, RunSettings, error_row, unavailable_row, work
from qbench.suite import Case, Suite


class WorkerLost(Exception):
    """The worker died or hung; the message says how."""


def device_works(device: str) -> bool:
    """False once a sticky CUDA error has poisoned this process's context."""
    if device != "cuda":
        return True
    try:
        torch.cuda.synchronize()
        return True
    except Exception:
        return False


def _serve(conn: Connection, modules: tuple[str, ...], settings: RunSettings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    backends = load_backends(modules)
    runner = CaseRunner(settings)
    while True:
        try:
            suite_name, case, backend_name = conn.recv()
        except EOFError:
            return
        backend = backends[backend_name]
        row = runner.row(suite_name, case, backend)
        works = row["status"] != "error" or device_works(backend.info.device)
        conn.send((row, works))
        if not works:
            return


class Worker:
    """One worker process and its end of the pipe."""

    def __init__(self, modules: tuple[str, ...], settings: RunSettings):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, modules, settings),
                                       daemon=True, name="qbench-worker")
        self.process.start()
        child.close()

    def row(self, suite_name: str, case: Case, backend: str,
            timeout_s: float) -> tuple[dict[str, Any], bool]:
        """The worker's row for (case, backend) and whether the worker can go on, or WorkerLost."""
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
        for case, backend in work(suite, backends, settings, skip):
            if not backend.availability.ok:
                yield unavailable_row(suite.name, case, backend)
                continue
            device = backend.info.device
            worker = workers.get(device) or workers.setdefault(device, Worker(modules, settings))
            try:
                row, works = worker.row(suite.name, case, backend.name, timeout_s)
            except WorkerLost as lost:
                row, works = error_row(suite.name, case, backend,
                                       f'Backend "{backend.name}" lost its worker: {lost}'), False
            if not works:
                worker.stop()
                del workers[device]
            yield row
    finally:
        for worker in workers.values():
            worker.stop()
