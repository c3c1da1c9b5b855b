"""The GEMM kernel written in Gluon for Hopper (sm_90), with its tensor-core steps asynchronous:
`conv_gemm_wgmma_kernel` for a tap per pixel, `conv_merged_wgmma_kernel` for merged kernel rows.

Triton 3.6 waits for every int8 `tl.dot` to finish before the next step's loads are issued: its
pipeliner keeps only fp32-accumulating dots in flight ("Can't make dot async because the
accumulator is not fp32", WGMMAPipeline.cpp), so a program's tensor cores idle while it computes
addresses, and `kernels.conv_gemm_kernel` leans on a second program per SM to fill them. Gluon
leaves the waits to the kernel: here each step issues its wgmma, waits only for the previous
step's (`warpgroup_mma_wait(1)`), then issues the loads of a step ahead into the slot that wgmma
read, so that loads, address arithmetic and the tensor cores overlap.

The same sums and epilogue as `kernels.conv_gemm_kernel` (see its module's docstring), for the
problems where that kernel needs none of its special cases: no weight zero points; a tap per
(r, s) of at most 32 taps, tiles that divide a group's output channels and a tap's channels
(EVEN_N, EVEN_SPAN), loaded by cp.async; or merged rows (conv1), whose taps start at any byte,
a row a thread loading its bytes into registers, with blocks that divide a tap's stride. quint8
activations of a tap per pixel have their top bits flipped in their slot of shared memory while
the previous step's wgmma runs (merged rows flip theirs in registers before storing them), so
that a step of either type waits only for the previous step's wgmma. On 4 warps (a
warpgroup) or 8 (two, a warpgroup per 64 rows or side by side over the columns), with a barrier
after the wait in every warp, so that no warpgroup loads into a slot another's wgmma still reads.
A tap per pixel's tile may also be split among programs (split-K, tuned with
QBENCH_TRITON_SPLIT_K=1 on layers of few tiles), each an even share of its steps, their sums
meeting at the tile's counters (`_split_sums`), and may read its activations through L1
(L1_REUSE, tuned on kernels of several taps), which neighbouring taps read again. Or a few
programs an SM may take the tiles in turn (PERSIST, tuned on layers of many tiles), each
program's pipeline running on from tile to tile (`_persistent_tiles`). Which configs tuning
tries where, and the autotuned launches: `wgmma_configs`.
Compiled for sm_90 on any machine (`compile_check`); Gluon has no interpreter, so the tests run
these kernels' bodies on the CPU in their Gluon emulator (tests/gluon_emulator.py) and, on a
Hopper GPU, compiled.
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, warpgroup_mma,
                                                              warpgroup_mma_wait)

from qbench_triton import kernels
from qbench_triton.kernels import ROUNDING_BIAS, SPIN_LIMIT

# the int8 wgmma widths that Triton takes (its Gluon tutorial's list, up to 224)
_INT8_WIDTHS = gl.constexpr((224, 208, 192, 176, 160, 144, 128, 112, 96, 80, 64, 48, 32, 24, 16, 8))
# Triton 3.6's names for cp.async into shared memory and a CTA-wide barrier (the GPU image's
# Triton), or later Tritons' (CI's)
_copy_to_shared = getattr(async_copy, "async_load", None) or async_copy.async_copy_global_to_shared
_barrier = getattr(gl, "barrier", None) or gl.thread_barrier


@gluon.constexpr_function
def _mma_warps(bm, warps):
    """The accumulator's warps along rows and columns: a warpgroup per 64 rows, then side by side
    over the columns."""
    rows = min(warps, max(4, bm // 16))
    return [rows, warps // rows]


@gluon.constexpr_function
def _instr_n(bn, warps):
    """The widest int8 wgmma that divides a warpgroup's columns of a BN-wide tile."""
    columns = bn // warps[1]
    return next(n for n in _INT8_WIDTHS if columns % n == 0)


