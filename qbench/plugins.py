"""The plugin manager: specs, entry points of group "qbench", one-off modules, then a check.

QBENCH_LOAD_PLUGINS restricts which entry points load: a comma-separated list of entry-point names
("torch,reference"); set but empty, none load. Modules named with `-p` load in addition, like
pytest's `-p`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from importlib.metadata import entry_points

import pluggy

from qbench import hookspecs
from qbench.errors import PluginError

ENTRY_POINT_GROUP = "qbench"
LOAD_PLUGINS_ENV = "QBENCH_LOAD_PLUGINS"


def make_plugin_manager(modules: Iterable[str] = ()) -> pluggy.PluginManager:
    """A manager with qbench's hook specs, the allowed entry points and `modules` registered."""
    pm = pluggy.PluginManager("qbench")
    pm.add_hookspecs(hookspecs)
    allowed = os.environ.get(LOAD_PLUGINS_ENV)
    names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        if names is not None and ep.name not in names:
            continue
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
        except Exception as exc:  # a broken third-party plugin names itself
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(f"plugin module {module_name!r} (-p) failed to import: "
                              f"{exc}") from exc
        if not pm.is_registered(module):
            pm.register(module, name=module_name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc
    return pm


def plugin_version(pm: pluggy.PluginManager, plugin: object) -> str:
    """The version of the distribution that installed `plugin`, else its `__version__`."""
    for registered, dist in pm.list_plugin_distinfo():
        if registered is plugin:
            return dist.version
    return str(getattr(plugin, "__version__", ""))
