"""Shared fixtures: a CLI runner, the fake plugins on sys.path, suite files written on the fly, the
triton backend with a runner of short timings, and stream-K turned on."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # the triton backend's kernels then run in Triton's interpreter, on CPU tensors; this must be
    # set before the kernels are first imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

from click.testing import CliRunner  # noqa: E402

from qbench.cli import cli  # noqa: E402
from qbench.registry import load_backends  # noqa: E402
from qbench.runner import CaseRunner, RunSettings  # noqa: E402
from qbench.timing import TimingPolicy  # noqa: E402

FAKE_PLUGINS = Path(__file__).parent / "fake_plugins"
ROOT = Path(__file__).parent.parent

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Puts tests/fake_plugins on sys.path (undone after the test)."""
    monkeypatch.syspath_prepend(str(FAKE_PLUGINS))
    return FAKE_PLUGINS


@pytest.fixture
def write_suite(tmp_path: Path):
    """write_suite(text) -> path of a suite file holding the dedented text."""

    def write(text: str, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def run_cli():
    """run_cli(*args) -> click Result, exceptions not caught by the runner itself."""

    def invoke(*args: str):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def runner_and_backend():
    """(a CaseRunner of short timings, the triton backend); skipped where triton is unavailable."""
    backend = load_backends()["triton"]
    if not backend.availability.ok:
        pytest.skip(backend.availability.reason)
    return CaseRunner(RunSettings(policy=TimingPolicy(min_samples=2, max_time_s=0.01))), backend


@pytest.fixture
def stream_k_on(monkeypatch):
    """Stream-K on (`stream.ENABLED`), as QBENCH_TRITON_STREAM_K=1 at import turns it on: the
    interpreter then shares tiles where the kernel may."""
    from qbench_triton import stream

    monkeypatch.setattr(stream, "ENABLED", True)


# Activations in 7 bits (reduce_range): PyTorch's engines, the tiny runs' working backends, compute
# them exactly on every CPU, also where they add pairs of products in int16 (`cpu_engines`).
TINY_SUITE = """
[suite]
name = "tiny"
[defaults]
reduce_range = true
batch = 1
height = 6
width = 6
[[case]]
name = "a"
in_channels = 4
out_channels = 8
kernel_size = 3
padding = 1
relu = [false, true]
[[case]]
name = "b"
in_channels = 6
out_channels = 6
kernel_size = 3
groups = 3
"""


HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def hostile_run(run_cli, write_suite, tmp_path, fake_plugins) -> Path:
    """A finished run (report included) whose case name is HTML and one of whose backends fails."""
    suite = TINY_SUITE.replace('name = "a"', f"name = '{HOSTILE}'")
    out = tmp_path / "run"
    run_cli("run", write_suite(suite), "--out", out, "-p", "qbench_faulty",
            "--backends", "torch-x86,torch-onednn,faulty-raises", "--max-time", "0.01")
    return out
