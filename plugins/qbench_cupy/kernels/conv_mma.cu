// Implicit-GEMM int8 conv on the tensor cores: mma.sync m16n8k32 s8 x s8 -> s32 (sm_80 and later),
// the requantization fused in the epilogue.
//
// GEMM view (conv_common.cuh): rows = output pixels (N*OH*OW), columns = output channels of one
// group, reduction = R*S taps x padded_group_in channels, BK = 32 channels per step.
// Grid: (ceil(rows / BM), ceil(group_out / BN), groups). Block: WARPS_M x WARPS_N warps, each
// owning a (BM / WARPS_M) x (BN / WARPS_N) tile of 16x8 MMA tiles.
//
// Per step, the block stages a BM x 32 activation tile and a BN x 32 weight tile in shared memory
// (activations in VEC-byte pieces: 16 when C/g is a multiple of 16, else 4; a padded tap holds the
// zero point, channels beyond C/g hold 0) and each warp runs its MMAs. Shared memory has two
// stages: the next step's pieces are loaded into registers before the MMAs and stored into the
// other stage after them, one barrier per step. Shared rows are 12 words apart, so the fragment
// reads (8 rows x 4 words per instruction) hit 32 distinct banks.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k32" with .s8):
//   A (16x32, row-major): lane = 4 * group + t holds rows {group, group + 8} x bytes {4t..4t+3}
//     in a0, a1 and the same rows x bytes {16 + 4t..} in a2, a3.
//   B (32x8, column-major): bytes {4t..4t+3} and {16 + 4t..} of column `group` in b0, b1.
//   C (16x8): c0, c1 = row group, columns 2t, 2t + 1; c2, c3 = row group + 8, same columns.
#include "conv_common.cuh"

