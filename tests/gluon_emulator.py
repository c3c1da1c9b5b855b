"""Runs a Gluon kernel (`@gluon.jit`) on CPU tensors, one program after another, in numpy: Gluon
has no interpreter, so this checks a kernel's index arithmetic, masks, zero-filled loads and
epilogue against a reference without a GPU. The kernel's own Python body runs, with the Gluon
functions it calls replaced by numpy ones (layouts are ignored; Gluon functions this module does
not model fail loudly), integers as Triton computes them (int32 arrays, C division), and the
asynchronous steps held to their ordering rules, each broken rule a `Hazard`:

- a cp.async (`async_copy.async_load`) lands only at the `wait_group` that covers its committed
  group, and only for the thread that issued it: shared memory read (a `load`, a wgmma operand)
  while a copy into it is still in flight, or before a barrier after it landed (the other
  threads' copies into it), or copied into twice in flight;
- shared memory stored to (`store`, this thread's part) is read before a barrier, or by a wgmma
  without a `fence_async_shared` before that barrier (the async proxy's reads);
- shared memory copied into or stored to while a wgmma not yet waited for reads it, or, with more
  than one warpgroup, before a barrier after the wait (another warpgroup's wgmma may still read
  it);
- an asynchronous wgmma's accumulator is a token until `warpgroup_mma_wait` retires it: only
  another wgmma may take it before, any other use of it is a Hazard;
- an unmasked global load or store outside its tensor, and copies still in flight when the
  program ends;
- an atomic with release semantics after global stores with no barrier between (the other
  threads' stores may not be done when it publishes them).

The emulator sees only the barriers a kernel writes: Gluon's compiler adds some of its own where
it sees shared memory reused, so the emulator may ask for one that compiling would have added.
Programs run one after another, in the grid's order or (`launch`'s `reverse`) the reverse, so
that programs which meet at a counter (split-K) are checked in either order of arrival; a spin on
a counter therefore finds it set. Not modelled: warps beyond those barrier rules (a program runs
as one thread), programs running at once, and a wgmma's register operand (the kernels give it
none; it fails loudly); whether a GPU agrees is the GPU tests' question."""

from __future__ import annotations

import inspect
import itertools
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import triton
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia import hopper
from triton.runtime.jit import JITFunction


class Hazard(AssertionError):
    """An asynchronous step out of order, or a memory access outside its tensor."""


class Tensor(np.ndarray):
    """A Gluon tensor: numpy, with `.to(dtype)` and C's integer division and remainder."""

    def to(self, dtype: Any, bitcast: bool = False) -> Tensor:
        return (self.view(dtype) if bitcast else self.astype(dtype)).view(Tensor)

    def __floordiv__(self, other: Any) -> Tensor:
        return _c_divide(self, other)

    def __rfloordiv__(self, other: Any) -> Tensor:
        return _c_divide(other, self)

    def __mod__(self, other: Any) -> Tensor:
        return np.fmod(self, other).view(Tensor)

    def __rmod__(self, other: Any) -> Tensor:
        return np.fmod(other, self).view(Tensor)


def _c_divide(a: Any, b: Any) -> Tensor:
    """a / b rounded toward zero, as C and Triton divide integers."""
    quotient = np.floor_divide(a, b)
    inexact = np.fmod(a, b) != 0
    return (quotient + (inexact & ((np.asarray(a) < 0) != (np.asarray(b) < 0)))).astype(
        quotient.dtype).view(Tensor)


def _tensor(value: Any) -> Tensor:
    return np.asarray(value).view(Tensor)


