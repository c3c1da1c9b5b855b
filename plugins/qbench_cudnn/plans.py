"""Execution plans: a process-wide cache keyed like PyTorch's cuDNN CacheKey, and autotuning.

PyTorch's quantized cuDNN conv keys its plans on the conv parameters, the pointer alignments, bias
and ReLU, and keeps the first plan that runs. Here the first use of a key builds the plans cuDNN's
heuristics mode A offers (FALLBACK's only when none of those runs), the first PLAN_LIMIT of them in
the heuristics' order, times each one that builds and keeps the fastest, as cudnn-frontend's
autotuning sample does; how many there were and which won is kept with the plan. On an H200
(2026-11-27) engine eng4_k24=3 of mode A left a misaligned-address error, which poisons the CUDA
context, on graphs with a per-pixel offset (no longer built, see numerics.py): a plan that does so
stops tuning with an error naming it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from qbench_cudnn.fp16 import Fp16GraphSpec
from qbench_cudnn.graph import GraphSpec

Value = TypeVar("Value")
# plans built and timed per graph at most, in the heuristics' order (PyTorch's
# cudnn.benchmark_limit defaults to as many): fused fp16 graphs may be offered plans whose engines
# compile at build (runtime fusion); ResNet-50's int8 graphs were offered 7 to 9 on an H200
PLAN_LIMIT = 10


def alignment(pointer: int) -> int:
    """The largest power of two up to 16 that divides `pointer` (as PyTorch's getAlignment)."""
    for bytes_ in (16, 8, 4, 2):
        if pointer % bytes_ == 0:
            return bytes_
    return 1


@dataclass(frozen=True)
class CacheKey:
    """What a plan depends on: the graph (shapes, conv parameters, ReLU; the int8 graph's bias is
    folded into the offset tensor, whose shape the graph records; the fp16 graph's is there or
    not), the device and the pointer alignments."""

    graph: GraphSpec | Fp16GraphSpec
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
    tried: int  # of those, the first PLAN_LIMIT at most: plans built and timed
    runnable: int  # of those, plans that built and ran
    mode: str  # the heuristics mode that offered them


class PlanBrokeDevice(Exception):
    """A plan left a sticky CUDA error (e.g. a misaligned address): nothing more can run in this
    process, so tuning stops and names the plan."""


def autotune(build_graph: Callable[[], Any], cudnn: Any,
             time_plan: Callable[[Any, int], float],
             device_works: Callable[[], bool], limit: int = PLAN_LIMIT) -> Autotuned:
    """Build the first `limit` plans that heuristics mode A offers for the graph `build_graph()`
    makes, time each one that builds with `time_plan(graph, index) -> seconds`, keep the
    fastest. FALLBACK's plans (engines of last resort) are built and timed only when none of A's
    runs.

    Raises RuntimeError with cuDNN's reasons when no plan runs, PlanBrokeDevice when one broke the
    CUDA context.
    """
    failures: list[str] = []
    for mode in (cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK):
        graph = build_graph()
        try:
            graph.create_execution_plans([mode])
            graph.check_support()
        except Exception as exc:  # no engine in this mode: cuDNN's reason
            failures.append(f"heuristics {mode.name}: {exc}")
            continue
        candidates = graph.get_execution_plan_count()
        tried = min(candidates, limit)
        timings: dict[int, float] = {}
        for index in range(tried):
            try:
                graph.build_plan_at_index(index)
                timings[index] = time_plan(graph, index)
            except Exception as exc:  # a plan that fails to build or run is skipped, with why
                failures.append(f"plan {index}: {exc}")
                if not device_works():
                    raise PlanBrokeDevice(
                        f"cuDNN plan {graph.get_plan_name_at_index(index)} (heuristics "
                        f"{mode.name}) broke the CUDA context: {exc}") from exc
        if timings:
            best = min(timings, key=timings.__getitem__)
            return Autotuned(graph, best, graph.get_plan_name_at_index(best),
                             graph.get_workspace_size_plan_at_index(best), candidates, tried,
                             len(timings), mode.name)
    raise RuntimeError("no cuDNN plan ran: " + "; ".join(failures))
