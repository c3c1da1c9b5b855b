"""Backends resolved from plugins: each one's operations bound once to its owning plugin's hooks."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from qbench.backends import BackendInfo, Verdict
from qbench.errors import PluginError
from qbench.plugins import make_plugin_manager, plugin_version
from qbench.problem import ConvProblem

_OPERATIONS = ("qbench_availability", "qbench_supports", "qbench_prepack",
               "qbench_prepare_input", "qbench_apply", "qbench_apply_relu", "qbench_details",
               "qbench_parts")


@dataclass
class Backend:
    """One backend with its operations as plain functions of the owning plugin.

    Each operation takes the hook's arguments after `backend`, positionally in spec order, and is
    None where the plugin does not implement that hook.
    """

    info: BackendInfo
    plugin_name: str
    plugin_version: str
    operations: dict[str, Callable[..., Any] | None] = field(repr=False)

    @property
    def name(self) -> str:
        return self.info.name

    @functools.cached_property
    def availability(self) -> Verdict:
        """Whether it can run here (asked once; a crash in the plugin counts as unavailable)."""
        check = self.operations["qbench_availability"]
        try:
            verdict = check() if check is not None else None
        except Exception as exc:
            return Verdict.no(f"qbench_availability failed: {type(exc).__name__}: {exc}")
        if verdict is not None and not verdict.ok:
            return verdict
        if self.operations["qbench_prepack"] is None or self.operations["qbench_apply"] is None:
            return Verdict.no(f"plugin {self.plugin_name!r} implements no qbench_prepack/apply")
        return Verdict.yes()

    def supports(self, problem: ConvProblem) -> Verdict:
        """Whether it computes `problem`: the plugin's prediction, plus a fused-ReLU check."""
        if problem.relu and self.operations["qbench_apply_relu"] is None:
            return Verdict.no(f"plugin {self.plugin_name!r} has no fused ReLU (qbench_apply_relu)")
        check = self.operations["qbench_supports"]
        verdict = check(problem) if check is not None else None
        return verdict if verdict is not None else Verdict.yes()

    def prepack(self, weight: Any, bias: Any, params: Any) -> Any:
        return self._required("qbench_prepack")(weight, bias, params)

    def prepare_input(self, input: Any) -> Any:
        op = self.operations["qbench_prepare_input"]
        prepared = op(input) if op is not None else None
        return input if prepared is None else prepared

    def details(self, packed: Any) -> dict[str, Any]:
        """What the backend tells of a prepared problem (plans, choices); {} when nothing."""
        op = self.operations["qbench_details"]
        return (op(packed) if op is not None else None) or {}

    def parts(self, packed: Any, input: Any, output: Any) -> dict[str, Callable[[], Any]]:
        """Parts of apply to be timed separately (e.g. channel padding); {} when none."""
        op = self.operations["qbench_parts"]
        return (op(packed, input, output) if op is not None else None) or {}

    def apply_function(self, relu: bool) -> Callable[[Any, Any, Any], Any]:
        """The bare function the timed loop calls: (packed, input, output) -> tensor or None."""
        return self._required("qbench_apply_relu" if relu else "qbench_apply")

    def _required(self, hook: str) -> Callable[..., Any]:
        op = self.operations[hook]
        if op is None:
            raise PluginError(f'backend "{self.name}" (plugin {self.plugin_name!r}) has no {hook}')
        return op


def bind_hookimpl(impl: pluggy.HookImpl, spec_argnames: tuple[str, ...],
                  backend: str) -> Callable[..., Any]:
    """`impl.function` with `backend` bound, taking the rest of the spec's arguments positionally.

    pluggy lets an implementation accept a subset of its spec's arguments, in any order; this picks
    them once here instead of on every call.
    """
    position = {name: i for i, name in enumerate(spec_argnames)}
    picks = tuple(position[name] for name in impl.argnames)
    function = impl.function
    if picks == tuple(range(len(spec_argnames))):
        return functools.partial(function, backend)

    def call(*args: Any) -> Any:
        full = (backend, *args)
        return function(*(full[i] for i in picks))

    return call


def discover_backends(pm: pluggy.PluginManager) -> dict[str, Backend]:
    """Every backend of every registered plugin, keyed by name, in registration order."""
    backends: dict[str, Backend] = {}
    for impl in pm.hook.qbench_backends.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
        try:
            infos = impl.function()
        except Exception as exc:
            raise PluginError(f"plugin {plugin_name!r} failed in qbench_backends: {exc}") from exc
        for info in infos or ():
            if not isinstance(info, BackendInfo):
                raise PluginError(f"plugin {plugin_name!r}: qbench_backends must return "
                                  f"BackendInfo objects, got {info!r}")
            if info.name in backends:
                raise PluginError(f'backend "{info.name}" is declared by both plugin '
                                  f"{backends[info.name].plugin_name!r} and {plugin_name!r}")
            backends[info.name] = Backend(info, plugin_name, plugin_version(pm, impl.plugin),
                                          _resolve(pm, impl.plugin, info.name))
    return backends


def _resolve(pm: pluggy.PluginManager, plugin: object, backend: str) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for hook_name in _OPERATIONS:
        caller = getattr(pm.hook, hook_name)
        spec_argnames = caller.spec.argnames
        own = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
        operations[hook_name] = bind_hookimpl(own[0], spec_argnames, backend) if own else None
    return operations


@functools.cache
def default_backends() -> dict[str, Backend]:
    """The backends of the installed plugins, loaded once per process (used by the Python API)."""
    return load_backends()


def load_backends(modules: Iterable[str] = ()) -> dict[str, Backend]:
    """A fresh plugin manager's backends, with extra plugin `modules` (the CLI's -p)."""
    return discover_backends(make_plugin_manager(modules))


def get_backend(name: str, backends: dict[str, Backend] | None = None) -> Backend:
    """The backend called `name`, available on this machine, or a ValueError saying why not."""
    backends = default_backends() if backends is None else backends
    if name not in backends:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(backends) or 'none'}")
    backend = backends[name]
    if not backend.availability.ok:
        raise ValueError(f'backend "{name}" is unavailable: {backend.availability.reason}')
    return backend