@dataclass(frozen=True)
class Pointer:
    """A pointer, or a tensor of pointers: offsets in elements into a tensor's memory."""

    memory: np.ndarray  # the tensor's elements in memory order, shared with it
    offsets: Any = 0
    __array_ufunc__ = None  # numpy defers `offsets + pointer` to __radd__

    @property
    def dtype(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(element_ty=self.memory.dtype)

    def __add__(self, offsets: Any) -> Pointer:
        return Pointer(self.memory, self.offsets + offsets)

    __radd__ = __add__

    def gather(self, mask: Any) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, mask) broadcast together; a Hazard for a lane in the mask outside memory."""
        offsets, mask = np.broadcast_arrays(np.asarray(self.offsets),
                                            np.asarray(True if mask is None else mask))
        outside = mask & ((offsets < 0) | (offsets >= self.memory.size))
        if outside.any():
            raise Hazard(f"{int(outside.sum())} lanes access memory outside a tensor of "
                         f"{self.memory.size} elements (offsets {offsets[outside][:4]}...)")
        return offsets, mask

    def load(self, mask: Any, other: Any) -> Tensor:
        offsets, mask = self.gather(mask)
        values = np.full(offsets.shape, 0 if other is None else other, self.memory.dtype)
        values[mask] = self.memory[offsets[mask]]
        return _tensor(values)


def _memory(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor's elements in memory order, shared with it (it must be dense, as a kernel
    addresses it)."""
    dense = 1
    for size, stride in sorted(zip(tensor.shape, tensor.stride(), strict=True),
                               key=lambda pair: pair[1]):
        if size > 1 and stride != dense:
            raise ValueError(f"a kernel's tensor must be dense in memory: {tensor.stride()}")
        dense *= size
    return tensor.as_strided((tensor.numel(),), (1,)).numpy()


@dataclass(frozen=True)
class Shared:
    """Shared memory, or a slot of it (`index`), possibly permuted."""

    data: np.ndarray
    allocation: int
    slot: int | None = None

    def index(self, slot: int) -> Shared:
        return Shared(self.data[slot], self.allocation, slot)

    def permute(self, order: tuple[int, ...]) -> Shared:
        return Shared(self.data.transpose(order), self.allocation, self.slot)

    def overlaps(self, other: Shared) -> bool:
        return self.allocation == other.allocation and (
            self.slot is None or other.slot is None or self.slot == other.slot)

    def load(self, layout: Any = None) -> Tensor:
        _program().check_landed(self, "a load")
        return _tensor(self.data.copy())

    def store(self, value: Any) -> None:
        """This thread's part of the tile: others see it after a barrier, a wgmma after a
        fence_async_shared before that barrier."""
        program = _program()
        program.check_unread(self, "a store")
        self.data[...] = value
        program.unfenced = [region for region in program.unfenced if not self.overlaps(region)]
        program.stored.append(self)


@dataclass
class _Wgmma:
    """A wgmma in flight: its result and the shared memory it reads until retired."""

    result: Tensor
    reads: list[Shared]
    retired: bool = False


@dataclass(frozen=True)
class Accumulator:
    """An asynchronous wgmma's result, usable only by another wgmma until it is waited for."""

    wgmma: _Wgmma

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise Hazard("an asynchronous wgmma's accumulator used before a warpgroup_mma_wait "
                     "retired its wgmma")


