"""Every hook a qbench plugin may implement.

A plugin provides one or more *backends* (`qbench_backends`). Every other hook receives the
backend's name first and is `firstresult`: an implementation returns None for a backend it does not
own, so `pm.hook.qbench_apply(backend=..., ...)` works as a plain pluggy call. The host, however,
resolves each backend's operations once, to the implementations of the plugin that declared it, and
calls those functions directly: the timed loop never pays for a broadcast over all plugins. We chose
per-backend hooks over a registration hook because they are what a plugin author writes anyway
(module-level functions with `@qbench.hookimpl`) and pluggy lets an implementation accept fewer
arguments than its spec, so these specs can grow without breaking plugins.

No hook may modify its inputs (activations, weights, bias, problems).
"""

from __future__ import annotations

from typing import Any

import pluggy
import torch

from qbench.backends import BackendInfo, Verdict
from qbench.problem import ConvProblem
from qbench.quantized import ConvParams, QuantizedActivation, QuantizedWeight

hookspec = pluggy.HookspecMarker("qbench")
hookimpl = pluggy.HookimplMarker("qbench")


@hookspec
def qbench_backends() -> list[BackendInfo]:
    """Return the backends this plugin provides (called once per plugin at start-up).

    Must be cheap and must not import heavy libraries (cuDNN, CuPy, Triton): say what exists here,
    whether it can run in `qbench_availability`.
    """


@hookspec(firstresult=True)
def qbench_availability(backend: str) -> Verdict | None:
    """Return whether `backend` can run on this machine, with the reason when not.

    Import heavy dependencies here (or later), never at module import, so that a missing library
    makes the backend unavailable instead of breaking `import qbench`. Not implementing this hook
    means "always available". Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def qbench_supports(backend: str, problem: ConvProblem) -> Verdict | None:
    """Return whether `backend` computes `problem`, with the reason when not.

    A cheap prediction that spares the runner a doomed prepack; a backend may still raise
    `qbench.UnsupportedError` from prepack or apply. Not implementing it means "try everything".
    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def qbench_prepack(backend: str, weight: QuantizedWeight, bias: torch.Tensor | None,
                   params: ConvParams) -> Any:
    """Prepare weights once (`torch.ops.quantized.conv2d_prepack`): repack, pad, build plans.

    weight: qint8 (K, C/groups, R, S) on the backend's device; bias: float32 (K,) or None.
    Returns an opaque object handed back to apply. Its cost is reported as first-call time.
    Raises `qbench.UnsupportedError` for what the backend cannot do. Stops at first non-None.
    """


@hookspec(firstresult=True)
def qbench_prepare_input(backend: str, input: QuantizedActivation) -> Any:
    """Convert an activation to the form apply consumes (layout, dtype), outside the timed region.

    Optional; without it apply receives the `QuantizedActivation` itself (already NHWC when the
    backend's info says `channels_last`). In a network, the previous layer would have produced this
    form, which is why it is not timed. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def qbench_apply(backend: str, packed: Any, input: Any,
                 output: QuantizedActivation) -> torch.Tensor | None:
    """Run the conv (`torch.ops.quantized.conv2d`): this call is what the benchmark times.

    packed: what prepack returned; input: what prepare_input returned; output: the destination,
    whose `data` buffer has the output shape (N, K, OH, OW) and whose scale, zero point and dtype
    are the requested output quantization. Write every element of `output.data` and return None,
    on every call: the host checks the first call and one after the timed calls, poisoning that
    buffer before each, so an element never written fails the check. A backend whose library
    allocates its own output (PyTorch's quantized ops) may instead return it: a quantized tensor,
    or for float reference backends the float output, which the host quantizes.
    Must leave the work finished or enqueued on the current CUDA stream; the host synchronises.
    """


@hookspec(firstresult=True)
def qbench_apply_relu(backend: str, packed: Any, input: Any,
                      output: QuantizedActivation) -> torch.Tensor | None:
    """As `qbench_apply`, with ReLU fused: outputs below `output.zero_point` become it.

    A backend without this hook is reported unsupported for problems with `relu = true`.
    """


@hookspec(firstresult=True)
def qbench_details(backend: str, packed: Any) -> dict[str, Any] | None:
    """Return facts about a prepared problem for the results' `details` column, e.g. how many
    execution plans were tried and which one won. Asked after the timed run. Optional.
    """


@hookspec(firstresult=True)
def qbench_parts(backend: str, packed: Any, input: Any,
                 output: QuantizedActivation) -> dict[str, Any] | None:
    """Return named parts of apply that the host times on their own, as it times apply, e.g.
    {"pad_input": f} where f() runs only the per-call channel padding. Each becomes
    `<name>_us=<median>` in the `details` column. Return {} or None when apply has no such part.
    """
