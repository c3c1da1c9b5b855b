"""Triton kernels of the quantized conv: NHWC int8 activations, weights as `layout` packs them.

Both kernels compute acc = sum over the window of (x - zx)(w - zw[k]) exactly in int32, as
    sum x w  -  zw[k] sum x  -  zx sum (w - zw[k])
over the taps inside the image: in the GEMM kernel padded positions and channels past C/groups
are loaded as 0, so that the activation tiles go straight from memory to the tensor cores, and the
last term comes from a table made once per shape (`corr_ptr`: per output position and channel
where padding makes it vary, else per channel); the direct kernel's padded positions hold zx
instead, so that its table is per channel. quint8 activations enter as x - 128 with zx - 128;
in the GEMM kernel without weight zero points their padded lanes then hold OUTSIDE_UNSIGNED (the
loaded 0 less 128), which adds OUTSIDE_UNSIGNED * sum over the padded taps of w to acc: the table
holds that too (`outside_value`).
The epilogue requantizes in the reference's float32 order and rounds half to even by adding
ROUNDING_BIAS, with the float32 addition's own rounding: the same arithmetic compiled and in
Triton's interpreter (which has neither libdevice's rint nor inline PTX), and no conversion.

Only the tile sizes, the kernel's R and S and a few flags are compile-time constants, so that a
suite's many shapes share a handful of compiled variants. `conv_gemm_kernel`: implicit GEMM, rows
N*OH*OW, columns K/groups per group, reduction over (R, S, C/groups) with `tl.dot` (int8 x int8 ->
int32), weights [K, R, S, C/groups]. `conv_direct_kernel`: multiply-accumulate per output
channel, weights [R, S, C/groups, K], for depthwise and narrow groups, where a GEMM degenerates.
Their configs, which a problem tries, and their autotuned launches: `tuning`.
"""

from __future__ import annotations

import triton
import triton.language as tl

OUTSIDE_UNSIGNED = -128  # what padded lanes hold for quint8 without weight zero points
SPIN_LIMIT = tl.constexpr(1 << 22)  # reads of a counter a shared tile's last program waits for
# 1.5 * 2^23. A float32 in [2^23, 2^24) has no fraction bits, so adding this to a value of magnitude
# at most 2^22 rounds the value to an integer, half to even, and the sum's low mantissa bits hold
# that integer in two's complement: its low byte is the int8 or uint8 the integer is.
ROUNDING_BIAS = tl.constexpr(12582912.0)
# tiles of more elements are heavy: the GEMM kernel adds a shared tile's partials by quarters,
# and tuning keeps merged rows off them (their per-byte bounds checks spilled registers)
HEAVY_TILE_LIMIT = 128 * 128
HEAVY_TILE_ELEMENTS = tl.constexpr(HEAVY_TILE_LIMIT)  # the same, as the GEMM kernel reads it


def outside_value(unsigned: bool, has_weight_zero_points: bool) -> int:
    """The value that the GEMM kernels' lanes outside the image (padding) hold, as int8: 0, or
    for quint8 activations without weight zero points OUTSIDE_UNSIGNED."""
    return OUTSIDE_UNSIGNED if unsigned and not has_weight_zero_points else 0


# Triton compiles a variant per argument divisible by 16 or equal to 1 unless told not to: the
# image sizes, strides, paddings and dilations gain nothing from it (the loads' widths come from
# the channel counts), and ResNet-50's layers then share 3 variants instead of 5, each compiled
# for every tuning config.
GEOMETRY = ["H", "W", "OH", "OW", "SH", "SW", "PH", "PW", "DH", "DW"]


@triton.jit
def _channel_terms(m, m_ok, k, k_ok, corr_ptr, wzp_ptr, bias_ptr, mult_ptr, OHW, K,
                   BORDER: tl.constexpr, HAS_WZP: tl.constexpr):
    """What the epilogue needs of output channels k besides the sums, loaded, each shaped to
    broadcast over rows m: the compensation table's entries (see the module's docstring; per row
    and channel with BORDER, from [OH * OW, K]; else from [K]), zw[k] (0 without HAS_WZP),
    f32(b / aw) (zeros without a bias) and f32(aw / s_y)."""
    if BORDER:
        corr = tl.load(corr_ptr + (m % OHW)[:, None] * K + k[None, :],
                       mask=m_ok[:, None] & k_ok[None, :], other=0)
    else:
        corr = tl.load(corr_ptr + k, mask=k_ok, other=0)[None, :]
    if HAS_WZP:
        wzp = tl.load(wzp_ptr + k, mask=k_ok, other=0)[None, :]
    else:
        wzp = 0
    bias = tl.load(bias_ptr + k, mask=k_ok, other=0.0)[None, :]
    mult = tl.load(mult_ptr + k, mask=k_ok, other=0.0)[None, :]
    return corr, wzp, bias, mult


