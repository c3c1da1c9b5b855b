"""Backends in worker processes, one per device, so that a crash or a hang costs one row.

Each (case, backend) is sent to the worker of the backend's device, which answers with its row
(`CaseRunner`) and whether its device still works. A worker that dies (abort, segfault) yields an
`error` row naming the signal or exit status; one that does not answer within the per-case timeout
is killed and yields an `error` row saying so; one whose CUDA context an error has poisoned (a
sticky error such as an illegal address) sends its row and is retired. In each case a fresh worker
takes the next row and the sweep goes on. A worker that dies on a row after answering others may
have been killed by what an earlier row did to the process (a library that corrupts the heap and
aborts some calls later), so the row runs again, once, in a fresh worker: its row then says so and
names the dead worker's last row; dead again, the row is the backend's own `error`.

Workers are started with "spawn" (safe with CUDA) and ignore Ctrl-C, which the parent handles;
on Linux they die with the parent, even where it is killed with SIGKILL. A worker's standard
error reaches the parent's through a pipe (`_OutputRelay`), so that the row of a worker that dies
or hangs ends with the last lines it wrote for that row: what glibc says as it aborts, a
device-side assert's message.
"""

from __future__ import annotations

import codecs
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Collection, Iterator, Mapping
from multiprocessing.connection import Connection
from typing import Any

import torch

from qbench.registry import Backend, load_backends
from qbench.runner import CaseRunner, RunSettings, error_row, unavailable_row, work
from qbench.suite import Case, Suite


_KEPT_BYTES = 4096  # of a row's output, for its last lines
_LAST_LINES = 3
_DEATH_OUTPUT_WAIT_S = 2.0  # for a dead worker's last output to reach the pipe's end


class WorkerLost(Exception):
    """The worker died or hung; the message says how."""


class WorkerDied(WorkerLost):
    """The worker's process ended (a signal or an exit) before it answered."""


