// qbench cupy backend: what the kernels share, written once for the device and for the host.
//
// Everything here is __host__ __device__: the kernels call it on the GPU, and the CPU tests compile
// it with nvcc's host compiler (tests/cuda/host_check.cu) and check it against the exact reference.
//
// Conventions
//   x: activations, NHWC, uint8 (quint8) or int8 (qint8). A quint8 byte v is used as the int8 byte
//      v ^ 0x80 = v - 128, with the zero point shifted alike, so one signed datapath serves both.
//   acc = sum over the taps inside the image of (x - zx) * (w - zw[k]), exact in int32.
//   y = clamp(round_half_even(f32(f32(acc) + bias_term[k]) * multiplier[k]) + zy, lo, hi),
//      lo = zy under ReLU; the float order is fbgemm's (see qbench/reference.py).
#pragma once

#ifndef __CUDACC_RTC__
#include <cmath>
#include <cstring>
#endif

namespace qbench {

struct Geometry {
  int n, h, w, c;      // input (NHWC)
  int k, oh, ow;       // output channels and size
  int r, s;            // filter size
  int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int group_in, group_out;  // channels per group

  __host__ __device__ int pixels() const { return n * oh * ow; }
};

// How the bytes of an activation type become int8: XOR with `flip` (per byte, or per 4-byte word).
template <typename XT> struct Bytes;
template <> struct Bytes<signed char> { static constexpr unsigned int flip = 0u; };
template <> struct Bytes<unsigned char> { static constexpr unsigned int flip = 0x80808080u; };

template <typename XT>
__host__ __device__ inline int signed_value(XT v) {
  return static_cast<signed char>(static_cast<unsigned char>(v) ^ (Bytes<XT>::flip & 0xffu));
}

// Four bytes from `p` (4-byte aligned) as one word.
__host__ __device__ inline unsigned int load_word(const void* p) {
#ifdef __CUDA_ARCH__
  return *static_cast<const unsigned int*>(p);
#else
  unsigned int word;
  std::memcpy(&word, p, sizeof word);
  return word;
#endif
}

// acc + the dot product of the four int8 lanes of a and b.
__host__ __device__ inline int dot4(unsigned int a, unsigned int b, int acc) {
#ifdef __CUDA_ARCH__
  return __dp4a(static_cast<int>(a), static_cast<int>(b), acc);
#else
  for (int i = 0; i < 4; ++i) {
    acc += static_cast<signed char>((a >> (8 * i)) & 0xffu) *
           static_cast<signed char>((b >> (8 * i)) & 0xffu);
  }
  return acc;
#endif
}

// Round to nearest, ties to even, saturating (cvt.rni.sat.s32.f32 on the device).
__host__ __device__ inline int round_half_even(float v) {
#ifdef __CUDA_ARCH__
  return __float2int_rn(v);
#else
  if (v >= 2147483520.0f) return 2147483647;
  if (v <= -2147483648.0f) return -2147483647 - 1;
  return static_cast<int>(std::nearbyintf(v));  // the default rounding mode: ties to even
#endif
}

// f32(f32(acc) + bias_term) * multiplier, each step rounded on its own (never fused into an FMA).
__host__ __device__ inline float scaled(int acc, float bias_term, float multiplier) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(__fadd_rn(static_cast<float>(acc), bias_term), multiplier);
#else
  return (static_cast<float>(acc) + bias_term) * multiplier;  // (a + b) * c: nothing to fuse
#endif
}

template <typename OT>
__host__ __device__ inline OT requantize(int acc, float bias_term, float multiplier,
                                         int zero_point, int lo, int hi) {
  int q = round_half_even(scaled(acc, bias_term, multiplier));
  q = q < lo - zero_point ? lo - zero_point : (q > hi - zero_point ? hi - zero_point : q);
  return static_cast<OT>(q + zero_point);
}

// Output pixel m (row of the implicit GEMM) as (n, oh, ow).
__host__ __device__ inline void pixel_of(int m, const Geometry& g, int& n, int& oh, int& ow) {
  ow = m % g.ow;
  const int t = m / g.ow;
  oh = t % g.oh;
  n = t / g.oh;
}

// Where input channel c of `group` is read for tap (ih, iw) of image n; nullptr at a padded tap or
// beyond the group's channels (the caller then uses the zero point, or 0).
template <typename XT>
__host__ __device__ inline const XT* input_at(const XT* x, const Geometry& g, int n, int ih, int iw,
                                              int group, int c) {
  if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w || c >= g.group_in) return nullptr;
  return x + ((n * g.h + ih) * g.w + iw) * g.c + group * g.group_in + c;
}