@triton.jit
def _requantize(acc, xsum, terms, out_zp, lo, hi, HAS_WZP: tl.constexpr):
    """The outputs of sums acc (row sums of x: xsum), each the low byte of an int32: acc less the
    compensation and zw[k] xsum (see the module's docstring), requantized with `_channel_terms`'s
    terms in the reference's float32 order, v = (acc + bias) * mult, then
    clamp(round_half_even(v) + out_zp, lo, hi), computed as the equal
    round_half_even(clamp(v, lo - out_zp, hi - out_zp)) + out_zp: the clamped value is small and
    lo, hi and out_zp are integers, so adding ROUNDING_BIAS rounds it, then out_zp is added
    exactly (added first, the tie would go to the sum's even, not v's). The clamp between the
    multiply and the addition keeps the compiler from fusing the two into one rounding."""
    corr, wzp, bias, mult = terms
    acc -= corr
    if HAS_WZP:
        acc -= xsum * wzp
    v = (acc.to(tl.float32) + bias) * mult
    v = tl.minimum(tl.maximum(v, lo - out_zp), hi - out_zp)
    return ((v + ROUNDING_BIAS) + out_zp).to(tl.int32, bitcast=True)


@triton.jit
def _store(q, m, m_ok, k, k_ok, out_ptr, K):
    """Outputs q (`_requantize`'s) of rows m and channels k into the NHWC output."""
    tl.store(out_ptr + m[:, None] * K + k[None, :], q.to(out_ptr.dtype.element_ty),
             mask=m_ok[:, None] & k_ok[None, :])


@triton.jit
def _channels_inside(kg, KG, EVEN_N: tl.constexpr):
    """Which of a group's output channels kg are below KG: all, known to the compiler (no masks),
    with EVEN_N (tiles that divide the group's channels)."""
    return (kg < KG) | EVEN_N


@triton.jit
def _output_pixels(pid_m, M, OH, OW, BM: tl.constexpr):
    m = pid_m * BM + tl.arange(0, BM)
    ow = m % OW
    t = m // OW
    return m, m < M, t // OH, t % OH, ow


@triton.jit
def _input_pixel(n, oh, ow, m_ok, r, s, H, W, SH, SW, PH, PW, DH, DW):
    """(NHWC pixel index, inside the image) of kernel tap (r, s) for each output pixel."""
    ih = oh * SH - PH + r * DH
    iw = ow * SW - PW + s * DW
    inside = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    return (n * H + ih) * W + iw, inside


