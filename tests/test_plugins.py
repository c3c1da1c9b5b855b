"""The pluggy host: entry points, QBENCH_LOAD_PLUGINS, -p modules, a third-party plugin installed as
a distribution, misspelled hooks, and operations resolved once to the owning plugin."""

from __future__ import annotations

import inspect
import json
import re

import pluggy
import pytest
import torch

from qbench import hookspecs
from qbench.errors import PluginError
from qbench.plugins import make_plugin_manager
from qbench.registry import bind_hookimpl, discover_backends, load_backends

from conftest import ROOT

BUILT_IN = {"reference", "torch", "triton", "cudnn", "cupy"}


def test_built_in_backends_come_from_entry_points():
    pm = make_plugin_manager()
    assert BUILT_IN <= {pm.get_name(p) for p in pm.get_plugins()}
    names = set(discover_backends(pm))
    assert {"torch-x86", "torch-fbgemm", "torch-onednn", "torch-qnnpack", "torch-cuda",
            "torch-fp32", "torch-fp16", "reference", "triton", "cudnn", "cupy"} <= names


def test_env_var_restricts_entry_points(monkeypatch):
    monkeypatch.setenv("QBENCH_LOAD_PLUGINS", "reference")
    assert set(load_backends()) == {"reference"}
    monkeypatch.setenv("QBENCH_LOAD_PLUGINS", "")
    assert load_backends() == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_backends_without_a_gpu_are_unavailable_with_a_reason(run_cli):
    result = run_cli("backends", "--json")
    assert result.exit_code == 0
    records = {r["name"]: r for r in json.loads(result.output)}
    for name in ("cudnn", "cupy", "torch-cuda"):
        assert records[name]["available"] is False
        assert records[name]["reason"] and "not implemented" not in records[name]["reason"]
    assert records["torch-x86"]["available"] is True and records["torch-x86"]["reason"] == ""


def test_a_third_party_distribution_is_found_by_entry_point(tmp_path, monkeypatch, fake_plugins):
    """An installed distribution declaring `qbench` entry points, with no change to qbench."""
    dist = tmp_path / "qbench_faulty_dist-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qbench-faulty-dist\n"
                                   "Version: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[qbench]\nfaulty = qbench_faulty\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    backends = load_backends()
    assert backends["faulty-exact"].plugin_name == "faulty"
    assert backends["faulty-exact"].plugin_version == "1.2.3"


def test_p_module_loads_one_off_plugin(fake_plugins, run_cli):
    result = run_cli("backends", "--json", "-p", "qbench_faulty")
    names = {r["name"] for r in json.loads(result.output)}
    assert "faulty-exact" in names and "torch-x86" in names


def test_unimportable_p_module_is_bad_input(run_cli):
    result = run_cli("backends", "-p", "no_such_plugin_module")
    assert result.exit_code == 2 and "no_such_plugin_module" in result.output


def test_misspelled_hook_fails_at_start_up(tmp_path, monkeypatch):
    (tmp_path / "qbench_typo.py").write_text(
        "from qbench import hookimpl\n\n@hookimpl\ndef qbench_aply(backend):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="qbench_aply"):
        make_plugin_manager(["qbench_typo"])


def test_duplicate_backend_names_are_refused(tmp_path, monkeypatch):
    (tmp_path / "qbench_dup.py").write_text(
        "from qbench import BackendInfo, hookimpl\n\n@hookimpl\ndef qbench_backends():\n"
        "    return [BackendInfo('torch-x86', 'cpu')]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match='"torch-x86" is declared by both'):
        load_backends(["qbench_dup"])


def test_operations_resolve_to_the_owning_plugin(fake_plugins):
    backends = load_backends(["qbench_faulty"])
    apply = backends["faulty-raises"].apply_function(relu=False)
    with pytest.raises(RuntimeError, match="injected failure"):
        apply(None, None, None)
    # the torch plugin owns torch-x86: its apply is torch's function, not a broadcast
    assert backends["torch-x86"].operations["qbench_apply"].func.__module__ == "qbench_torch"


def test_bind_hookimpl_passes_the_arguments_an_implementation_names():
    hookimpl = pluggy.HookimplMarker("qbench")

    class Plugin:
        @hookimpl
        def qbench_apply(self, output, backend):  # fewer arguments, other order
            return (backend, output)

    pm = pluggy.PluginManager("qbench")
    pm.add_hookspecs(hookspecs)
    pm.register(Plugin())
    caller = pm.hook.qbench_apply
    bound = bind_hookimpl(caller.get_hookimpls()[0], caller.spec.argnames, "mine")
    assert bound("packed", "input", "out") == ("mine", "out")


def test_every_hookspec_is_documented_with_its_contract():
    readme = (ROOT / "README.md").read_text()
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("qbench_")]
    assert len(specs) == 9
    for spec in specs:
        assert spec.__doc__ and len(spec.__doc__.split()) > 15, spec.__name__
        assert re.search(rf"`{spec.__name__}`", readme) or spec.__name__ in readme, spec.__name__


@pytest.mark.parametrize("backend", ["triton", "cupy"])
def test_kernels_in_int32_refuse_what_it_cannot_hold(backend):
    """A reduction over 33,025 terms may leave int32 whatever the data, and offsets past 2^31
    elements: both backends whose kernels sum and index in int32 say so instead of running
    (the output's size counts too: a 1x1 expansion's exceeds its input's)."""
    from qbench.problem import ConvProblem

    backends = load_backends()
    assert backends[backend].supports(ConvProblem(1, 64, 8, 8, 64, (3, 3))).ok
    deep = backends[backend].supports(ConvProblem(1, 4096, 8, 8, 64, (3, 3)))  # 36,864 terms
    assert not deep.ok and "36864 terms may overflow the int32 accumulator" in deep.reason
    wide = backends[backend].supports(ConvProblem(1024, 16, 256, 256, 128, (1, 1)))
    assert not wide.ok and "the output has 8589934592 elements" in wide.reason