@dataclass
class _Program:
    """One program's ids, warps and asynchronous steps in flight."""

    ids: tuple[int, int, int]
    grid: tuple[int, int, int]
    warps: int
    copies: list[tuple[Shared, np.ndarray]] = field(default_factory=list)  # not yet committed
    groups: list[list[tuple[Shared, np.ndarray]]] = field(default_factory=list)
    wgmmas: list[_Wgmma] = field(default_factory=list)
    landed: list[Shared] = field(default_factory=list)  # this thread's copies, since a barrier
    retired: list[_Wgmma] = field(default_factory=list)  # waited for here, since a barrier
    stored: list[Shared] = field(default_factory=list)  # this thread's stores, since a barrier
    fenced: list[Shared] = field(default_factory=list)  # of those, fenced for the async proxy
    unfenced: list[Shared] = field(default_factory=list)  # stores behind a barrier, never fenced
    global_stores: int = 0  # this thread's stores to global memory, since a barrier
    allocations: int = 0

    def in_flight(self) -> list[tuple[Shared, np.ndarray]]:
        return self.copies + [copy for group in self.groups for copy in group]

    def check_landed(self, memory: Shared, reader: str, async_proxy: bool = False) -> None:
        """A Hazard unless every thread's writes into `memory` are done and seen: for the
        async proxy (a wgmma), stores fenced before the barrier that follows them."""
        if any(memory.overlaps(target) for target, _ in self.in_flight()):
            raise Hazard(f"{reader} reads shared memory (slot {memory.slot}) that a cp.async "
                         "still in flight writes")
        if any(memory.overlaps(target) for target in self.landed):
            raise Hazard(f"{reader} reads shared memory (slot {memory.slot}) with no barrier "
                         "since its cp.async landed (the other threads' may not have)")
        if any(memory.overlaps(target) for target in self.stored + self.fenced):
            raise Hazard(f"{reader} reads shared memory (slot {memory.slot}) with no barrier "
                         "since it was stored (the other threads' stores)")
        if async_proxy and any(memory.overlaps(target) for target in self.unfenced):
            raise Hazard(f"{reader} reads shared memory (slot {memory.slot}) stored with no "
                         "fence_async_shared before the barrier")

    def check_unread(self, memory: Shared, writer: str) -> None:
        if any(memory.overlaps(read) for wgmma in self.wgmmas for read in wgmma.reads):
            raise Hazard(f"{writer} writes shared memory (slot {memory.slot}) that a wgmma not "
                         "yet waited for reads")
        if self.warps > 4 and any(memory.overlaps(read) for wgmma in self.retired
                                  for read in wgmma.reads):
            raise Hazard(f"{writer} writes shared memory (slot {memory.slot}) with no barrier "
                         "since the wait for a wgmma that reads it (another warpgroup's may "
                         "still run)")

    def barrier(self) -> None:
        """Every thread's landed copies, stores and waits, known to all (stores to the async
        proxy only if fenced before)."""
        self.landed.clear()
        self.retired.clear()
        self.global_stores = 0
        self.unfenced += self.stored
        self.stored.clear()
        self.fenced.clear()

    def fence(self) -> None:
        """fence_async_shared: this thread's stores, ordered before the async proxy's reads."""
        self.fenced += self.stored
        self.stored.clear()


_current: list[_Program] = []


def _program() -> _Program:
    return _current[-1]


def _operand(value: Any, reads: list[Shared]) -> np.ndarray:
    """A wgmma operand's values, from shared memory (noted in `reads`): the kernels give a wgmma
    no register operand, and the emulator models none."""
    if not isinstance(value, Shared):
        raise NotImplementedError("the Gluon emulator does not model a wgmma's register operand")
    _program().check_landed(value, "a wgmma", async_proxy=True)
    reads.append(value)
    return value.data


def _accumulator(value: Any) -> np.ndarray:
    return value.wgmma.result if isinstance(value, Accumulator) else np.asarray(value)


def warpgroup_mma(a: Any, b: Any, acc: Any, *, use_acc: bool = True, is_async: bool = False,
                  **options: Any) -> Tensor | Accumulator:
    """acc + a @ b, summed exactly (int32 for integers, as the tensor cores keep it)."""
    reads: list[Shared] = []
    a, b = _operand(a, reads), _operand(b, reads)
    product = a.astype(np.float64) @ b.astype(np.float64)  # exact: a step's sums stay < 2**53
    start = _accumulator(acc) if use_acc else 0
    result = _tensor((start + product).astype(np.int64).astype(np.int32))
    if not is_async:
        return result
    wgmma = _Wgmma(result, reads)
    _program().wgmmas.append(wgmma)
    return Accumulator(wgmma)


def warpgroup_mma_wait(num_outstanding: int = 0, deps: Any = None) -> Any:
    """Retire all but the `num_outstanding` latest wgmmas; `deps` back, each accumulator as its
    values once its wgmma is retired."""
    program = _program()
    keep = len(program.wgmmas) - num_outstanding
    for wgmma in program.wgmmas[:max(keep, 0)]:
        wgmma.retired = True
        program.retired.append(wgmma)
    program.wgmmas = program.wgmmas[max(keep, 0):]
    results = [dep.wgmma.result if isinstance(dep, Accumulator) and dep.wgmma.retired else dep
               for dep in deps]
    return results[0] if len(results) == 1 else tuple(results)


