"""`gluon_emulator` itself: a small Gluon kernel that stages two int8 tiles through shared memory
with cp.async and multiplies them with an asynchronous wgmma runs to the right product, and each
ordering rule it can break, broken on purpose, is caught; integers divide as in C, memory
outside a tensor is refused, and programs that meet at a counter do in either order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("triton")
from triton.experimental import gluon  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402
from triton.experimental.gluon.language.nvidia.ampere import async_copy  # noqa: E402
from triton.experimental.gluon.language.nvidia.hopper import (  # noqa: E402
    warpgroup_mma, warpgroup_mma_wait)

import gluon_emulator  # noqa: E402
from gluon_emulator import Hazard  # noqa: E402

# cp.async into shared memory and a CTA-wide barrier: Triton 3.6's names, or later Tritons'
_copy = getattr(async_copy, "async_load", None) or async_copy.async_copy_global_to_shared
_barrier = getattr(gl, "barrier", None) or gl.thread_barrier
M, N, K = 64, 32, 32  # a wgmma's int8 tile


@gluon.jit
def _staged_product(a_ptr, b_ptr, out_ptr, MISTAKE: gl.constexpr, M: gl.constexpr,
                    N: gl.constexpr, K: gl.constexpr):
    """out [M, N] int32 = a [M, K] @ b [N, K] transposed (an int8 wgmma reads its shared
    operands K-major), both staged by cp.async; MISTAKE 1 reads them
    before the copies are waited for, 2 copies into b's shared memory while the wgmma may still
    read it, 3 stores the accumulator before its wgmma is waited for, 4 reads the copies with no
    barrier after the wait (other threads' copies), 5 (on 8 warps) copies into b's shared memory
    after the wgmma's wait with no barrier (another warpgroup's part of it). Triton 3.6 compiles
    all but 3 for sm_90, refusing 3 as the emulator does; into 4 and 5 its own analysis of shared
    memory puts the barrier left out, 1 and 2 it leaves racing."""
    warps: gl.constexpr = gl.num_warps()  # 4, or 8: two warpgroups side by side over N
    layout: gl.constexpr = gl.BlockedLayout([1, 16], [32, 1], [warps, 1], [1, 0])
    acc_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, warps // 4], instr_shape=[16, N // (warps // 4), 32])
    rows = gl.arange(0, M, gl.SliceLayout(1, layout))
    reduction = gl.arange(0, K, gl.SliceLayout(0, layout))
    b_rows = gl.arange(0, N, gl.SliceLayout(1, layout))
    a_smem = gl.allocate_shared_memory(gl.int8, [M, K],
                                       gl.NVMMASharedLayout.get_default_for([M, K], gl.int8))
    b_smem = gl.allocate_shared_memory(gl.int8, [N, K],
                                       gl.NVMMASharedLayout.get_default_for([N, K], gl.int8))
    _copy(a_smem, a_ptr + rows[:, None] * K + reduction[None, :])
    _copy(b_smem, b_ptr + b_rows[:, None] * K + reduction[None, :])
    async_copy.commit_group()
    if MISTAKE != 1:
        async_copy.wait_group(0)
    if MISTAKE != 4:
        _barrier()
    acc = gl.zeros([M, N], gl.int32, acc_layout)
    acc = warpgroup_mma(a_smem, b_smem.permute((1, 0)), acc, is_async=True)
    if MISTAKE == 2:
        _copy(b_smem, b_ptr + b_rows[:, None] * K + reduction[None, :])
        async_copy.commit_group()
        async_copy.wait_group(0)
    if MISTAKE != 3:
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
    if MISTAKE == 5:
        _copy(b_smem, b_ptr + b_rows[:, None] * K + reduction[None, :])
        async_copy.commit_group()
        async_copy.wait_group(0)
    out_rows = gl.arange(0, M, gl.SliceLayout(1, acc_layout))
    out_columns = gl.arange(0, N, gl.SliceLayout(0, acc_layout))
    gl.store(out_ptr + out_rows[:, None] * N + out_columns[None, :], acc)


def _operands() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (M, K), generator=generator, dtype=torch.int8)
    b = torch.randint(-128, 128, (N, K), generator=generator, dtype=torch.int8)
    return a, b, torch.full((M, N), 7, dtype=torch.int32)


@pytest.mark.parametrize("warps", [4, 8])
def test_a_staged_product_runs_to_the_exact_product(warps):
    """Also with a copy after the wgmma's wait on one warpgroup, whose wait is every warp's."""
    a, b, out = _operands()
    gluon_emulator.launch(_staged_product, (1,), a, b, out, MISTAKE=5 if warps == 4 else 0,
                          M=M, N=N, K=K, num_warps=warps)
    assert torch.equal(out, a.to(torch.int32) @ b.to(torch.int32).T)


@pytest.mark.parametrize(("mistake", "message"), [
    (1, "a wgmma reads shared memory .* that a cp.async still in flight writes"),
    (2, "a cp.async writes shared memory .* that a wgmma not yet waited for reads"),
    (3, "accumulator used before a warpgroup_mma_wait retired its wgmma"),
    (4, "a wgmma reads shared memory .* with no barrier since its cp.async landed"),
    (5, "a cp.async writes shared memory .* with no barrier since the wait for a wgmma"),
])
def test_each_ordering_mistake_is_a_hazard(mistake, message):
    a, b, out = _operands()
    with pytest.raises(Hazard, match=message):
        gluon_emulator.launch(_staged_product, (1,), a, b, out, MISTAKE=mistake, M=M, N=N, K=K,
                              num_warps=8)


def test_a_tensor_too_small_for_the_kernel_is_a_hazard():
    a, b, out = _operands()
    with pytest.raises(Hazard, match="outside a tensor of 512 elements"):
        gluon_emulator.launch(_staged_product, (1,), a, b[:N // 2].contiguous(), out,
                              MISTAKE=0, M=M, N=N, K=K)


def test_integers_divide_toward_zero_as_in_c():
    values = gluon_emulator.Tensor((4,), np.int32, np.array([-7, 7, -8, 6], np.int32))
    assert (values // 2).tolist() == [-3, 3, -4, 3]
    assert (values % 2).tolist() == [-1, 1, 0, 0]
    assert (-7 // gluon_emulator.Tensor((1,), np.int32, np.array([2], np.int32))).tolist() == [-3]


@gluon.jit
def _counted_sums(values_ptr, sums_ptr, counter_ptr, BARRIER: gl.constexpr, N: gl.constexpr,
                  PARTS: gl.constexpr):
    """Each of PARTS programs stores its values in its slot of sums and counts itself at counter
    (release); the one that finds every other counted stores the slots' total in the slot after
    them: split-K's meeting, as `qbench_triton.wgmma._split_sums` has it. Without BARRIER the
    release follows the stores unbarriered."""
    layout: gl.constexpr = gl.BlockedLayout([1], [32], [gl.num_warps()], [0])
    lanes = gl.arange(0, N, layout)
    part = gl.program_id(0)
    gl.store(sums_ptr + part * N + lanes, gl.load(values_ptr + part * N + lanes))
    if BARRIER:
        _barrier()
    if gl.atomic_add(counter_ptr, 1, sem="release") == gl.num_programs(0) - 1:
        total = gl.zeros([N], gl.int32, layout)
        for other in gl.static_range(PARTS):
            total += gl.load(sums_ptr + other * N + lanes)
        gl.store(sums_ptr + PARTS * N + lanes, total)


@pytest.mark.parametrize("reverse", [False, True])
def test_atomics_return_the_old_value_and_programs_run_in_either_order(reverse):
    values = torch.arange(96, dtype=torch.int32).reshape(3, 32)
    sums = torch.full((4, 32), -1, dtype=torch.int32)
    counter = torch.zeros(1, dtype=torch.int32)
    gluon_emulator.launch(_counted_sums, (3,), values, sums, counter, BARRIER=True, N=32,
                          PARTS=3, reverse=reverse)
    assert counter.item() == 3
    assert torch.equal(sums[3], values.sum(0))


def test_a_release_after_stores_with_no_barrier_is_a_hazard():
    values = torch.arange(96, dtype=torch.int32).reshape(3, 32)
    sums = torch.zeros((4, 32), dtype=torch.int32)
    with pytest.raises(Hazard, match="releases global stores with no barrier"):
        gluon_emulator.launch(_counted_sums, (3,), values, sums, torch.zeros(1, dtype=torch.int32),
                              BARRIER=False, N=32, PARTS=3)


@gluon.jit
def _biased_bits(values_ptr, out_ptr, low, bias, N: gl.constexpr):
    """out = the bits of the float32 sums max(values, low) + bias, as `qbench_triton.wgmma`
    clamps and rounds its outputs (bias: `kernels.ROUNDING_BIAS`)."""
    lanes = gl.arange(0, N, gl.BlockedLayout([1], [32], [gl.num_warps()], [0]))
    values = gl.maximum(gl.load(values_ptr + lanes), low)
    gl.store(out_ptr + lanes, (values + bias).to(gl.int32, bitcast=True))


def test_float_arguments_are_float32_and_the_rounding_bias_rounds_half_to_even():
    """A Python float reaches the kernel as the float32 that Triton passes (as float64 the sums
    would round elsewhere and their bits not fit int32)."""
    from qbench_triton.kernels import ROUNDING_BIAS

    ties = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, 100.5, 101.5, -127.5, -1e30]
    values = torch.tensor(ties + [0.0] * (32 - len(ties)), dtype=torch.float32)
    out = torch.zeros(32, dtype=torch.int32)
    gluon_emulator.launch(_biased_bits, (1,), values, out, -128.0, ROUNDING_BIAS.value, N=32)
    bits = torch.tensor(ROUNDING_BIAS.value).view(torch.int32)
    assert (out[:len(ties)] - bits).tolist() == [-2, -2, 0, 0, 2, 2, 0, 100, 102, -128, -128]