@triton.jit
def _halves(tile, BM: tl.constexpr, BN: tl.constexpr):
    """A [BM, BN] tile's columns [0, BN/2) and [BN/2, BN), as two [BM, BN/2] tiles."""
    return tl.split(tl.permute(tl.reshape(tile, (BM, 2, BN // 2)), (0, 2, 1)))


@triton.jit
def _column_pieces(tile, BM: tl.constexpr, BN: tl.constexpr, PIECES: tl.constexpr):
    """A [BM, BN] tile's PIECES (1, 2 or 4) runs of BN/PIECES columns, in order, as a tuple of
    [BM, BN/PIECES] tiles."""
    if PIECES == 1:
        pieces = (tile,)
    else:
        left, right = _halves(tile, BM, BN)
        if PIECES == 2:
            pieces = (left, right)
        else:
            first, second = _halves(left, BM, BN // 2)
            third, fourth = _halves(right, BM, BN // 2)
            pieces = (first, second, third, fourth)
    return pieces


@triton.jit
def _add_partials(acc, m, m_ok, k, k_ok, partial_ptr, slot, count, M, K):
    """acc plus the partial sums of rows m and channels k in the `count` slots but `slot`."""
    in_slab = m[:, None] * K + k[None, :]
    for other in range(0, count):
        if other != slot:  # .cg: from L2, where the others' stores are
            acc += tl.load(partial_ptr + other * M * K + in_slab,
                           mask=m_ok[:, None] & k_ok[None, :], other=0, cache_modifier=".cg")
    return acc


@triton.jit
def _tile_sums(x_ptr, w_ptr, pid_m, pid_n, g, first, last, blocks, SPAN, WSTRIDE,
               M, H, W, OH, OW, C, CG, KG, SH, SW, PH, PW, DH, DW,
               R: tl.constexpr, S: tl.constexpr, X_UNSIGNED: tl.constexpr,
               HAS_WZP: tl.constexpr, MERGE_S: tl.constexpr, EVEN_N: tl.constexpr,
               EVEN_SPAN: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """The int32 sums over reduction steps [first, last) of output tile (pid_m, pid_n) of group
    g (see `conv_gemm_kernel`): acc [BM, BN] and, with HAS_WZP, the rows' activation sums xsum
    [BM]. One flat loop over BK-wide blocks of taps, so that Triton pipelines its loads."""
    m, m_ok, n, oh, ow = _output_pixels(pid_m, M, OH, OW, BM)
    kg = pid_n * BN + tl.arange(0, BN)
    k = g * KG + kg
    if MERGE_S:
        taps_per_row: tl.constexpr = 1
    else:
        taps_per_row: tl.constexpr = S
    ih0 = oh * SH - PH
    iw0 = ow * SW - PW
    # Without merged rows, up to 32 taps: each row's pixel less its tap's offset (the same for
    # every row), and a bit per tap inside the image, made once, so that a step tests a bit
    # instead of bounds (`compile_check`, sm_90: a quarter fewer instructions a step, 136 instead
    # of 182 for 64x128x128 on 4 warps)
    tap_bits: tl.constexpr = R * S <= 32
    if not MERGE_S and tap_bits:
        row_base = ((n * H + ih0) * W + iw0) * C + g * CG
        taps_inside = tl.zeros([BM], dtype=tl.int32)
        for tap_r in tl.static_range(R):
            for tap_s in tl.static_range(S):
                tap_h = ih0 + tap_r * DH
                tap_w = iw0 + tap_s * DW
                tap_ok = m_ok & (tap_h >= 0) & (tap_h < H) & (tap_w >= 0) & (tap_w < W)
                taps_inside |= tap_ok.to(tl.int32) << (tap_r * S + tap_s)
    acc = tl.zeros([BM, BN], dtype=tl.int32)
    xsum = tl.zeros([BM], dtype=tl.int32)
    w_rows_ok = _channels_inside(kg, KG, EVEN_N)
    tap = first // blocks  # (tap, block) of the step, carried instead of divided out each step
    block = first - tap * blocks
    for _step in range(first, last):
        j = block * BK + tl.arange(0, BK)
        if EVEN_SPAN:  # blocks end where taps end: every lane inside (the weights' too)
            j_ok = tl.full([BK], 1, tl.int1)
            w_lanes_ok = j_ok
        else:
            j_ok = j < SPAN
            w_lanes_ok = j < WSTRIDE
        r = tap // taps_per_row
        # outside reads 0: for qint8 the tile goes as loaded to the tensor cores. Masked int8
        # loads take `other=0` only: Triton 3.6 packs another value wrongly into vector loads
        # (0xffffff80 for four bytes of 128, seen in the PTX and on an H200).
        if MERGE_S:  # lane j is channel j % C of the row's pixel j // C: contiguous bytes
            ih = ih0 + r * DH
            iw = iw0[:, None] + (j // C)[None, :]
            inside = (m_ok & (ih >= 0) & (ih < H))[:, None] & (iw >= 0) & (iw < W) & j_ok[None, :]
            row_start = ((n * H + ih) * W + iw0) * C
            x = tl.load(x_ptr + row_start[:, None] + j[None, :], mask=inside, other=0)
        elif tap_bits:
            tap_offset = (r * DH * W + (tap - r * S) * DW) * C
            inside = (((taps_inside >> tap) & 1) != 0)[:, None] & j_ok[None, :]
            x = tl.load(x_ptr + row_base[:, None] + (tap_offset + j)[None, :], mask=inside,
                        other=0)
        else:
            ih = ih0 + r * DH
            iw = iw0 + (tap - r * S) * DW
            inside = (m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W))[:, None] & j_ok[None, :]
            offsets = (((n * H + ih) * W + iw) * C + g * CG)[:, None] + j[None, :]
            x = tl.load(x_ptr + offsets, mask=inside, other=0)
        if X_UNSIGNED:  # quint8 v as int8 v - 128: flip the top bit
            x = x.to(tl.int8, bitcast=True) ^ -128
            # the lanes outside now hold -128 (OUTSIDE_UNSIGNED), which the compensation table
            # takes into account; the row sums of HAS_WZP must not see them. (Selecting 0
            # instead cost the tensor cores their register operand: Triton then stored the tile
            # back to shared memory, a step took 220 instructions instead of 123 at 128x128x64.)
            if HAS_WZP:
                x = tl.where(inside, x, 0)
        # [BN, BK], the reduction contiguous: int8 tensor-core operands must be K-major
        w = tl.load(w_ptr + k[:, None] * (R * taps_per_row * WSTRIDE)
                    + (tap * WSTRIDE + j)[None, :],
                    mask=w_rows_ok[:, None] & w_lanes_ok[None, :], other=0)
        acc += tl.dot(x, tl.trans(w), out_dtype=tl.int32)
        if HAS_WZP:
            xsum += tl.sum(x.to(tl.int32), axis=1)
        wrap = block + 1 == blocks  # selects, not an `if`: Triton pipelines no loop with one
        tap = tl.where(wrap, tap + 1, tap)
        block = tl.where(wrap, 0, block + 1)
    return acc, xsum


@triton.jit
def _wait_for(counter_ptr, target):
    """Spin until the int32 at `counter_ptr` reaches `target` (acquire: what was released before
    it counted is seen after), reading it SPIN_LIMIT times at most: a guard against a hang should
    the counters ever be wrong, which would show as wrong outputs instead."""
    seen = tl.atomic_add(counter_ptr, 0, sem="acquire")
    spins = 0
    while (seen < target) & (spins < SPIN_LIMIT):
        seen = tl.atomic_add(counter_ptr, 0, sem="acquire")
        spins += 1


@triton.jit
def _finish_tile(acc, xsum, pid_m, pid_n, g, tile, slot, count, out_ptr, corr_ptr, wzp_ptr,
                 bias_ptr, mult_ptr, partial_ptr, counter_ptr, M, OH, OW, K, KG,
                 out_zp, lo, hi, BORDER: tl.constexpr, HAS_WZP: tl.constexpr,
                 SHARED: tl.constexpr, EVEN_N: tl.constexpr, BM: tl.constexpr,
                 BN: tl.constexpr):
    """Requantize and store tile (pid_m, pid_n) of group g from its sums acc (and xsum). Where
    `count` programs share it (SHARED: see `qbench_triton.stream`), each claims a turn at the
    tile's first counter: all but the last store their partials in their `slot` and count them
    done at the second counter; the last waits for that count (the others have claimed, so they
    are running, and their stores wait on nothing: no deadlock), adds their partials to its own
    and requantizes, and sets both counters back to zero. So the last, which holds its sums
    through the epilogue, never stores them (held across a store, 128x256 tiles spilled). Up to
    HEAVY_TILE_LIMIT elements it loads the others' partials of the whole tile at once, one trip
    to L2 instead of one per quarter (ptxas: 246 registers for 64x128 on 4 warps, still two
    programs an SM); larger tiles add them by quarters, within registers.

    The epilogue takes a quarter of the tile's columns at a time, but no fewer than 32: held in
    the tensor cores' layout, a whole tile's per-channel terms took registers (ptxas: 218 a
    thread for 128x128 tiles, 128 in quarters; 128x256 spilled), while each row of a piece is
    one store, and under 32 columns that store fills part of a 32-byte sector (a 32-wide tile
    in quarters stored each row in four 8-byte pieces, each after a trip through shared
    memory)."""
    m, m_ok, _, _, _ = _output_pixels(pid_m, M, OH, OW, BM)
    last = count <= 1
    if SHARED:
        if count > 1:
            last = tl.atomic_add(counter_ptr + 2 * tile, 1, sem="relaxed") == count - 1
            if last:
                _wait_for(counter_ptr + 2 * tile + 1, count - 1)
                if BM * BN <= HEAVY_TILE_ELEMENTS:  # the others' partials at once
                    kg = pid_n * BN + tl.arange(0, BN)
                    acc = _add_partials(acc, m, m_ok, g * KG + kg, _channels_inside(kg, KG, EVEN_N),
                                        partial_ptr, slot, count, M, K)
            else:
                kg = pid_n * BN + tl.arange(0, BN)
                tl.store(partial_ptr + slot * M * K + m[:, None] * K + (g * KG + kg)[None, :],
                         acc, mask=m_ok[:, None] & _channels_inside(kg, KG, EVEN_N)[None, :])
                tl.debug_barrier()  # every thread's partials stored before the release below
                tl.atomic_add(counter_ptr + 2 * tile + 1, 1, sem="release")
    if last:
        count_pieces: tl.constexpr = 4 if BN >= 128 else (2 if BN >= 64 else 1)
        width: tl.constexpr = BN // count_pieces
        pieces = _column_pieces(acc, BM, BN, count_pieces)
        first_kg = pid_n * BN + tl.arange(0, width)
        # Loads after a store wait for it (they might read what it wrote), so piece by piece
        # the channel terms cost a trip to L2 each: up to 128x128 tiles the next piece's are
        # loaded before this piece is stored (larger tiles spilled registers holding both).
        prefetch: tl.constexpr = BM * BN <= HEAVY_TILE_ELEMENTS
        terms = _channel_terms(m, m_ok, g * KG + first_kg, _channels_inside(first_kg, KG, EVEN_N),
                               corr_ptr, wzp_ptr, bias_ptr, mult_ptr, OH * OW, K, BORDER, HAS_WZP)
        for i in tl.static_range(count_pieces):
            piece_kg = first_kg + i * width
            piece_ok = _channels_inside(piece_kg, KG, EVEN_N)
            if not prefetch and i > 0:
                terms = _channel_terms(m, m_ok, g * KG + piece_kg, piece_ok, corr_ptr, wzp_ptr,
                                       bias_ptr, mult_ptr, OH * OW, K, BORDER, HAS_WZP)
            piece = pieces[i]
            if SHARED and BM * BN > HEAVY_TILE_ELEMENTS:
                piece = _add_partials(piece, m, m_ok, g * KG + piece_kg, piece_ok, partial_ptr,
                                      slot, count, M, K)
            q = _requantize(piece, xsum[:, None], terms, out_zp, lo, hi, HAS_WZP)
            if prefetch and i < count_pieces - 1:
                next_kg = piece_kg + width
                terms = _channel_terms(m, m_ok, g * KG + next_kg,
                                       _channels_inside(next_kg, KG, EVEN_N), corr_ptr, wzp_ptr,
                                       bias_ptr, mult_ptr, OH * OW, K, BORDER, HAS_WZP)
            _store(q, m, m_ok, g * KG + piece_kg, piece_ok, out_ptr, K)
        if SHARED:
            if count > 1:  # ready for the next launch
                tl.atomic_xchg(counter_ptr + 2 * tile, 0)
                tl.atomic_xchg(counter_ptr + 2 * tile + 1, 0)


@triton.jit(do_not_specialize=GEOMETRY + ["PROGRAMS_PER_SM"])
def conv_gemm_kernel(x_ptr, w_ptr, out_ptr, corr_ptr, wzp_ptr, bias_ptr, mult_ptr,
                     partial_ptr, counter_ptr, SPAN, WSTRIDE,
                     M, H, W, OH, OW, C, K, CG, KG, SH, SW, PH, PW, DH, DW,
                     out_zp, lo, hi, PROGRAMS_PER_SM,
                     R: tl.constexpr, S: tl.constexpr, X_UNSIGNED: tl.constexpr,
                     HAS_WZP: tl.constexpr, BORDER: tl.constexpr, MERGE_S: tl.constexpr,
                     SHARED: tl.constexpr, EVEN_N: tl.constexpr, EVEN_SPAN: tl.constexpr,
                     BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """The reduction runs over BK-wide blocks of taps. A tap is (r, s) with its group's CG
    channels, or with MERGE_S (groups == 1 and unit width dilation; qbench_triton.layout decides)
    a whole kernel row r: its S pixels' channels lie side by side in NHWC, so the row is S*C
    contiguous bytes, which wastes less of a block when C is small (conv1: C = 3), at a bounds
    check per byte instead of per pixel. Such a row starts at any byte, so it is loaded a byte at
    a time. (Loaded as the aligned 32-bit words around it and shifted into place, it pipelined
    but took 733 instructions a step, and on an H200 conv1, a 1x1 of 24 channels and a 3x3 of 30
    ran 1.5 to 1.8 times as long: results/h200-2026-11-27-6dbf4bd/merged-rows.) SPAN is a tap's
    channels (`Layout.span`: CG, or S*C with MERGE_S), WSTRIDE the weights' elements per tap
    (`Layout.tap_stride`: SPAN zero-padded to a multiple of 16, so that they are vector loads, a
    merged row's to a multiple of 32).

    Without SHARED, a program per output tile: (row tile, channel tile, group) = program ids.
    With SHARED (stream-K, `qbench_triton.stream`), a 1-D grid of programs that divide all tiles'
    steps evenly, tiles numbered row tile fastest, then channel tile, then group; the partials
    `partial_ptr` ([slots, M, K]) and the tiles' counters `counter_ptr` ([tiles, 2], zeros, left
    zeros) are used then only. PROGRAMS_PER_SM is the grid's (`qbench_triton._gemm_grid`), not
    read here."""
    if MERGE_S:
        taps: tl.constexpr = R
    else:
        taps: tl.constexpr = R * S
    blocks = tl.cdiv(SPAN, BK)
    steps = taps * blocks
    if SHARED:
        tiles_m = tl.cdiv(M, BM)
        tiles_mn = tiles_m * tl.cdiv(KG, BN)
        total = tiles_mn * (K // KG) * steps
        programs = tl.num_programs(0)
        start = tl.program_id(0) * total // programs
        end = (tl.program_id(0) + 1) * total // programs
        for tile in range(start // steps, tl.cdiv(end, steps)):
            first = tl.maximum(start - tile * steps, 0)
            last = tl.minimum(end - tile * steps, steps)
            # the programs of this tile: the one with its first step, and how many share it
            # (`stream.first_program`)
            owner = ((tile * steps + 1) * programs - 1) // total
            count = ((tile + 1) * steps * programs - 1) // total - owner + 1
            pid_m = tile % tiles_m
            pid_n = tile % tiles_mn // tiles_m
            g = tile // tiles_mn
            acc, xsum = _tile_sums(x_ptr, w_ptr, pid_m, pid_n, g, first, last, blocks, SPAN,
                                   WSTRIDE, M, H, W, OH, OW, C, CG, KG, SH, SW, PH, PW, DH, DW,
                                   R, S, X_UNSIGNED, HAS_WZP, MERGE_S, EVEN_N, EVEN_SPAN,
                                   BM, BN, BK)
            _finish_tile(acc, xsum, pid_m, pid_n, g, tile, tl.program_id(0) - owner, count,
                         out_ptr, corr_ptr, wzp_ptr, bias_ptr, mult_ptr, partial_ptr,
                         counter_ptr, M, OH, OW, K, KG, out_zp, lo, hi, BORDER, HAS_WZP, SHARED,
                         EVEN_N, BM, BN)
    else:
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        g = tl.program_id(2)
        acc, xsum = _tile_sums(x_ptr, w_ptr, pid_m, pid_n, g, 0, steps, blocks, SPAN, WSTRIDE,
                               M, H, W, OH, OW, C, CG, KG, SH, SW, PH, PW, DH, DW,
                               R, S, X_UNSIGNED, HAS_WZP, MERGE_S, EVEN_N, EVEN_SPAN, BM, BN, BK)
        _finish_tile(acc, xsum, pid_m, pid_n, g, 0, 0, 1, out_ptr, corr_ptr, wzp_ptr, bias_ptr,
                     mult_ptr, partial_ptr, counter_ptr, M, OH, OW, K, KG, out_zp, lo, hi,
                     BORDER, HAS_WZP, SHARED, EVEN_N, BM, BN)


@triton.jit
def _direct_tap(acc, xsum, x_ptr, w_ptr, r, s, n, oh, ow, m_ok, k, k_ok, first_channel, x_zp,
                H, W, C, K, CG, SH, SW, PH, PW, DH, DW, S: tl.constexpr,
                X_UNSIGNED: tl.constexpr, HAS_WZP: tl.constexpr):
    """acc plus the products x w of kernel tap (r, s) over the group's CG channels, and xsum
    plus its activations x (with HAS_WZP), for `conv_direct_kernel`."""
    pixel, spatial_ok = _input_pixel(n, oh, ow, m_ok, r, s, H, W, SH, SW, PH, PW, DH, DW)
    row = pixel * C
    inside = spatial_ok[:, None] & k_ok[None, :]
    for c in range(CG):  # other=0 on byte loads: see the GEMM kernel
        x = tl.load(x_ptr + row[:, None] + (first_channel + c)[None, :], mask=inside,
                    other=0).to(tl.int32)
        if X_UNSIGNED:  # quint8 v as v - 128
            x = x - 128
        x = tl.where(inside, x, x_zp)
        w = tl.load(w_ptr + ((r * S + s) * CG + c) * K + k, mask=k_ok, other=0)
        acc += x * w.to(tl.int32)[None, :]
        if HAS_WZP:
            xsum += x
    return acc, xsum


@triton.jit(do_not_specialize=GEOMETRY)
def conv_direct_kernel(x_ptr, w_ptr, out_ptr, corr_ptr, wzp_ptr, bias_ptr, mult_ptr,
                       M, H, W, OH, OW, C, K, CG, KG, SH, SW, PH, PW, DH, DW,
                       x_zp, out_zp, lo, hi,
                       R: tl.constexpr, S: tl.constexpr, X_UNSIGNED: tl.constexpr,
                       HAS_WZP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                       UNROLL_TAPS: tl.constexpr):
    """A [BM, BN] tile of outputs (rows of N*OH*OW, output channels), each the sum over its
    group's CG channels and the R x S taps of x w in int32, weights [R, S, CG, K]. With
    UNROLL_TAPS the taps are unrolled, so that their loads can be in flight at once (at the cost
    of registers: sm_90, a depthwise 3x3 in 64x64 tiles took 188 a thread instead of 70); else
    they are a loop, which the compiler may unroll or not (in 64x64 tiles each tap's loads
    waited for the last tap's sums). Lanes outside the image hold the activations' zero point
    x_zp (as the kernel holds them: less 128 for quint8), so that they add nothing to the sums,
    and the compensation is per channel, zx sum (w - zw[k]) over every tap: no border table to
    load."""
    m, m_ok, n, oh, ow = _output_pixels(tl.program_id(0), M, OH, OW, BM)
    k = tl.program_id(1) * BN + tl.arange(0, BN)
    k_ok = k < K
    first_channel = (k // KG) * CG
    acc = tl.zeros([BM, BN], dtype=tl.int32)
    xsum = tl.zeros([BM, BN], dtype=tl.int32)
    if UNROLL_TAPS:
        for r in tl.static_range(R):
            for s in tl.static_range(S):
                acc, xsum = _direct_tap(acc, xsum, x_ptr, w_ptr, r, s, n, oh, ow, m_ok, k, k_ok,
                                        first_channel, x_zp, H, W, C, K, CG, SH, SW, PH, PW, DH,
                                        DW, S, X_UNSIGNED, HAS_WZP)
    else:
        for r in range(R):
            for s in range(S):
                acc, xsum = _direct_tap(acc, xsum, x_ptr, w_ptr, r, s, n, oh, ow, m_ok, k, k_ok,
                                        first_channel, x_zp, H, W, C, K, CG, SH, SW, PH, PW, DH,
                                        DW, S, X_UNSIGNED, HAS_WZP)
    terms = _channel_terms(m, m_ok, k, k_ok, corr_ptr, wzp_ptr, bias_ptr, mult_ptr, OH * OW, K,
                           False, HAS_WZP)
    _store(_requantize(acc, xsum, terms, out_zp, lo, hi, HAS_WZP), m, m_ok, k, k_ok, out_ptr, K)