def async_load(smem: Shared, pointer: Pointer, mask: Any = None, **options: Any) -> None:
    """cp.async from global memory into `smem`, masked-off lanes zero-filled; it lands at the
    `wait_group` that covers its group (`commit_group`)."""
    program = _program()
    if any(smem.overlaps(target) for target, _ in program.in_flight()):
        raise Hazard(f"a cp.async into shared memory (slot {smem.slot}) that another still "
                     "in flight writes")
    program.check_unread(smem, "a cp.async")
    values = pointer.load(mask, 0)
    if values.shape != smem.data.shape:
        raise ValueError(f"cp.async of {values.shape} into shared memory of {smem.data.shape}")
    program.copies.append((smem, values))


def commit_group() -> None:
    program = _program()
    program.groups.append(program.copies)
    program.copies = []


def wait_group(num_outstanding: int = 0) -> None:
    """Land every committed group but the `num_outstanding` latest."""
    program = _program()
    landing = len(program.groups) - num_outstanding
    for group in program.groups[:max(landing, 0)]:
        for smem, values in group:
            smem.data[...] = values
            program.landed.append(smem)
            program.unfenced = [region for region in program.unfenced
                                if not smem.overlaps(region)]
    program.groups = program.groups[max(landing, 0):]


class _Layout:
    """Any layout: ignored."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    @staticmethod
    def get_default_for(*args: Any, **kwargs: Any) -> _Layout:
        return _Layout()


def allocate_shared_memory(dtype: Any, shape: list[int], layout: Any = None) -> Shared:
    """Shared memory holding garbage (0x5A bytes), as a GPU's may."""
    program = _program()
    program.allocations += 1
    return Shared(np.full(shape, 0x5A, dtype), program.allocations)


def _load(pointer: Pointer, mask: Any = None, other: Any = None, **options: Any) -> Tensor:
    return pointer.load(mask, other)


def _store(pointer: Pointer, value: Any, mask: Any = None, **options: Any) -> None:
    offsets, mask = pointer.gather(mask)
    values = np.broadcast_to(np.asarray(value), offsets.shape)
    pointer.memory[offsets[mask]] = values[mask]
    _program().global_stores += 1


def _atomic(update: Any) -> Any:
    """A Gluon atomic that writes update(old, value) and returns the old values; with release
    semantics (`sem`), a Hazard after global stores that no barrier has followed."""
    def atomic(pointer: Pointer, value: Any, mask: Any = None, sem: str = "acq_rel",
               scope: str = "gpu") -> Tensor:
        if sem in ("release", "acq_rel") and _program().global_stores:
            raise Hazard("an atomic releases global stores with no barrier since them (the "
                         "other threads' may not be done)")
        offsets, mask = pointer.gather(mask)
        old = pointer.memory[offsets].copy()
        values = np.broadcast_to(np.asarray(value, pointer.memory.dtype), offsets.shape)
        pointer.memory[offsets[mask]] = update(old[mask], values[mask])
        return _tensor(old)
    return atomic


def _arange(start: int, end: int, layout: Any = None) -> Tensor:
    return _tensor(np.arange(start, end, dtype=np.int32))


def _zeros(shape: list[int], dtype: Any, layout: Any = None) -> Tensor:
    return _tensor(np.zeros(shape, dtype))


def _elementwise(function: Any) -> Any:
    return lambda *args, **options: _tensor(function(*map(np.asarray, args)))


_GL = {
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
    "int64": np.int64, "float16": np.float16, "float32": np.float32, "float64": np.float64,
    "program_id": lambda axis: _program().ids[axis],
    "num_programs": lambda axis: _program().grid[axis],
    "atomic_add": _atomic(np.add), "atomic_xchg": _atomic(lambda old, value: value),
    "num_warps": lambda: _program().warps,
    "arange": _arange, "zeros": _zeros, "load": _load, "store": _store,
    "static_range": range, "allocate_shared_memory": allocate_shared_memory,
    "convert_layout": lambda value, layout, **options: value,
    "where": _elementwise(np.where),
    "minimum": _elementwise(np.minimum), "maximum": _elementwise(np.maximum),
    "barrier": lambda: _program().barrier(), "thread_barrier": lambda: _program().barrier(),
    **{name: _Layout for name in ("BlockedLayout", "SliceLayout", "NVMMADistributedLayout",
                                  "NVMMASharedLayout", "SwizzledSharedLayout")},
}


