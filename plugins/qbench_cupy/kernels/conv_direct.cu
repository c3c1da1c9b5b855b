// Direct int8 conv, one thread per output element (output channel fastest, so that stores are
// coalesced): the path for channel counts the tensor cores do not fit (C/g not a multiple of 4, or
// too few channels to fill a 32-deep MMA step), for weights with zero points, and a candidate that
// autotuning may pick on tiny problems. VEC = 4 uses dp4a; VEC = 1 reads bytes.
#include "conv_common.cuh"

namespace qbench {

template <typename XT, typename OT, int VEC>
__global__ void __launch_bounds__(256)
conv_direct(const XT* __restrict__ x, const signed char* __restrict__ w, OT* __restrict__ y,
            const int* /* w_sums: unused */, const int* __restrict__ w_zero_points,
            const float* __restrict__ bias_terms, const float* __restrict__ multipliers, int n,
            int h, int wd, int c, int k, int oh, int ow, int r, int s, int stride_h, int stride_w,
            int pad_h, int pad_w, int dil_h, int dil_w, int group_in, int group_out,
            int /* padded_group_in: unused */, int x_zero_point, int out_zero_point, int lo,
            int hi) {
  const Geometry g{n, h, wd, c, k, oh, ow, r, s, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                   group_in, group_out};
  const long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= static_cast<long long>(g.pixels()) * k) return;
  const int channel = static_cast<int>(index % k);
  int in, ih, iw;
  pixel_of(static_cast<int>(index / k), g, in, ih, iw);
  const int acc = direct_accumulate<XT, VEC>(x, w, g, in, ih, iw, channel, x_zero_point,
                                             w_zero_points[channel]);
  y[index] = requantize<OT>(acc, bias_terms[channel], multipliers[channel], out_zero_point, lo, hi);
}

}  // namespace qbench
