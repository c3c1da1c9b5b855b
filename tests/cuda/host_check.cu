// Runs the cupy backend's __host__ __device__ functions (conv_common.cuh) on the CPU, as the
// kernels run them per output element, so that the tests can compare them with the reference.
//
// stdin, little-endian: int32 kind (0 direct, 1 depthwise, 2 tensor-core GEMM view), x_unsigned,
// out_unsigned, vec (direct and depthwise: 1 or 4), then the kernels' 22 int arguments (Geometry,
// padded_group_in, x_zero_point, out_zero_point, lo, hi); then x (N*H*W*C bytes, NHWC), the packed weights
// (K*R*S*C/g bytes, or K*R*S*padded_group_in for the GEMM view), w_sums int32[K],
// w_zero_points int32[K], bias_terms float[K], multipliers float[K].
// stdout: y, N*OH*OW*K bytes, NHWC.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "conv_common.cuh"

using qbench::Geometry;

namespace {

template <typename T>
std::vector<T> read(size_t count) {
  std::vector<T> values(count);
  if (count && std::fread(values.data(), sizeof(T), count, stdin) != count) {
    std::fprintf(stderr, "host_check: short input\n");
    std::exit(2);
  }
  return values;
}

struct Inputs {
  int kind, vec, padded_group_in, x_zero_point, out_zero_point, lo, hi;
  Geometry g;
  std::vector<unsigned char> x;
  std::vector<signed char> w;
  std::vector<int> w_sums, w_zero_points;
  std::vector<float> bias_terms, multipliers;
};

template <typename XT>
int accumulate(const Inputs& in, int m, int k) {
  const Geometry& g = in.g;
  const XT* x = reinterpret_cast<const XT*>(in.x.data());
  int n, oh, ow;
  qbench::pixel_of(m, g, n, oh, ow);
  if (in.kind == 1 && in.vec == 4) {  // the four channels a thread computes together
    int acc[4];
    qbench::depthwise_accumulate4<XT>(x, in.w.data(), g, n, oh, ow, k - k % 4, in.x_zero_point,
                                      in.w_zero_points.data(), acc);
    return acc[k % 4];
  }
  if (in.kind == 1) {
    return qbench::depthwise_accumulate<XT>(x, in.w.data(), g, n, oh, ow, k, in.x_zero_point,
                                            in.w_zero_points[k]);
  }
  if (in.kind == 0) {
    return in.vec == 4 ? qbench::direct_accumulate<XT, 4>(x, in.w.data(), g, n, oh, ow, k,
                                                          in.x_zero_point, in.w_zero_points[k])
                       : qbench::direct_accumulate<XT, 1>(x, in.w.data(), g, n, oh, ow, k,
                                                          in.x_zero_point, in.w_zero_points[k]);
  }
  // The tensor-core kernel's sum, term by term: its tiles' bytes times the packed weights.
  const int group = k / g.group_out;
  int raw = 0;
  for (int tap = 0; tap < g.r * g.s; ++tap) {
    for (int c = 0; c < in.padded_group_in; ++c) {
      raw += qbench::gemm_activation(x, g, m, tap, group, c, in.x_zero_point) *
             in.w[(static_cast<size_t>(k) * g.r * g.s + tap) * in.padded_group_in + c];
    }
  }
  return raw - in.x_zero_point * in.w_sums[k];
}

template <typename XT, typename OT>
void run(const Inputs& in) {
  const Geometry& g = in.g;
  std::vector<OT> y(static_cast<size_t>(g.pixels()) * g.k);
  for (int m = 0; m < g.pixels(); ++m) {
    for (int k = 0; k < g.k; ++k) {
      y[static_cast<size_t>(m) * g.k + k] = qbench::requantize<OT>(
          accumulate<XT>(in, m, k), in.bias_terms[k], in.multipliers[k], in.out_zero_point, in.lo,
          in.hi);
    }
  }
  std::fwrite(y.data(), 1, y.size(), stdout);
}

}  // namespace

int main() {
  const std::vector<int> head = read<int>(4 + 17 + 5);
  Inputs in;
  in.kind = head[0];
  in.vec = head[3];
  const int* a = head.data() + 4;
  in.g = Geometry{a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12],
                  a[13], a[14], a[15], a[16]};
  in.padded_group_in = a[17];
  in.x_zero_point = a[18];
  in.out_zero_point = a[19];
  in.lo = a[20];
  in.hi = a[21];
  const Geometry& g = in.g;
  const size_t depth = in.kind == 2 ? in.padded_group_in : g.group_in;
  in.x = read<unsigned char>(static_cast<size_t>(g.n) * g.h * g.w * g.c);
  in.w = read<signed char>(static_cast<size_t>(g.k) * g.r * g.s * depth);
  in.w_sums = read<int>(g.k);
  in.w_zero_points = read<int>(g.k);
  in.bias_terms = read<float>(g.k);
  in.multipliers = read<float>(g.k);
  const bool x_unsigned = head[1] != 0, out_unsigned = head[2] != 0;
  if (x_unsigned && out_unsigned) run<unsigned char, unsigned char>(in);
  if (x_unsigned && !out_unsigned) run<unsigned char, signed char>(in);
  if (!x_unsigned && out_unsigned) run<signed char, unsigned char>(in);
  if (!x_unsigned && !out_unsigned) run<signed char, signed char>(in);
  return 0;
}