namespace qbench {

__device__ inline void mma_m16n8k32(int (&d)[4], const unsigned int (&a)[4],
                                    const unsigned int (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <typename XT, typename OT, int BM, int BN, int WARPS_M, int WARPS_N, int VEC>
__global__ void __launch_bounds__(32 * WARPS_M * WARPS_N)
conv_mma(const XT* __restrict__ x, const signed char* __restrict__ w, OT* __restrict__ y,
         const int* __restrict__ w_sums, const int* /* w_zero_points: all 0 on this path */,
         const float* __restrict__ bias_terms, const float* __restrict__ multipliers, int n,
         int h, int wd, int c, int k, int oh, int ow, int r, int s, int stride_h, int stride_w,
         int pad_h, int pad_w, int dil_h, int dil_w, int group_in, int group_out,
         int padded_group_in, int x_zero_point, int out_zero_point, int lo, int hi) {
  constexpr int THREADS = 32 * WARPS_M * WARPS_N;
  constexpr int BK = 32;
  constexpr int ROW_WORDS = BK / 4 + 4;
  constexpr int WARP_M = BM / WARPS_M, WARP_N = BN / WARPS_N;
  constexpr int MI = WARP_M / 16, NI = WARP_N / 8;
  constexpr int A_PIECES = BM * (BK / VEC), B_PIECES = BN * (BK / 16);
  constexpr int A_PER_THREAD = (A_PIECES + THREADS - 1) / THREADS;
  constexpr int B_PER_THREAD = (B_PIECES + THREADS - 1) / THREADS;
  constexpr int A_WORDS = VEC / 4;
  static_assert(WARP_M % 16 == 0 && WARP_N % 8 == 0, "warp tiles are made of 16x8 MMA tiles");
  static_assert(VEC == 4 || VEC == 16, "activation pieces are 4 or 16 bytes");

  // Two shared-memory stages: while the warps multiply one, the next step's tiles wait in
  // registers, loaded from global memory before the multiplications and stored after them.
  __shared__ __align__(16) unsigned int a_tile[2][BM * ROW_WORDS];
  __shared__ __align__(16) unsigned int b_tile[2][BN * ROW_WORDS];

  const Geometry g{n, h, wd, c, k, oh, ow, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                   group_in, group_out};
  const int rows = g.pixels();
  const int group = blockIdx.z;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warp_m = warp % WARPS_M, warp_n = warp / WARPS_M;
  const int lane_group = lane / 4, lane_t = lane % 4;
  const unsigned int fill = (static_cast<unsigned int>(x_zero_point) & 0xffu) * 0x01010101u;
  const int channel_steps = padded_group_in / BK;
  const int steps = r * s * channel_steps;

  // The pixels this thread loads stay the same at every step: decode them once.
  int piece_n[A_PER_THREAD], piece_ih[A_PER_THREAD], piece_iw[A_PER_THREAD];
#pragma unroll
  for (int i = 0; i < A_PER_THREAD; ++i) {
    const int m = m0 + (threadIdx.x + i * THREADS) / (BK / VEC);
    int pn = -1, p_oh = 0, p_ow = 0;
    if (m < rows) pixel_of(m, g, pn, p_oh, p_ow);
    piece_n[i] = pn;
    piece_ih[i] = p_oh * stride_h - pad_h;
    piece_iw[i] = p_ow * stride_w - pad_w;
  }

  unsigned int a_next[A_PER_THREAD][A_WORDS];
  uint4 b_next[B_PER_THREAD];

  // Step `step` (tap step / channel_steps, channels from 32 * (step % channel_steps)) of this
  // thread's activation and weight pieces, into a_next and b_next.
  auto load = [&](int step) {
    const int tap = step / channel_steps, c0 = (step % channel_steps) * BK;
    const int tap_r = tap / s, tap_s = tap % s;
#pragma unroll
    for (int i = 0; i < A_PER_THREAD; ++i) {
      const int piece = threadIdx.x + i * THREADS;
      const int channel = c0 + (piece % (BK / VEC)) * VEC;
      const XT* src = piece_n[i] < 0 || piece >= A_PIECES
                          ? nullptr
                          : input_at(x, g, piece_n[i], piece_ih[i] + tap_r * dil_h,
                                     piece_iw[i] + tap_s * dil_w, group, channel);
      const unsigned int pad = channel < group_in ? fill : 0u;
      if constexpr (VEC == 16) {
        uint4 v = make_uint4(pad, pad, pad, pad);
        if (src != nullptr) v = *reinterpret_cast<const uint4*>(src);
        const unsigned int flip = src != nullptr ? Bytes<XT>::flip : 0u;
        a_next[i][0] = v.x ^ flip;
        a_next[i][1] = v.y ^ flip;
        a_next[i][2] = v.z ^ flip;
        a_next[i][3] = v.w ^ flip;
      } else {
        a_next[i][0] = src != nullptr ? load_word(src) ^ Bytes<XT>::flip : pad;
      }
    }
#pragma unroll
    for (int j = 0; j < B_PER_THREAD; ++j) {
      const int piece = threadIdx.x + j * THREADS;
      const int column = n0 + piece / (BK / 16);
      b_next[j] = make_uint4(0u, 0u, 0u, 0u);
      if (piece < B_PIECES && column < group_out) {
        const int channel = group * group_out + column;
        b_next[j] = *reinterpret_cast<const uint4*>(
            w + ((channel * r + tap_r) * s + tap_s) * padded_group_in + c0 +
            (piece % (BK / 16)) * 16);
      }
    }
  };

  // a_next and b_next into shared stage `stage`.
  auto store = [&](int stage) {
#pragma unroll
    for (int i = 0; i < A_PER_THREAD; ++i) {
      const int piece = threadIdx.x + i * THREADS;
      if (piece < A_PIECES) {
        unsigned int* dst = a_tile[stage] + (piece / (BK / VEC)) * ROW_WORDS +
                            (piece % (BK / VEC)) * A_WORDS;
#pragma unroll
        for (int word = 0; word < A_WORDS; ++word) dst[word] = a_next[i][word];
      }
    }
#pragma unroll
    for (int j = 0; j < B_PER_THREAD; ++j) {
      const int piece = threadIdx.x + j * THREADS;
      if (piece < B_PIECES) {
        *reinterpret_cast<uint4*>(b_tile[stage] + (piece / (BK / 16)) * ROW_WORDS +
                                  (piece % (BK / 16)) * 4) = b_next[j];
      }
    }
  };

  int acc[MI][NI][4];
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int ni = 0; ni < NI; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0;

  load(0);
  store(0);
  __syncthreads();
  for (int step = 0; step < steps; ++step) {
    const int stage = step & 1;
    if (step + 1 < steps) load(step + 1);  // in flight while the tensor cores work

    unsigned int a[MI][4], b[NI][2];
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
      const unsigned int* base =
          a_tile[stage] + (warp_m * WARP_M + mi * 16 + lane_group) * ROW_WORDS;
      a[mi][0] = base[lane_t];
      a[mi][1] = base[8 * ROW_WORDS + lane_t];
      a[mi][2] = base[lane_t + 4];
      a[mi][3] = base[8 * ROW_WORDS + lane_t + 4];
    }
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
      const unsigned int* base =
          b_tile[stage] + (warp_n * WARP_N + ni * 8 + lane_group) * ROW_WORDS;
      b[ni][0] = base[lane_t];
      b[ni][1] = base[lane_t + 4];
    }
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
      for (int ni = 0; ni < NI; ++ni) mma_m16n8k32(acc[mi][ni], a[mi], b[ni]);

    // The other stage was last read in the previous step, before its closing barrier.
    if (step + 1 < steps) store(stage ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = m0 + warp_m * WARP_M + mi * 16 + lane_group + (e / 2) * 8;
        const int column = n0 + warp_n * WARP_N + ni * 8 + lane_t * 2 + e % 2;
        if (row < rows && column < group_out) {
          const int channel = group * group_out + column;
          const int exact = acc[mi][ni][e] - x_zero_point * w_sums[channel];
          y[static_cast<long long>(row) * k + channel] = requantize<OT>(
              exact, bias_terms[channel], multipliers[channel], out_zero_point, lo, hi);
        }
      }
    }
  }
}

}  // namespace qbench
