// Depthwise int8 conv (one input channel per group, any channel multiplier), channel fastest:
// neighbouring threads read neighbouring bytes of x and of the [R][S][K] weights. VEC = 1: one
// output per thread. VEC = 4 (C a multiple of 4, one filter per channel): four neighbouring
// channels per thread, read and written four bytes at a time. A GEMM degenerates here (a reduction
// of R*S terms), and cuDNN has no int8 engine for it.
#include "conv_common.cuh"

namespace qbench {

template <typename XT, typename OT, int VEC>
__global__ void __launch_bounds__(256)
conv_depthwise(const XT* __restrict__ x, const signed char* __restrict__ w, OT* __restrict__ y,
               const int* /* w_sums: unused */, const int* __restrict__ w_zero_points,
               const float* __restrict__ bias_terms, const float* __restrict__ multipliers, int n,
               int h, int wd, int c, int k, int oh, int ow, int r, int s, int stride_h,
               int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int group_in,
               int group_out, int /* padded_group_in: unused */, int x_zero_point,
               int out_zero_point, int lo, int hi) {
  const Geometry g{n, h, wd, c, k, oh, ow, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                   group_in, group_out};
  static_assert(VEC == 1 || VEC == 4, "one or four channels per thread");
  const long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int slots = k / VEC;  // threads per pixel
  if (index >= static_cast<long long>(g.pixels()) * slots) return;
  const int channel = static_cast<int>(index % slots) * VEC;
  const int pixel = static_cast<int>(index / slots);
  int in, ih, iw;
  pixel_of(pixel, g, in, ih, iw);
  OT* out = y + static_cast<long long>(pixel) * k + channel;
  if constexpr (VEC == 4) {
    int acc[4];
    depthwise_accumulate4<XT>(x, w, g, in, ih, iw, channel, x_zero_point, w_zero_points, acc);
    unsigned int word = 0;
    for (int lane = 0; lane < 4; ++lane) {
      const OT q = requantize<OT>(acc[lane], bias_terms[channel + lane],
                                  multipliers[channel + lane], out_zero_point, lo, hi);
      word |= static_cast<unsigned int>(static_cast<unsigned char>(q)) << (8 * lane);
    }
    *reinterpret_cast<unsigned int*>(out) = word;
  } else {
    const int acc = depthwise_accumulate<XT>(x, w, g, in, ih, iw, channel, x_zero_point,
                                             w_zero_points[channel]);
    *out = requantize<OT>(acc, bias_terms[channel], multipliers[channel], out_zero_point, lo, hi);
  }
}

}  // namespace qbench
