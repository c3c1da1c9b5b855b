"""Execution plans: a process-wide cache keyed like PyTorch's cuDNN CacheKey, and autotuning.

PyTorch's quantized cuDNN conv keys its plans on the conv parameters, the pointer alignments, bias
and ReLU, and keeps the first plan that runs. Here the first use of a key builds every plan cuDNN's
heuristics offer (modes A and FALLBACK), times each one that builds and keeps the fastest, as
cudnn-frontend's autotuning sample does; how many there were and which won is kept with the plan.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from qbench_cudnn.graph import GraphSpec

Value = TypeVar("Value")


def alignment(pointer: int) -> int:
    """The largest power of two up to 16 that divides `pointer` (as PyTorch's getAlignment)."""
    for bytes_ in (16, 8, 4, 2):
        if pointer % bytes_ == 0:
            return bytes_
    return 1


@dataclass(frozen=True)
class CacheKey:
    """What a plan depends on: the graph (shapes, conv parameters, ReLU; the bias is folded into
    the offset tensor, whose shape the graph records), the device and the pointer alignments."""

    graph: GraphSpec
    device: int
    x_alignment: int
    w_alignment: int
    y_alignment: int


class PlanCache(Generic[Value]):
    """A thread-safe map from keys to values built on first use, each key built exactly once.

    Threads asking for different keys build in parallel; threads asking for a key being built wait
    for it. A failed build is not cached: the next request tries again (and fails again).
    """

    def __init__(self) -> None:
        self._values: dict[Hashable, Value] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Value]) -> Value:
        value = self._values.get(key)
        if value is not None:
            return value
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            value = self._values.get(key)
            if value is None:
                value = self._values[key] = build()
            return value

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class Autotuned:
    """A built graph with the fastest of its plans chosen."""

    graph: Any
    plan_index: int
    plan_name: str
    workspace_size: int
    candidates: int  # plans cuDNN's heuristics offered
    runnable: int  # of those, plans that built and ran


def autotune(graph: Any, cudnn: Any, time_plan: Callable[[Any, int], float]) -> Autotuned:
    """Build every plan the heuristics offer for `graph` (validated, operation graph built),
    time each that builds with `time_plan(graph, index) -> seconds`, keep the fastest.

    Raises RuntimeError with cuDNN's reasons when no plan runs.
    """
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    graph.check_support()
    candidates = graph.get_execution_plan_count()
    timings: dict[int, float] = {}
    failures: list[str] = []
    for index in range(candidates):
        try:
            graph.build_plan_at_index(index)
            timings[index] = time_plan(graph, index)
        except Exception as exc:  # a plan that fails to build or run is skipped, with its reason
            failures.append(f"plan {index}: {exc}")
    if not timings:
        raise RuntimeError(f"none of cuDNN's {candidates} plans ran: " + "; ".join(failures))
    best = min(timings, key=timings.__getitem__)
    return Autotuned(graph, best, graph.get_plan_name_at_index(best),
                     graph.get_workspace_size_plan_at_index(best), candidates, len(timings))