// The exact accumulator of output (n, oh, ow, k) by plain loops: `VEC` = 4 reads four channels
// at a time with dp4a (needs group_in and c multiples of 4), 1 reads one. Weights [K][R][S][C/g].
template <typename XT, int VEC>
__host__ __device__ inline int direct_accumulate(const XT* x, const signed char* w,
                                                 const Geometry& g, int n, int oh, int ow, int k,
                                                 int x_zero_point, int w_zero_point) {
  const int group = k / g.group_out;
  int raw = 0, x_sum = 0, w_sum = 0, taps = 0;
  for (int r = 0; r < g.r; ++r) {
    const int ih = oh * g.stride_h - g.pad_h + r * g.dil_h;
    for (int s = 0; s < g.s; ++s) {
      const int iw = ow * g.stride_w - g.pad_w + s * g.dil_w;
      const XT* xp = input_at(x, g, n, ih, iw, group, 0);
      if (xp == nullptr) continue;  // a padded tap: x = zx there, so it adds nothing
      const signed char* wp = w + ((k * g.r + r) * g.s + s) * g.group_in;
      ++taps;
      if (VEC == 4) {
        for (int c = 0; c < g.group_in; c += 4) {
          const unsigned int xv = load_word(xp + c) ^ Bytes<XT>::flip;
          const unsigned int wv = load_word(wp + c);
          raw = dot4(xv, wv, raw);
          x_sum = dot4(xv, 0x01010101u, x_sum);
          w_sum = dot4(0x01010101u, wv, w_sum);
        }
      } else {
        for (int c = 0; c < g.group_in; ++c) {
          const int xv = signed_value(xp[c]), wv = wp[c];
          raw += xv * wv;
          x_sum += xv;
          w_sum += wv;
        }
      }
    }
  }
  return raw - x_zero_point * w_sum - w_zero_point * x_sum +
         x_zero_point * w_zero_point * taps * g.group_in;
}

// The exact accumulator of a depthwise output (one input channel per group); weights [R][S][K].
template <typename XT>
__host__ __device__ inline int depthwise_accumulate(const XT* x, const signed char* w,
                                                    const Geometry& g, int n, int oh, int ow,
                                                    int k, int x_zero_point, int w_zero_point) {
  const int group = k / g.group_out;
  int acc = 0;
  for (int r = 0; r < g.r; ++r) {
    const int ih = oh * g.stride_h - g.pad_h + r * g.dil_h;
    for (int s = 0; s < g.s; ++s) {
      const int iw = ow * g.stride_w - g.pad_w + s * g.dil_w;
      const XT* xp = input_at(x, g, n, ih, iw, group, 0);
      if (xp != nullptr) {
        acc += (signed_value(*xp) - x_zero_point) * (w[(r * g.s + s) * g.k + k] - w_zero_point);
      }
    }
  }
  return acc;
}

// Four neighbouring depthwise outputs, channels k..k+3 (k a multiple of 4), when each channel has
// its own filter (C/g = K/g = 1) and C is a multiple of 4: one 4-byte load of x and of the
// [R][S][K] weights per tap serves all four.
template <typename XT>
__host__ __device__ inline void depthwise_accumulate4(const XT* x, const signed char* w,
                                                      const Geometry& g, int n, int oh, int ow,
                                                      int k, int x_zero_point,
                                                      const int* w_zero_points, int (&acc)[4]) {
  for (int lane = 0; lane < 4; ++lane) acc[lane] = 0;
  for (int r = 0; r < g.r; ++r) {
    const int ih = oh * g.stride_h - g.pad_h + r * g.dil_h;
    for (int s = 0; s < g.s; ++s) {
      const int iw = ow * g.stride_w - g.pad_w + s * g.dil_w;
      const XT* xp = input_at(x, g, n, ih, iw, k, 0);  // group k: input channel k
      if (xp == nullptr) continue;
      const unsigned int xv = load_word(xp) ^ Bytes<XT>::flip;
      const unsigned int wv = load_word(w + (r * g.s + s) * g.k + k);
      for (int lane = 0; lane < 4; ++lane) {
        acc[lane] += (static_cast<signed char>((xv >> (8 * lane)) & 0xffu) - x_zero_point) *
                     (static_cast<signed char>((wv >> (8 * lane)) & 0xffu) -
                      w_zero_points[k + lane]);
      }
    }
  }
}

// The tensor-core kernel's view: an implicit GEMM whose rows are output pixels and whose reduction
// runs over taps and then channels, channels padded to `cp` (a multiple of 32) in the weights
// [K][R][S][cp] (zeros beyond C/g). At a padded tap the activation byte is the zero point, so
//   acc = raw - zx * w_sums[k],   w_sums[k] = the sum of filter k's weights.
// This is the reduction term (pixel m, tap, channel c) the kernel's shared-memory tiles hold.
template <typename XT>
__host__ __device__ inline int gemm_activation(const XT* x, const Geometry& g, int m, int tap,
                                               int group, int c, int x_zero_point) {
  int n, oh, ow;
  pixel_of(m, g, n, oh, ow);
  const int ih = oh * g.stride_h - g.pad_h + (tap / g.s) * g.dil_h;
  const int iw = ow * g.stride_w - g.pad_w + (tap % g.s) * g.dil_w;
  if (c >= g.group_in) return 0;  // channel padding: the weights there are 0
  const XT* xp = input_at(x, g, n, ih, iw, group, c);
  return xp == nullptr ? x_zero_point : signed_value(*xp);
}

}  // namespace qbench
