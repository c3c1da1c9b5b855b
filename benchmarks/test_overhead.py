"""qbench's own cost per timed call (a benchmark, not a test): `pytest benchmarks/`.

Compares calling a do-nothing backend's apply (1) as a plain function, (2) as the timed loop does,
through the function resolved once from its plugin, (3) through a broadcast pluggy hook call (what
the timed loop avoids), and (4) the CPU sampler's cost around one call.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import qbench_null  # noqa: E402
from qbench.plugins import make_plugin_manager  # noqa: E402
from qbench.registry import discover_backends  # noqa: E402
from qbench.timing import Sampler  # noqa: E402


@pytest.fixture(scope="module")
def manager():
    return make_plugin_manager(["qbench_null"])


def test_plain_function(benchmark):
    benchmark(qbench_null.qbench_apply, "null", None, None, None)


def test_resolved_backend_call(benchmark, manager):
    apply = discover_backends(manager)["null"].apply_function(relu=False)
    benchmark(apply, None, None, None)


def test_broadcast_hook_call(benchmark, manager):
    benchmark(manager.hook.qbench_apply, backend="null", packed=None, input=None, output=None)


def test_cpu_sampler_around_a_call(benchmark, manager):
    apply = discover_backends(manager)["null"].apply_function(relu=False)
    sampler = Sampler("cpu")
    benchmark(sampler.sample, lambda: apply(None, None, None))