class _OutputRelay:
    """The parent's end of a worker's standard error: copied to the parent's standard error as it
    comes, by a thread, and the output since `mark()` kept (its last `_KEPT_BYTES`) for
    `last_lines`."""

    def __init__(self, reader: Connection):
        self._reader = reader
        self._lock = threading.Lock()
        self._since_mark = bytearray()
        self._thread = threading.Thread(target=self._relay, daemon=True,
                                        name="qbench-worker-stderr")
        self._thread.start()

    def _relay(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := _read(self._reader):
            with self._lock:
                self._since_mark += chunk
                del self._since_mark[:-_KEPT_BYTES]
            try:
                sys.stderr.write(decoder.decode(chunk))
                sys.stderr.flush()
            except (OSError, ValueError):  # this process's stderr closed: keep the tail only
                pass

    def mark(self) -> None:
        """A row begins: forget the output before it."""
        with self._lock:
            self._since_mark.clear()

    def last_lines(self, wait_s: float = 0.0) -> str:
        """The last non-blank lines written since `mark()`, joined by " / " ('' if none), after
        waiting up to `wait_s` for the worker's end of the pipe to close (all of a dead worker's
        output read)."""
        self._thread.join(wait_s)
        with self._lock:
            text = self._since_mark.decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return " / ".join(lines[-_LAST_LINES:])

    def close(self) -> None:
        self._thread.join(_DEATH_OUTPUT_WAIT_S)
        self._reader.close()


def _read(reader: Connection) -> bytes:
    """The next bytes from the pipe; b"" once every writer has closed it."""
    try:
        return os.read(reader.fileno(), 65536)
    except (OSError, ValueError):
        return b""


def _with_last_lines(what: str, lines: str) -> str:
    return f"{what}; its last output: {lines}" if lines else what


def device_works(device: str) -> bool:
    """False once a sticky CUDA error has poisoned this process's context."""
    if device != "cuda":
        return True
    try:
        torch.cuda.synchronize()
        return True
    except Exception:
        return False


_PR_SET_PDEATHSIG = 1  # prctl(2)


def _die_with(parent: int) -> None:
    """On Linux, have the kernel kill this process with SIGKILL when the thread that started it
    ends: a run killed by SIGKILL (which gives it no chance to stop its workers) then leaves no
    worker behind, still holding its device, still running a hung row. Elsewhere nothing."""
    if sys.platform != "linux":
        return
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the call above
        os._exit(1)


def _serve(conn: Connection, stderr: Connection, modules: tuple[str, ...],
           settings: RunSettings, parent: int) -> None:
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.dup2(stderr.fileno(), 2)  # Python's and C's standard error, to the parent's relay
    stderr.close()
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
        reader, writer = context.Pipe(duplex=False)
        self.process = context.Process(target=_serve,
                                       args=(child, writer, modules, settings, os.getpid()),
                                       daemon=True, name="qbench-worker")
        self.process.start()
        child.close()
        writer.close()
        self.output = _OutputRelay(reader)
        self.answered = 0  # rows
        self.last_row = ""  # "case / backend" of the last row answered

    def row(self, suite_name: str, case: Case, backend: str,
            timeout_s: float) -> tuple[dict[str, Any], bool]:
        """The worker's row for (case, backend) and whether the worker can go on, or WorkerLost
        (WorkerDied if its process ended; the message ends with its last output for the row)."""
        self.output.mark()
        try:
            self.conn.send((suite_name, case, backend))
            if not self.conn.poll(timeout_s):
                raise WorkerLost(_with_last_lines(
                    f"timed out after {timeout_s:g} s (the worker was killed)",
                    self.output.last_lines()))
            answer = self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise WorkerDied(_with_last_lines(
                self._death(), self.output.last_lines(_DEATH_OUTPUT_WAIT_S))) from None
        self.answered += 1
        self.last_row = f"{case.name} / {backend}"
        return answer

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
        self.output.close()


def run_isolated(suite: Suite, backends: Mapping[str, Backend], settings: RunSettings,
                 modules: tuple[str, ...], timeout_s: float,
                 skip: Collection[tuple[str, str]] = ()) -> Iterator[dict[str, Any]]:
    """Every row of the run, computed in worker processes, in order; see the module docstring."""
    workers = _Workers(modules, settings)
    try:
        for case, backend in work(suite, backends, settings, skip):
            if not backend.availability.ok:
                yield unavailable_row(suite.name, case, backend)
            else:
                yield _isolated_row(workers, suite.name, case, backend, timeout_s)
    finally:
        workers.stop()


class _Workers:
    """The run's workers, one per device, each started when a row first needs it."""

    def __init__(self, modules: tuple[str, ...], settings: RunSettings):
        self._modules, self._settings = modules, settings
        self._by_device: dict[str, Worker] = {}

    def get(self, device: str) -> Worker:
        worker = self._by_device.get(device)
        if worker is None:
            worker = self._by_device[device] = Worker(self._modules, self._settings)
        return worker

    def retire(self, device: str) -> None:
        self._by_device.pop(device).stop()

    def stop(self) -> None:
        for worker in self._by_device.values():
            worker.stop()


def _isolated_row(workers: _Workers, suite_name: str, case: Case, backend: Backend,
                  timeout_s: float) -> dict[str, Any]:
    """(case, backend)'s row from its device's worker; a worker that died on it after answering
    other rows is replaced and the row run again, once, in the fresh one (the row says so)."""
    device = backend.info.device
    note = ""
    while True:
        worker = workers.get(device)
        try:
            row, works = worker.row(suite_name, case, backend.name, timeout_s)
        except WorkerLost as lost:
            workers.retire(device)
            if isinstance(lost, WorkerDied) and worker.answered and not note:
                rows = "1 row" if worker.answered == 1 else f"{worker.answered} rows"
                note = (f"ran again in a fresh worker: the worker that had answered {rows} "
                        f"(the last: {worker.last_row}) died on it: {lost}")
                continue
            lost_what = "a fresh worker too" if note else "its worker"
            return error_row(suite_name, case, backend,
                             f'Backend "{backend.name}" lost {lost_what}: {lost}')
        if not works:
            workers.retire(device)
        if note:
            row["error"] = "; ".join(filter(None, [row["error"], note]))
        return row