@gluon.constexpr_function
def _load_layout(columns, warps, width=16):
    """A [rows, columns] int8 tile's load layout: `width` contiguous bytes a thread, a row's bytes
    over neighbouring threads (cp.async of `width` bytes, coalesced)."""
    across = min(columns // width, 32)
    return gl.BlockedLayout([1, width], [32 // across, across], [warps, 1], [1, 0])


@gluon.jit
def _next_block(tap, lane0, blocks, BK: gl.constexpr):
    """The reduction step after the block at `lane0` of `tap`, as (tap, first lane): the tap's
    next block or the next tap's first, carried from step to step instead of divided out."""
    wrap = lane0 + BK == blocks * BK
    return gl.where(wrap, tap + 1, tap), gl.where(wrap, 0, lane0 + BK)


@gluon.jit
def _block_of(step, blocks, TAPS: gl.constexpr, BK: gl.constexpr, L1_REUSE: gl.constexpr):
    """Reduction step `step` as (tap, first lane): a tap's blocks in turn, or with L1_REUSE a
    block's taps in turn."""
    if L1_REUSE:
        return step % TAPS, step // TAPS * BK
    return step // blocks, step % blocks * BK


@gluon.jit
def _next_step(tap, lane0, blocks, TAPS: gl.constexpr, BK: gl.constexpr,
               L1_REUSE: gl.constexpr):
    """The reduction step after (tap, lane0) in `_block_of`'s order, carried from step to
    step instead of divided out; past the last, a tap of TAPS or more (the loads masked off)."""
    if L1_REUSE:
        wrap = tap + 1 == TAPS
        lane0 = gl.where(wrap, lane0 + BK, lane0)
        return gl.where(wrap, gl.where(lane0 == blocks * BK, TAPS, 0), tap + 1), lane0
    return _next_block(tap, lane0, blocks, BK)


@gluon.jit
def _copy_weights(w_ptr, w_slot, tap, lane0, k_w, j_w, WSTRIDE, TAPS: gl.constexpr,
                  BK: gl.constexpr):
    """cp.async the weights [BN, BK] of lanes [lane0, lane0 + BK) of `tap` (none past TAPS taps
    of WSTRIDE lanes) into w_slot."""
    _copy_to_shared(
        w_slot, w_ptr + k_w[:, None] * (TAPS * WSTRIDE) + (tap * WSTRIDE + lane0 + j_w)[None, :],
        mask=tap < TAPS)


@gluon.jit
def _issue_loads(x_ptr, w_ptr, x_slot, w_slot, tap, lane0, row_base, taps_inside, j_x,
                 k_w, j_w, W, C, DH, DW, WSTRIDE, S: gl.constexpr, BK: gl.constexpr,
                 R: gl.constexpr):
    """cp.async the activations and weights of lanes [lane0, lane0 + BK) of `tap` (none past the
    R * S taps) into slots x_slot [BM, BK] and w_slot [BN, BK]: lanes outside the image are
    zero-filled."""
    valid = tap < R * S
    r = tap // S
    tap_offset = (r * DH * W + (tap - r * S) * DW) * C + lane0
    inside = ((taps_inside >> tap) & 1) != 0
    _copy_to_shared(
        x_slot, x_ptr + row_base[:, None] + (tap_offset + j_x)[None, :],
        mask=(inside & valid)[:, None])
    _copy_weights(w_ptr, w_slot, tap, lane0, k_w, j_w, WSTRIDE, R * S, BK)


@gluon.constexpr_function
def _accumulator_layout(bm, bn, warps):
    """The wgmma accumulator's layout for a [bm, bn] tile on `warps` warps (`_mma_warps`)."""
    mma_warps = _mma_warps(bm, warps)
    return gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=mma_warps,
                                     instr_shape=[16, _instr_n(bn, mma_warps), 32])


@gluon.jit
def _load_step(x_ptr, w_ptr, x_slot, w_slot, tap, lane0, row_base, taps_inside, j_x, k_w, j_w,
               blocks, W, C, DH, DW, WSTRIDE, R: gl.constexpr, S: gl.constexpr,
               BK: gl.constexpr, L1_REUSE: gl.constexpr):
    """cp.async reduction step (tap, lane0) into x_slot and w_slot (`_issue_loads`) as a group,
    and return the step after it in `_block_of`'s order (`_next_step`)."""
    _issue_loads(x_ptr, w_ptr, x_slot, w_slot, tap, lane0, row_base, taps_inside, j_x, k_w, j_w,
                 W, C, DH, DW, WSTRIDE, S, BK, R)
    async_copy.commit_group()
    return _next_step(tap, lane0, blocks, R * S, BK, L1_REUSE)


@gluon.jit
def _tile_start(corr_ptr, pid_m, pid_n, g, carried, M, OH, OW, K, KG, BORDER: gl.constexpr,
                BM: gl.constexpr, BN: gl.constexpr, acc_layout: gl.constexpr):
    """Output tile (pid_m, pid_n) of tile group g in the accumulator's layout: its rows, its
    channels, and where its sums start: minus the compensation (`kernels`' module docstring), a
    row's output pixel's of the [OH * OW, K] table with BORDER, else of the [K] one; the epilogue
    then holds no table beside them (loaded there, a 128x128 tile's spilled registers). Zeros,
    no table loaded, unless `carried` (split-K: the first share's sums alone carry it)."""
    rows = pid_m * BM + gl.arange(0, BM, gl.SliceLayout(1, acc_layout))
    k = g * KG + pid_n * BN + gl.arange(0, BN, gl.SliceLayout(0, acc_layout))
    if BORDER:
        acc = -gl.load(corr_ptr + (rows % (OH * OW))[:, None] * K + k[None, :],
                       mask=(rows < M)[:, None] & carried, other=0)
    else:
        acc = gl.zeros([BM, BN], gl.int32, acc_layout) - gl.load(corr_ptr + k, mask=carried,
                                                                  other=0)[None, :]
    return rows, k, acc


@gluon.jit
def _requantize_store(acc, out_ptr, bias_ptr, mult_ptr, k, row0, k0, M, K, out_zp, lo, hi,
                      BM: gl.constexpr, BN: gl.constexpr):
    """Output rows [row0, row0 + BM), channels [k0, k0 + BN) from the sums (k: their channels,
    in the accumulator's layout), as `kernels._requantize` computes them: (acc + bias) * mult,
    clamped to [lo - out_zp, hi - out_zp], rounded half to even by adding ROUNDING_BIAS, plus
    the output zero point, the output the sum's low byte."""
    bias = gl.load(bias_ptr + k)[None, :]
    mult = gl.load(mult_ptr + k)[None, :]
    v = (acc.to(gl.float32) + bias) * mult
    v = gl.minimum(gl.maximum(v, lo - out_zp), hi - out_zp)
    q = ((v + ROUNDING_BIAS) + out_zp).to(gl.int32, bitcast=True).to(out_ptr.dtype.element_ty)
    out_layout: gl.constexpr = _load_layout(BN, gl.num_warps())
    q = gl.convert_layout(q, out_layout)
    out_rows = row0 + gl.arange(0, BM, gl.SliceLayout(1, out_layout))
    out_k = k0 + gl.arange(0, BN, gl.SliceLayout(0, out_layout))
    gl.store(out_ptr + out_rows[:, None] * K + out_k[None, :], q, mask=(out_rows < M)[:, None])


@gluon.jit
def _window_origins(pid_m, M, H, W, OH, OW, C, SH, SW, PH, PW, BM: gl.constexpr,
                    layout: gl.constexpr):
    """Rows [pid_m * BM, + BM) of the output (pixels n, oh, ow) in `layout`: whether each is one
    (m < M), the top-left input pixel (ih0, iw0) of its window, and that pixel's first channel's
    offset in the NHWC activations (outside the image, where padding puts it)."""
    m = pid_m * BM + gl.arange(0, BM, layout)
    ow = m % OW
    n = m // OW // OH
    ih0 = (m // OW % OH) * SH - PH
    iw0 = ow * SW - PW
    return m < M, ih0, iw0, ((n * H + ih0) * W + iw0) * C


@gluon.jit
def _tile_origins(pid_m, pid_n, g, M, H, W, OH, OW, C, CG, KG, SH, SW, PH, PW, DH, DW,
                  R: gl.constexpr, S: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
                  x_layout: gl.constexpr, w_layout: gl.constexpr):
    """What the loads of output tile (pid_m, pid_n) of tile group g need, made once a tile, as
    `kernels._tile_sums` makes them (a Gluon kernel calls no Triton function: the tensors here
    are laid out): each row's pixel less its tap's offset (row_base) and a bit per tap inside
    the image (taps_inside), in the activations' load layout, and the weights' output channels
    (k_w) in theirs."""
    m_ok, ih0, iw0, row_base = _window_origins(pid_m, M, H, W, OH, OW, C, SH, SW, PH, PW, BM,
                                               gl.SliceLayout(1, x_layout))
    taps_inside = gl.zeros([BM], gl.int32, gl.SliceLayout(1, x_layout))
    for tap_r in gl.static_range(R):
        for tap_s in gl.static_range(S):
            tap_h = ih0 + tap_r * DH
            tap_w = iw0 + tap_s * DW
            tap_ok = m_ok & (tap_h >= 0) & (tap_h < H) & (tap_w >= 0) & (tap_w < W)
            taps_inside |= tap_ok.to(gl.int32) << (tap_r * S + tap_s)
    k_w = g * KG + pid_n * BN + gl.arange(0, BN, gl.SliceLayout(1, w_layout))
    return row_base + g * CG, taps_inside, k_w


@gluon.jit
def _operand_slots(BM: gl.constexpr, BN: gl.constexpr, BK: gl.constexpr, STAGES: gl.constexpr):
    """The pipeline's STAGES slots in shared memory, of activations [BM, BK] and of weights
    [BN, BK], in the layouts a wgmma reads."""
    x_slots = gl.allocate_shared_memory(
        gl.int8, [STAGES, BM, BK], gl.NVMMASharedLayout.get_default_for([BM, BK], gl.int8))
    w_slots = gl.allocate_shared_memory(
        gl.int8, [STAGES, BN, BK], gl.NVMMASharedLayout.get_default_for([BN, BK], gl.int8))
    return x_slots, w_slots


@gluon.jit
def _mma_step(x_slots, w_slots, slot, acc, X_UNSIGNED: gl.constexpr, STAGES: gl.constexpr,
              w_layout: gl.constexpr):
    """A reduction step on the operands in `slot`: once its loads have landed (this thread's,
    then every thread's), its wgmma issued on `acc`, the previous step's waited for, and a
    barrier, after which that step's slot, (slot + STAGES - 1) % STAGES, is free in every warp
    (each warp's part of a wgmma reads all of a slot's weights). quint8 activations (v as int8
    v - 128) have their top bits flipped in the slot first, while the previous step's wgmma
    runs (a padded lane's 0 then holds OUTSIDE_UNSIGNED, as in `kernels.conv_gemm_kernel`). As
    Triton pipelines its own dots (`kernels`, exact on an H200 in every suite), no proxy fence
    after cp.async. The sums returned are still being added to: only a wgmma may take them
    before `warpgroup_mma_wait`."""
    async_copy.wait_group(STAGES - 2)
    _barrier()
    x_slot = x_slots.index(slot)
    w_slot = w_slots.index(slot).permute((1, 0))
    if X_UNSIGNED:
        x_slot.store(x_slot.load(w_layout) ^ -128)
        fence_async_shared()  # the stores, before the wgmma reads them
        _barrier()  # and every thread's
    acc = warpgroup_mma(x_slot, w_slot, acc, is_async=True)
    acc, _, _ = warpgroup_mma_wait(num_outstanding=1, deps=(acc, x_slot, w_slot))
    _barrier()
    return acc


@gluon.jit
def _wait_for(counter_ptr, target):
    """Spin until the int32 at counter_ptr reaches `target` (acquire), as `kernels._wait_for`
    does (a Gluon kernel calls no Triton function)."""
    seen = gl.atomic_add(counter_ptr, 0, sem="acquire")
    spins = 0
    while (seen < target) & (spins < SPIN_LIMIT):
        seen = gl.atomic_add(counter_ptr, 0, sem="acquire")
        spins += 1


@gluon.jit
def _split_sums(acc, partial_ptr, counter_ptr, tile, part, rows, k, M, K,
                SPLIT: gl.constexpr):
    """A tile's sums from its SPLIT programs' parts, as `kernels._finish_tile` adds a shared
    tile's: each program claims a turn at the tile's first counter; all but the last store
    their part in their slot of `partial_ptr` ([SPLIT, M, K]) and count it at the second; the
    last waits for that count (the others have claimed, so they run, and their stores wait on
    nothing), adds their parts to its own, sets both counters back to zero and returns whether
    it is the last, with the whole sums."""
    last = gl.atomic_add(counter_ptr + 2 * tile, 1, sem="relaxed") == SPLIT - 1
    offsets = rows[:, None] * K + k[None, :]
    rows_ok = (rows < M)[:, None]
    if last:
        _wait_for(counter_ptr + 2 * tile + 1, SPLIT - 1)
        # a loop, not unrolled: one part's loads held at a time; .cg: from L2, where the others'
        # stores are, as `kernels._add_partials` loads them
        for other in range(SPLIT):
            acc += gl.load(partial_ptr + other * M * K + offsets, mask=rows_ok & (other != part),
                           other=0, cache_modifier=".cg")
        gl.atomic_xchg(counter_ptr + 2 * tile, 0)  # ready for the next launch
        gl.atomic_xchg(counter_ptr + 2 * tile + 1, 0)
    else:
        gl.store(partial_ptr + part * M * K + offsets, acc, mask=rows_ok)
        _barrier()  # every thread's part stored before the release below
        gl.atomic_add(counter_ptr + 2 * tile + 1, 1, sem="release")
    return last, acc


@gluon.jit
def _program_per_tile(x_ptr, w_ptr, out_ptr, corr_ptr, bias_ptr, mult_ptr, partial_ptr,
                      counter_ptr, SPAN, WSTRIDE, M, H, W, OH, OW, C, K, CG, KG, SH, SW, PH, PW,
                      DH, DW, out_zp, lo, hi, R: gl.constexpr, S: gl.constexpr,
                      X_UNSIGNED: gl.constexpr, BORDER: gl.constexpr, BM: gl.constexpr,
                      BN: gl.constexpr, BK: gl.constexpr, STAGES: gl.constexpr,
                      SPLIT: gl.constexpr, L1_REUSE: gl.constexpr):
    """`conv_gemm_wgmma_kernel` with SPLIT programs per output tile (split-K): (row tile,
    channel tile, tile group x SPLIT + part) = program ids; a part takes an even share of the
    tile's reduction steps, in order, and the parts' sums meet in `_split_sums` (with SPLIT of 1,
    a program per tile and no partials: `partial_ptr` and `counter_ptr` unused).
    With L1_REUSE the steps take a block of channels' taps in turn (without, a tap's blocks), and
    the activations come by cp.async of 8 bytes, which Triton caches in L1 (.ca; of 16 bytes,
    always past it: .cg): a tile's neighbouring taps read mostly the same pixels (the nine taps
    of 64 rows of a 3x3 at 14^2, about 94 pixels for the 576 rows loaded), so that a step finds
    most of its activations in L1 instead of L2. The weights, read once a program, still come
    16 bytes at a time past L1."""
    pid_m = gl.program_id(0)
    pid_n = gl.program_id(1)
    g = gl.program_id(2) // SPLIT
    part = gl.program_id(2) % SPLIT
    warps: gl.constexpr = gl.num_warps()
    # with L1_REUSE, 8 bytes a cp.async: Triton caches those in L1 (.ca), 16 bytes never (.cg)
    x_layout: gl.constexpr = _load_layout(BK, warps, 8 if L1_REUSE else 16)
    w_layout: gl.constexpr = _load_layout(BK, warps)  # 16 bytes a thread: quint8's flip's too
    acc_layout: gl.constexpr = _accumulator_layout(BM, BN, warps)
    x_slots, w_slots = _operand_slots(BM, BN, BK, STAGES)

    row_base, taps_inside, k_w = _tile_origins(pid_m, pid_n, g, M, H, W, OH, OW, C, CG, KG, SH,
                                               SW, PH, PW, DH, DW, R, S, BM, BN, x_layout,
                                               w_layout)
    j_x = gl.arange(0, BK, gl.SliceLayout(0, x_layout))
    j_w = gl.arange(0, BK, gl.SliceLayout(0, w_layout))
    blocks = SPAN // BK
    steps = R * S * blocks
    first = part * steps // SPLIT  # this part's steps: [first, end)
    end = (part + 1) * steps // SPLIT

    # the loads' step, STAGES - 1 ahead: its tap and first lane
    tap_ahead, lane0_ahead = _block_of(first, blocks, R * S, BK, L1_REUSE)
    for step in gl.static_range(STAGES - 1):  # the pipeline's first loads
        tap_ahead, lane0_ahead = _load_step(
            x_ptr, w_ptr, x_slots.index(step), w_slots.index(step), tap_ahead, lane0_ahead,
            row_base, taps_inside, j_x, k_w, j_w, blocks, W, C, DH, DW, WSTRIDE, R, S, BK,
            L1_REUSE)
    rows, k, acc = _tile_start(corr_ptr, pid_m, pid_n, g, part == 0, M, OH, OW, K, KG, BORDER,
                               BM, BN, acc_layout)
    for step in range(first, end):
        acc = _mma_step(x_slots, w_slots, (step - first) % STAGES, acc, X_UNSIGNED, STAGES,
                        w_layout)
        ahead = (step - first + STAGES - 1) % STAGES  # loaded while this step's wgmma runs
        tap_ahead, lane0_ahead = _load_step(
            x_ptr, w_ptr, x_slots.index(ahead), w_slots.index(ahead), tap_ahead, lane0_ahead,
            row_base, taps_inside, j_x, k_w, j_w, blocks, W, C, DH, DW, WSTRIDE, R, S, BK,
            L1_REUSE)
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
    async_copy.wait_group(0)  # no copy (zero-filling, past `steps`) outlives the program

    last = True  # the tile's whole sums: its one program's, or with split-K its last part's
    if SPLIT > 1:
        tile = (g * gl.num_programs(1) + pid_n) * gl.num_programs(0) + pid_m
        last, acc = _split_sums(acc, partial_ptr, counter_ptr, tile, part, rows, k, M, K, SPLIT)
    if last:
        _requantize_store(acc, out_ptr, bias_ptr, mult_ptr, k, pid_m * BM, g * KG + pid_n * BN,
                          M, K, out_zp, lo, hi, BM, BN)


@gluon.jit
def _tile_ids(tile, tiles_m, tiles_mn):
    """Tile `tile` of a persistent launch as (row tile, channel tile, tile group): row tiles
    fastest, so that the programs running at once share their weights."""
    return tile % tiles_m, tile % tiles_mn // tiles_m, tile // tiles_mn


@gluon.jit
def _load_ahead(x_ptr, w_ptr, x_slot, w_slot, tile, tap, lane0, row_base, taps_inside, k_w, j_x,
                j_w, programs, tiles, tiles_m, tiles_mn, blocks, M, H, W, OH, OW, C, CG, KG, SH,
                SW, PH, PW, DH, DW, WSTRIDE, R: gl.constexpr, S: gl.constexpr, BM: gl.constexpr,
                BN: gl.constexpr, BK: gl.constexpr, x_layout: gl.constexpr,
                w_layout: gl.constexpr):
    """In a persistent program: cp.async reduction step (tap, lane0) of `tile` (`_load_step`),
    and return the step after it, (tile, tap, lane0) and the tile's origins (`_tile_origins`):
    the tile's next step, or past its last the first of the program's next tile (`programs`
    on), its origins made; past the program's last tile, a tap past R * S (its loads masked
    off), which no later step brings back."""
    tap, lane0 = _load_step(x_ptr, w_ptr, x_slot, w_slot, tap, lane0, row_base, taps_inside, j_x,
                            k_w, j_w, blocks, W, C, DH, DW, WSTRIDE, R, S, BK, False)
    if tap == R * S:
        tile += programs
        tap = gl.where(tile < tiles, 0, R * S + 1)
        pid_m, pid_n, g = _tile_ids(tile, tiles_m, tiles_mn)
        row_base, taps_inside, k_w = _tile_origins(pid_m, pid_n, g, M, H, W, OH, OW, C, CG, KG,
                                                   SH, SW, PH, PW, DH, DW, R, S, BM, BN,
                                                   x_layout, w_layout)
    return tile, tap, lane0, row_base, taps_inside, k_w


@gluon.jit
def _persistent_tiles(x_ptr, w_ptr, out_ptr, corr_ptr, bias_ptr, mult_ptr, SPAN, WSTRIDE, M, H,
                      W, OH, OW, C, K, CG, KG, SH, SW, PH, PW, DH, DW, out_zp, lo, hi,
                      R: gl.constexpr, S: gl.constexpr, X_UNSIGNED: gl.constexpr,
                      BORDER: gl.constexpr, BM: gl.constexpr, BN: gl.constexpr,
                      BK: gl.constexpr, STAGES: gl.constexpr):
    """`conv_gemm_wgmma_kernel` with programs that take the output's tiles in turn (a 1-D grid of
    at most one program a tile: tiles program id, + programs, ... in `_tile_ids`' order), each
    program's steps one flat pipeline over its tiles: the loads run STAGES - 1 steps ahead of
    the wgmma across a tile's end, so that the next tile's first loads land while a tile's last
    wgmma and its epilogue run, where a program per tile starts each tile with its pipeline
    empty and ends it with its loads done. For layers of short reductions and many tiles (a 1x1
    of 64 channels: a step a tile)."""
    warps: gl.constexpr = gl.num_warps()
    layout: gl.constexpr = _load_layout(BK, warps)  # the activations' loads and the weights'
    acc_layout: gl.constexpr = _accumulator_layout(BM, BN, warps)
    x_slots, w_slots = _operand_slots(BM, BN, BK, STAGES)
    tiles_m = (M + BM - 1) // BM
    tiles_mn = tiles_m * (KG // BN)
    tiles = tiles_mn * (K // KG)
    programs = gl.num_programs(0)
    tile = gl.program_id(0)
    blocks = SPAN // BK
    steps = R * S * blocks
    lanes = gl.arange(0, BK, gl.SliceLayout(0, layout))  # of a block, either operand's

    # the loads' step, STAGES - 1 ahead: its tile, that tile's origins, its tap and first lane
    tile_ahead = tile
    pid_m, pid_n, g = _tile_ids(tile, tiles_m, tiles_mn)
    row_base, taps_inside, k_w = _tile_origins(pid_m, pid_n, g, M, H, W, OH, OW, C, CG, KG, SH,
                                               SW, PH, PW, DH, DW, R, S, BM, BN, layout,
                                               layout)
    tap_ahead = 0
    lane0_ahead = 0
    for step in gl.static_range(STAGES - 1):  # the pipeline's first loads
        tile_ahead, tap_ahead, lane0_ahead, row_base, taps_inside, k_w = _load_ahead(
            x_ptr, w_ptr, x_slots.index(step), w_slots.index(step), tile_ahead, tap_ahead,
            lane0_ahead, row_base, taps_inside, k_w, lanes, lanes, programs, tiles, tiles_m,
            tiles_mn, blocks, M, H, W, OH, OW, C, CG, KG, SH, SW, PH, PW, DH, DW, WSTRIDE, R, S,
            BM, BN, BK, layout, layout)
    _rows, k, acc = _tile_start(corr_ptr, pid_m, pid_n, g, True, M, OH, OW, K, KG, BORDER, BM,
                                BN, acc_layout)
    done = 0  # steps of `tile` done
    for step in range((tiles - tile + programs - 1) // programs * steps):
        acc = _mma_step(x_slots, w_slots, step % STAGES, acc, X_UNSIGNED, STAGES, layout)
        ahead = (step + STAGES - 1) % STAGES  # loaded while this step's wgmma runs
        tile_ahead, tap_ahead, lane0_ahead, row_base, taps_inside, k_w = _load_ahead(
            x_ptr, w_ptr, x_slots.index(ahead), w_slots.index(ahead), tile_ahead, tap_ahead,
            lane0_ahead, row_base, taps_inside, k_w, lanes, lanes, programs, tiles, tiles_m,
            tiles_mn, blocks, M, H, W, OH, OW, C, CG, KG, SH, SW, PH, PW, DH, DW, WSTRIDE, R, S,
            BM, BN, BK, layout, layout)
        done += 1
        if done == steps:  # the tile's sums whole: requantized and stored, the next one begun
            acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
            _requantize_store(acc, out_ptr, bias_ptr, mult_ptr, k, pid_m * BM,
                              g * KG + pid_n * BN, M, K, out_zp, lo, hi, BM, BN)
            tile += programs
            done = 0
            pid_m, pid_n, g = _tile_ids(tile, tiles_m, tiles_mn)
            _rows, k, acc = _tile_start(corr_ptr, pid_m, pid_n, g, tile < tiles, M, OH, OW, K,
                                        KG, BORDER, BM, BN, acc_layout)
    async_copy.wait_group(0)  # no copy (zero-filling, past the last tile) outlives the program


@gluon.jit(do_not_specialize=kernels.GEOMETRY)
def conv_gemm_wgmma_kernel(x_ptr, w_ptr, out_ptr, corr_ptr, bias_ptr, mult_ptr, partial_ptr,
                           counter_ptr, SPAN, WSTRIDE,
                           M, H, W, OH, OW, C, K, CG, KG, SH, SW, PH, PW, DH, DW,
                           out_zp, lo, hi,
                           R: gl.constexpr, S: gl.constexpr, X_UNSIGNED: gl.constexpr,
                           BORDER: gl.constexpr,
                           BM: gl.constexpr, BN: gl.constexpr, BK: gl.constexpr,
                           STAGES: gl.constexpr, SPLIT: gl.constexpr,
                           L1_REUSE: gl.constexpr, PERSIST: gl.constexpr):
    """The conv as a GEMM of a tap per pixel: weights [K, R * S, WSTRIDE] as `layout` packs them;
    SPAN (a tap's channels, CG) a multiple of BK and KG of BN. A program per output tile, or
    SPLIT per tile (split-K), with or without L1_REUSE (`_program_per_tile`); or, with PERSIST
    (the grid's programs an SM; the kernel reads only whether it is 0), a 1-D grid of programs
    that take the tiles in turn, their pipelines running on from tile to tile
    (`_persistent_tiles`). The epilogue as `kernels._requantize` computes it: (acc - corr + bias)
    * mult, rounded half to even (`_requantize_store`), plus the output zero point, clamped to
    [lo, hi]."""
    if PERSIST > 0:
        _persistent_tiles(x_ptr, w_ptr, out_ptr, corr_ptr, bias_ptr, mult_ptr, SPAN, WSTRIDE, M,
                          H, W, OH, OW, C, K, CG, KG, SH, SW, PH, PW, DH, DW, out_zp, lo, hi, R,
                          S, X_UNSIGNED, BORDER, BM, BN, BK, STAGES)
    else:
        _program_per_tile(x_ptr, w_ptr, out_ptr, corr_ptr, bias_ptr, mult_ptr, partial_ptr,
                          counter_ptr, SPAN, WSTRIDE, M, H, W, OH, OW, C, K, CG, KG, SH, SW, PH,
                          PW, DH, DW, out_zp, lo, hi, R, S, X_UNSIGNED, BORDER, BM, BN, BK,
                          STAGES, SPLIT, L1_REUSE)


@gluon.constexpr_function
def _row_layout(columns, warps):
    """A [rows, columns] int8 tile's layout of a row a thread, 32 rows a warp: a row's bytes, at
    any alignment, are one thread's loads, its index arithmetic done once."""
    return gl.BlockedLayout([1, columns], [32, 1], [warps, 1], [1, 0])


@gluon.jit
def _row_lanes(x_ptr, r, lane0, row_base, m_ok, ih0, lanes_lo, lanes_hi, j_x, H, W, C, DH,
               R: gl.constexpr, LANES: gl.constexpr, X_UNSIGNED: gl.constexpr):
    """The rows' lanes [lane0, lane0 + BK) of kernel row r (none past R), int8, a row a thread.
    Lanes outside the image or past the span hold 0, for quint8 flipped to OUTSIDE_UNSIGNED, as
    `kernels.conv_gemm_kernel` has them. Each lane's bounds are constants against its row's."""
    ih = ih0 + r * DH
    lo = lanes_lo - lane0
    hi = gl.where(m_ok & (ih >= 0) & (ih < H) & (r < R), lanes_hi - lane0, 0)
    inside = (j_x[None, :] < LANES) & (j_x[None, :] >= lo[:, None]) & (j_x[None, :] < hi[:, None])
    x = gl.load(x_ptr + (row_base + r * DH * W * C + lane0)[:, None] + j_x[None, :], mask=inside,
                other=0)
    if X_UNSIGNED:  # quint8 v as int8 v - 128
        x = x.to(gl.int8, bitcast=True) ^ -128
    return x


@gluon.jit(do_not_specialize=kernels.GEOMETRY)
def conv_merged_wgmma_kernel(x_ptr, w_ptr, out_ptr, corr_ptr, bias_ptr, mult_ptr,
                             SPAN: gl.constexpr, WSTRIDE,
                             M, H, W, OH, OW, C, K, CG, KG, SH, SW, PH, PW, DH, DW,
                             out_zp, lo, hi,
                             R: gl.constexpr, S: gl.constexpr, X_UNSIGNED: gl.constexpr,
                             BORDER: gl.constexpr,
                             BM: gl.constexpr, BN: gl.constexpr, BK: gl.constexpr,
                             STAGES: gl.constexpr):
    """`conv_gemm_wgmma_kernel` for merged kernel rows (`kernels.conv_gemm_kernel`'s MERGE_S,
    where `layout` merges them: groups == 1, unit width dilation): a tap is kernel row r, its
    SPAN lanes the S pixels' C channels, contiguous in memory but at any alignment (conv1's 7
    pixels of 3 channels), so no cp.async can load them. A program per output tile (row tile,
    channel tile); weights [K, R, WSTRIDE], BK dividing WSTRIDE and BN dividing K; BM 32 rows a
    warp; SPAN a compile-time constant (a variant per span: a few a suite), so that the lanes
    past a one-block tap cost nothing. A row's lanes are its thread's byte loads, issued a step
    ahead so that they run beside a step, masked to the pixels inside the image and stored to
    the step's slot (quint8 flipped first); the weights come by cp.async STAGES - 1 steps ahead.
    Both operands reach the tensor cores from shared memory, so a step waits only for the
    previous step's wgmma, for either activation type."""
    pid_m = gl.program_id(0)
    pid_n = gl.program_id(1)
    warps: gl.constexpr = gl.num_warps()
    row_layout: gl.constexpr = _row_layout(BK, warps)
    w_layout: gl.constexpr = _load_layout(BK, warps)
    acc_layout: gl.constexpr = _accumulator_layout(BM, BN, warps)
    x_slots, w_slots = _operand_slots(BM, BN, BK, STAGES)

    m_ok, ih0, iw0, row_base = _window_origins(pid_m, M, H, W, OH, OW, C, SH, SW, PH, PW, BM,
                                               gl.SliceLayout(1, row_layout))
    # a row's lanes of pixels inside the image's width, [lanes_lo, lanes_hi): made once, so
    # that a step compares lanes instead of dividing them into pixels
    lanes_lo = gl.maximum(-iw0, 0) * C
    lanes_hi = gl.minimum(W - iw0, S) * C
    j_x = gl.arange(0, BK, gl.SliceLayout(0, row_layout))
    k_w = pid_n * BN + gl.arange(0, BN, gl.SliceLayout(1, w_layout))
    j_w = gl.arange(0, BK, gl.SliceLayout(0, w_layout))
    blocks = WSTRIDE // BK  # a tap's, as BK divides its stride: the span's blocks, rounded up
    steps = R * blocks
    # a block's lanes that can be inside a tap: all, or where one block takes a tap, its span
    # (conv1's 21 of 32: the rest need neither loads nor bounds)
    lanes: gl.constexpr = SPAN if SPAN <= BK else BK

    r_ahead = 0  # the weights' step, STAGES - 1 ahead: its kernel row and first lane
    lane0_ahead = 0
    for step in gl.static_range(STAGES - 1):  # the pipeline's first weights
        _copy_weights(w_ptr, w_slots.index(step), r_ahead, lane0_ahead, k_w, j_w, WSTRIDE, R, BK)
        async_copy.commit_group()
        r_ahead, lane0_ahead = _next_block(r_ahead, lane0_ahead, blocks, BK)
    r_next = 0  # the lanes' step, one ahead
    lane0_next = 0
    x = _row_lanes(x_ptr, r_next, lane0_next, row_base, m_ok, ih0, lanes_lo, lanes_hi, j_x, H, W,
                   C, DH, R, lanes, X_UNSIGNED)
    _rows, k, acc = _tile_start(corr_ptr, pid_m, pid_n, 0, True, M, OH, OW, K, KG, BORDER, BM,
                                BN, acc_layout)
    for step in range(steps):
        slot = step % STAGES
        # the next step's lanes, loaded while this step runs
        r_next, lane0_next = _next_block(r_next, lane0_next, blocks, BK)
        x_next = _row_lanes(x_ptr, r_next, lane0_next, row_base, m_ok, ih0, lanes_lo, lanes_hi,
                            j_x, H, W, C, DH, R, lanes, X_UNSIGNED)
        # the slot's last wgmma, STAGES steps back, ended before the barrier of the step after it
        x_slot = x_slots.index(slot)
        x_slot.store(x)
        fence_async_shared()  # the stores, before the wgmma reads them
        async_copy.wait_group(STAGES - 2)  # this thread's weights of `step` have landed
        _barrier()  # and every thread's, with their stores
        w_slot = w_slots.index(slot).permute((1, 0))
        acc = warpgroup_mma(x_slot, w_slot, acc, is_async=True)
        # the previous step's wgmma done: its slot, (step + STAGES - 1) % STAGES, is free
        acc, _, _ = warpgroup_mma_wait(num_outstanding=1, deps=(acc, x_slot, w_slot))
        _barrier()  # in every warp: each warp's part of a wgmma reads all of a slot
        _copy_weights(w_ptr, w_slots.index((step + STAGES - 1) % STAGES), r_ahead, lane0_ahead,
                      k_w, j_w, WSTRIDE, R, BK)
        async_copy.commit_group()
        r_ahead, lane0_ahead = _next_block(r_ahead, lane0_ahead, blocks, BK)
        x = x_next
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
    async_copy.wait_group(0)  # no copy (zero-filling, past `steps`) outlives the program
    _requantize_store(acc, out_ptr, bias_ptr, mult_ptr, k, pid_m * BM, pid_n * BN, M, K, out_zp,
                      lo, hi, BM, BN)
