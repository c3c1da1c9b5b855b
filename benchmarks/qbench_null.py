"""A backend that does nothing, so that what is left of a timed call is qbench's own cost."""

from qbench import BackendInfo, hookimpl

NAME = "null"


@hookimpl
def qbench_backends():
    return [BackendInfo(NAME, "cpu", default=False)]


@hookimpl
def qbench_prepack(backend, weight, bias, params):
    return (weight, bias, params) if backend == NAME else None


@hookimpl
def qbench_apply(backend, packed, input, output):
    return None