class _Namespace(types.SimpleNamespace):
    """A Gluon module's stand-in: what it does not model fails loudly."""

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"the Gluon emulator does not model {name}")


_EMULATED_GL = _Namespace(**_GL)
_EMULATED_ASYNC_COPY = _Namespace(async_load=async_load, async_copy_global_to_shared=async_load,
                                  commit_group=commit_group, wait_group=wait_group)
_EMULATED_HOPPER = _Namespace(warpgroup_mma=warpgroup_mma, warpgroup_mma_wait=warpgroup_mma_wait,
                              fence_async_shared=lambda: _program().fence())
# Gluon's objects by identity, and what a kernel's globals see in their place
_STAND_INS = {id(gl): _EMULATED_GL, id(async_copy): _EMULATED_ASYNC_COPY,
              id(hopper): _EMULATED_HOPPER,
              id(hopper.warpgroup_mma): warpgroup_mma,
              id(hopper.warpgroup_mma_wait): warpgroup_mma_wait,
              id(hopper.fence_async_shared): _EMULATED_HOPPER.fence_async_shared,
              **{id(getattr(async_copy, name)): async_load
                 for name in ("async_load", "async_copy_global_to_shared")
                 if hasattr(async_copy, name)},
              **{id(getattr(gl, name)): _GL[name]
                 for name in ("barrier", "thread_barrier") if hasattr(gl, name)}}


def emulated(kernel: Any) -> types.FunctionType:
    """`kernel`'s Python function with its module's globals seen through the stand-ins: Gluon's
    objects replaced, constants unwrapped, the Gluon functions it calls emulated in turn."""
    namespace = dict(kernel.fn.__globals__)
    for name, value in namespace.items():
        if id(value) in _STAND_INS:
            namespace[name] = _STAND_INS[id(value)]
        elif isinstance(value, gl.constexpr):  # a constant, as the kernel's arithmetic sees it
            namespace[name] = value.value
    for name, value in list(namespace.items()):
        if isinstance(value, JITFunction):  # a @gluon.jit function's class
            namespace[name] = _rebound(value.fn, namespace)
    return _rebound(kernel.fn, namespace)


def _rebound(function: types.FunctionType, namespace: dict[str, Any]) -> types.FunctionType:
    """`function` with `namespace` for its globals."""
    rebound = types.FunctionType(function.__code__, namespace, function.__name__,
                                 function.__defaults__, function.__closure__)
    rebound.__kwdefaults__ = function.__kwdefaults__
    return rebound


# the launch options of a triton.Config besides num_warps, which a launch may pass and the
# emulator ignores
_LAUNCH_OPTIONS = set(triton.Config({}).all_kwargs()) - {"num_warps"}


def launch(kernel: Any, grid: Any, *args: Any, num_warps: int = 4, reverse: bool = False,
           **constants: Any) -> None:
    """Run `kernel` as `kernel[grid](*args, num_warps=..., **constants)` would on a GPU: every
    program of the grid (a tuple, or a function of the constants) in turn, or in the reverse
    order, tensors passed as pointers to their memory (CPU tensors, written in place), floats as
    float32."""
    function = emulated(kernel)
    parameters = inspect.signature(function).parameters
    unknown = set(constants) - set(parameters) - _LAUNCH_OPTIONS
    if unknown:
        raise TypeError(f"{kernel.fn.__name__} takes no {sorted(unknown)}")
    constants = {name: value for name, value in constants.items() if name in parameters}
    # tensors as pointers, Python floats as the float32 scalars that Triton passes them as
    pointers = [Pointer(_memory(arg)) if isinstance(arg, torch.Tensor)
                else np.float32(arg) if isinstance(arg, float) else arg for arg in args]
    grid = (*(grid(constants) if callable(grid) else grid), 1, 1)[:3]
    programs = list(itertools.product(*(range(size) for size in grid)))
    for ids in reversed(programs) if reverse else programs:
        program = _Program(ids, grid, num_warps)
        _current.append(program)
        try:
            function(*pointers, **constants)
        finally:
            _current.pop()
        if program.in_flight():
            raise Hazard(f"program {ids} ended with {len(program.in_flight())} cp.async copies "
                         "in flight")
