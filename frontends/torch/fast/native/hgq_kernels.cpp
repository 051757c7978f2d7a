// Fused CPU kernels for training the hgqir PyTorch shims (see frontends/torch/fast/native.py).
//
// Four operators, each one autograd node whose forward and backward run in C++ without
// touching Python: on the small tensors of a trigger-sized model, a training step is dominated
// by per-call overhead, not arithmetic.
//
//   hgqir::chain(x, params, f, vmax, vmin, plan)       a run of fused layers (fast/fuse.py)
//   hgqir::act_quant(x, f, vmax, vmin, gidx, mode)     activation quantizer, running range
//   hgqir::weight_quant(f, ws, offset, mode)           all weights of one rounding mode
//   hgqir::ebops(f, ws, vmax, vmin, ...)               beta * EBOPs + l1 * sum(bits)
//
// The last three serve shims whose bodies do not fuse into chains.
//
// The arithmetic is the Python training path's (frontends/torch/shim/quant.py, bits.py,
// ebops.py), operation for operation in the same dtype, so the quantized values and bit
// counts are identical; gradient sums are accumulated in double.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "hgq_plan.h"  // plan layout and codes, generated from fast/plan.py

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <type_traits>
#include <vector>

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using namespace hgqir_plan;

constexpr double kLn2 = 0.693147180559945309417232121458176568;
constexpr int64_t kGrain = 1 << 16;  // elements per parallel task (smaller tensors: one thread)

// Rounding of integer-scaled values in training (TrainRound): nearest (ties to even, as
// torch.round), floor (TRN), toward zero (TRN_ZERO). Loops are instantiated per mode (they vectorize).
template <int Mode, typename T>
inline T round_as(T v) {
  if constexpr (Mode == kRoundFloor) {
    return std::floor(v);
  } else if constexpr (Mode == kRoundTowardZero) {
    return std::trunc(v);
  } else {
    return std::nearbyint(v);
  }
}

#define HGQIR_BY_MODE(mode, ...)            \
  switch (mode) {                           \
    case kRoundFloor: {                     \
      constexpr int kMode = kRoundFloor;    \
      __VA_ARGS__;                          \
      break;                                \
    }                                       \
    case kRoundTowardZero: {                \
      constexpr int kMode = kRoundTowardZero; \
      __VA_ARGS__;                          \
      break;                                \
    }                                       \
    default: {                              \
      constexpr int kMode = kRoundNearest;  \
      __VA_ARGS__;                          \
    }                                       \
  }

#define HGQIR_BY_KEEP(ptr, ...)    \
  if (ptr) {                        \
    constexpr bool kKeep = true;    \
    __VA_ARGS__;                    \
  } else {                          \
    constexpr bool kKeep = false;   \
    __VA_ARGS__;                    \
  }

template <typename T>
struct Bits;
template <>
struct Bits<float> {
  using U = uint32_t;
  static constexpr int kMant = 23, kBias = 127, kMaxExp = 127;
};
template <>
struct Bits<double> {
  using U = uint64_t;
  static constexpr int kMant = 52, kBias = 1023, kMaxExp = 1023;
};

// 2**e for an integer-valued e, exactly as exp2 (built from the exponent bits when normal).
template <typename T>
inline T pow2(T e) {
  using B = Bits<T>;
  if (e >= T(1 - B::kBias) && e <= T(B::kMaxExp)) {
    typename B::U u = typename B::U(int64_t(e) + B::kBias) << B::kMant;
    T r;
    std::memcpy(&r, &u, sizeof r);
    return r;
  }
  return std::exp2(e);
}

// 2**e for an integer-valued e with |e| < kMaxExp (a normal number): exponent bits only.
template <typename T>
inline T pow2_normal(T e) {
  using B = Bits<T>;
  using S = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  const S u = (S(e) + S(B::kBias)) << B::kMant;
  T r;
  std::memcpy(&r, &u, sizeof r);
  return r;
}

// Every |f| < kMaxExp - 1, so 2**round(f) and 2**-round(f) are normal and multiplying by
// 2**-f is dividing by 2**f, bit for bit (false for nan too). An OR reduction: it vectorizes.
template <typename T>
bool normal_scales(const T* f, int64_t n) {
  int bad = 0;
  for (int64_t j = 0; j < n; ++j) bad |= !(std::abs(f[j]) < T(Bits<T>::kMaxExp - 1));
  return !bad;
}

// 2**round(f): the scale of a quantizer with (unrounded, learned) fractional bits f.
template <typename T>
inline T scale_of(T f) {
  return pow2(std::nearbyint(f));
}

// Width k + i + f of the smallest type that holds integer mantissas in [lo, hi]
// (shim/quant.py width_of_mantissas): ceil(log2(top)) plus a sign bit when lo < 0, where
// top >= 1; for a finite top that is its exponent, less 1 when it is a power of 2.
template <typename T>
inline T mantissa_width(T lo, T hi) {
  using B = Bits<T>;
  const T top = std::max(std::max(hi + T(1), T(1)), -lo);
  typename B::U u;
  std::memcpy(&u, &top, sizeof u);
  const int64_t biased = int64_t(u >> B::kMant);
  T ceil_log2;
  if (biased >= (int64_t(1) << (sizeof(T) * 8 - 1 - B::kMant)) - 1) {  // inf or nan
    int e = 0;
    const T mant = std::frexp(top, &e);
    ceil_log2 = T(e) - T(mant == T(0.5));
  } else {
    const bool power = (u & ((typename B::U(1) << B::kMant) - 1)) == 0;
    ceil_log2 = T(biased - B::kBias + 1) - T(power);
  }
  return ceil_log2 + T(lo < T(0));
}

Tensor contiguous_as(const Tensor& t, at::ScalarType dtype) {
  return t.scalar_type() == dtype ? t.contiguous() : t.to(dtype).contiguous();
}

// ---------------------------------------------------------------- activation quantizer
// One sample: quantize, keep q - x for the gradient (Keep: else the backward pass recomputes
// it from q and x), fold q into the per-element range. With Relu, x is first clamped at 0 as
// torch.relu does (nan stays nan).
template <int Mode, bool ExactInverse, bool Relu, bool Keep, typename T>
void act_row(const T* __restrict x, T* __restrict out, T* __restrict delta, const T* __restrict scale,
             const T* __restrict inv, T* __restrict top, T* __restrict bottom, int64_t n) {
  int nan = 0;
  for (int64_t j = 0; j < n; ++j) {
    const T a = Relu ? (x[j] < T(0) ? T(0) : x[j]) : x[j];
    const T v = round_as<Mode>(a * scale[j]);
    const T q = ExactInverse ? v * inv[j] : v / scale[j];
    out[j] = q;
    if constexpr (Keep) delta[j] = q - a;
    top[j] = q > top[j] ? q : top[j];
    bottom[j] = q < bottom[j] ? q : bottom[j];
    nan |= q != q;
  }
  if (nan) {  // rare: a nan propagates into the range, as torch.maximum / minimum do
    for (int64_t j = 0; j < n; ++j) {
      if (out[j] != out[j]) top[j] = bottom[j] = out[j];
    }
  }
}

// One activation quantizer over x [batch, n] (contiguous, dtype T): the quantized values, q - x
// (for the gradient; pd may be null) and the batch's range folded into hi / lo. pf, ph, pl: the quantizer's
// groups (fractional bits and running range, dtype T); pg: group of each of the n elements, or
// null when every element is its own group. With relu, x is first clamped at 0. decay: the
// running range first shrinks towards 0 by this factor (2**-i_decay; 1: kept as it is).
template <typename T>
void act_quant_run(const T* px, T* po, T* pd, int64_t batch, int64_t n, const T* pf, int64_t groups, T* ph, T* pl,
                   const int64_t* pg, int64_t mode, bool relu, T decay) {
  // Per element of a sample: the scale and its inverse (multiplying by an exact power of two
  // is the division, bit for bit; extreme scales fall back to dividing).
  std::vector<T> scale(n), inv(n);
  const bool exact_inverse = normal_scales(pf, groups);
  for (int64_t j = 0; j < n; ++j) {
    const T fr = std::nearbyint(pf[pg ? pg[j] : j]);
    scale[j] = pow2(fr);
    inv[j] = exact_inverse ? pow2_normal(-fr) : T(0);
  }
  constexpr T kInf = std::numeric_limits<T>::infinity();
  std::vector<T> top(n, -kInf), bottom(n, kInf);
  std::mutex merge;
  // Rows in parallel for large batches (ATen's threads); each chunk folds its own range and
  // merges it once: max and min do not depend on the order, so results are deterministic.
  at::parallel_for(0, batch, std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)), [&](int64_t b0, int64_t b1) {
    const bool whole = b0 == 0 && b1 == batch;
    std::vector<T> local_top, local_bottom;
    if (!whole) {
      local_top.assign(n, -kInf);
      local_bottom.assign(n, kInf);
    }
    T* tp = whole ? top.data() : local_top.data();
    T* bt = whole ? bottom.data() : local_bottom.data();
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t row = b * n;
      T* pdr = pd ? pd + row : nullptr;
      if (exact_inverse && relu) {
        HGQIR_BY_KEEP(pd, HGQIR_BY_MODE(mode, act_row<kMode, true, true, kKeep>(px + row, po + row, pdr, scale.data(), inv.data(), tp, bt, n)))
      } else if (exact_inverse) {
        HGQIR_BY_KEEP(pd, HGQIR_BY_MODE(mode, act_row<kMode, true, false, kKeep>(px + row, po + row, pdr, scale.data(), inv.data(), tp, bt, n)))
      } else if (relu) {
        HGQIR_BY_KEEP(pd, HGQIR_BY_MODE(mode, act_row<kMode, false, true, kKeep>(px + row, po + row, pdr, scale.data(), inv.data(), tp, bt, n)))
      } else {
        HGQIR_BY_KEEP(pd, HGQIR_BY_MODE(mode, act_row<kMode, false, false, kKeep>(px + row, po + row, pdr, scale.data(), inv.data(), tp, bt, n)))
      }
    }
    if (!whole) {
      std::lock_guard<std::mutex> lock(merge);
      for (int64_t j = 0; j < n; ++j) {
        top[j] = (tp[j] > top[j] || tp[j] != tp[j]) ? tp[j] : top[j];
        bottom[j] = (bt[j] < bottom[j] || bt[j] != bt[j]) ? bt[j] : bottom[j];
      }
    }
  });
  if (decay != T(1)) {  // as torch.where(vmax > 0, vmax * decay, vmax) (and vmin < 0) on the Python path
    for (int64_t g = 0; g < groups; ++g) {
      ph[g] = ph[g] > T(0) ? ph[g] * decay : ph[g];
      pl[g] = pl[g] < T(0) ? pl[g] * decay : pl[g];
    }
  }
  for (int64_t j = 0; j < n; ++j) {  // fold the batch's per-element range into the groups
    const int64_t g = pg ? pg[j] : j;
    ph[g] = (top[j] > ph[g] || top[j] != top[j]) ? top[j] : ph[g];
    pl[g] = (bottom[j] < pl[g] || bottom[j] != bottom[j]) ? bottom[j] : pl[g];
  }
}

// The quantizer whose groups start at f_off in fw (f in x's dtype) and at r_off in hi / lo (the
// ranges in x's dtype); x contiguous, batch first. Returns the quantized values and q - x.
std::pair<Tensor, Tensor> act_quant_at(const Tensor& x, const Tensor& fw, int64_t f_off, const Tensor& hi,
                                       const Tensor& lo, int64_t r_off, int64_t groups, const int64_t* pg,
                                       int64_t glen, int64_t mode, bool relu, double decay, bool keep = true) {
  TORCH_CHECK(x.dim() >= 1, "hgqir: an activation quantizer needs a batch axis");
  TORCH_CHECK(x.scalar_type() == fw.scalar_type(), "hgqir: activations and f differ in dtype");
  const int64_t batch = x.size(0);
  const int64_t n = batch ? x.numel() / batch : 0;
  TORCH_CHECK(glen ? glen == n : groups == n, "hgqir: a quantizer with ", groups, " groups gets ", n,
              " elements per sample");
  Tensor out = at::empty_like(x);
  Tensor delta = keep ? at::empty_like(x) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hgqir_act_quant", [&] {
    act_quant_run<scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                            keep ? delta.data_ptr<scalar_t>() : nullptr, batch, n,
                            fw.data_ptr<scalar_t>() + f_off, groups, hi.data_ptr<scalar_t>() + r_off,
                            lo.data_ptr<scalar_t>() + r_off, glen ? pg : nullptr, mode, relu, scalar_t(decay));
  });
  return {out, delta};
}

// x: [batch, n] (any shape, batch first); f, vmax, vmin: one entry per group; gidx: group of
// each of the n elements (int64), or empty when every element is its own group. Returns the
// quantized values and q - x (undefined without `keep`).
std::vector<Tensor> act_quant_forward(const Tensor& x_in, const Tensor& f_in, Tensor vmax, Tensor vmin,
                                      const Tensor& gidx_in, int64_t mode, double decay, bool keep) {
  TORCH_CHECK(x_in.device().is_cpu(), "hgqir::act_quant runs on CPU tensors only");
  const Tensor x = x_in.contiguous();
  const auto dtype = x.scalar_type();
  const int64_t groups = f_in.numel();
  const Tensor gidx = gidx_in.numel() ? gidx_in.contiguous() : gidx_in;
  TORCH_CHECK(vmax.numel() == groups && vmin.numel() == groups, "hgqir::act_quant: range size mismatch");
  const Tensor f = contiguous_as(f_in, dtype);
  Tensor hi = contiguous_as(vmax, dtype);
  Tensor lo = contiguous_as(vmin, dtype);
  auto res = act_quant_at(x, f, 0, hi, lo, 0, groups, gidx.numel() ? gidx.data_ptr<int64_t>() : nullptr,
                          gidx.numel(), mode, false, decay, keep);
  if (hi.data_ptr() != vmax.data_ptr()) vmax.copy_(hi.view(vmax.sizes()));  // folded in a copy
  if (lo.data_ptr() != vmin.data_ptr()) vmin.copy_(lo.view(vmin.sizes()));
  return {res.first, res.second};
}

// grad where pre > 0, else 0 (torch's threshold_backward: also grad where pre is nan), with a
// bit mask instead of a branch (the signs of pre are random: a branch mispredicts half the time).
template <typename T>
void relu_through(const T* __restrict grad, const T* __restrict pre, T* __restrict out, int64_t n) {
  using U = typename Bits<T>::U;
  for (int64_t j = 0; j < n; ++j) {
    U g;
    std::memcpy(&g, grad + j, sizeof g);
    g &= U(0) - U(!(pre[j] <= T(0)));
    std::memcpy(out + j, &g, sizeof g);
  }
}

// Sums over the batch of grad * (q - x) per group (double, in `acc`, added to; pg: group of each
// element, or null when every element is its own group). q - x is the kept `delta`, or, with
// `delta` undefined, recomputed as q - a from the quantizer's output q and input src (a = src,
// relu(src) with a fused ReLU): the forward's own operations on the same values, bit for bit.
// With relu also returns the gradient through the ReLU (src: its input): grad where src > 0
// (as torch's threshold_backward), else 0; otherwise returns nothing.
Tensor act_backward(const Tensor& grad_in, const Tensor& delta, const Tensor& q, const Tensor& src, bool relu,
                    const int64_t* pg, double* acc) {
  const Tensor& like = delta.defined() ? delta : q;
  TORCH_CHECK(like.defined() && (!relu || src.defined()) && (delta.defined() || src.defined()),
              "hgqir: quantizer gradient inputs");
  const Tensor grad = contiguous_as(grad_in, like.scalar_type());
  const int64_t batch = like.size(0);
  const int64_t n = batch ? like.numel() / batch : 0;
  std::vector<double> per_element(n, 0.0);
  Tensor through;
  if (relu) through = at::empty_like(like);
  AT_DISPATCH_FLOATING_TYPES(like.scalar_type(), "hgqir_act_quant_backward", [&] {
    const scalar_t* pgr = grad.data_ptr<scalar_t>();
    const scalar_t* pd = delta.defined() ? delta.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pq = delta.defined() ? nullptr : q.data_ptr<scalar_t>();
    const scalar_t* ps = src.defined() ? src.data_ptr<scalar_t>() : nullptr;
    scalar_t* pt = relu ? through.data_ptr<scalar_t>() : nullptr;
    double* pe_all = per_element.data();
    // Columns in parallel for large tensors: every element's sum runs over the batch in order
    // whatever the thread count (deterministic).
    at::parallel_for(0, n, std::max<int64_t>(1, kGrain / std::max<int64_t>(batch, 1)), [&](int64_t j0, int64_t j1) {
      double* __restrict pe = pe_all;
      for (int64_t b = 0; b < batch; ++b) {
        const scalar_t* __restrict gr = pgr + b * n;
        if (pd) {
          const scalar_t* __restrict dr = pd + b * n;
          for (int64_t j = j0; j < j1; ++j) pe[j] += double(gr[j]) * double(dr[j]);
        } else if (relu) {
          const scalar_t* __restrict qr = pq + b * n;
          const scalar_t* __restrict sr = ps + b * n;
          for (int64_t j = j0; j < j1; ++j) {
            const scalar_t a = sr[j] < scalar_t(0) ? scalar_t(0) : sr[j];
            pe[j] += double(gr[j]) * double(qr[j] - a);
          }
        } else {
          const scalar_t* __restrict qr = pq + b * n;
          const scalar_t* __restrict sr = ps + b * n;
          for (int64_t j = j0; j < j1; ++j) pe[j] += double(gr[j]) * double(qr[j] - sr[j]);
        }
      }
      if (relu) {
        for (int64_t b = 0; b < batch; ++b) relu_through(pgr + b * n + j0, ps + b * n + j0, pt + b * n + j0, j1 - j0);
      }
    });
  });
  for (int64_t j = 0; j < n; ++j) acc[pg ? pg[j] : j] += per_element[j];
  return through;
}

// -ln2 * acc added into f's gradient at `offset` (d out / d f = -ln2 * (q - x)).
void add_grad_f(Tensor& gf, int64_t offset, const double* acc, int64_t n) {
  AT_DISPATCH_FLOATING_TYPES(gf.scalar_type(), "hgqir_grad_f", [&] {
    scalar_t* out = gf.data_ptr<scalar_t>() + offset;
    for (int64_t g = 0; g < n; ++g) out[g] += scalar_t(-kLn2 * acc[g]);
  });
}

Tensor act_quant_grad_f(const Tensor& grad, const Tensor& delta, const Tensor& gidx, int64_t groups,
                        const Tensor& f_like) {
  std::vector<double> acc(groups, 0.0);
  act_backward(grad, delta, Tensor(), Tensor(), false, gidx.numel() ? gidx.data_ptr<int64_t>() : nullptr, acc.data());
  Tensor gf = at::zeros(f_like.sizes(), f_like.options());  // f's own dtype and shape
  add_grad_f(gf, 0, acc.data(), groups);
  return gf;
}

struct ActQuantFn : public torch::autograd::Function<ActQuantFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& f, Tensor vmax, Tensor vmin,
                        const Tensor& gidx, int64_t mode, double decay) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto res = act_quant_forward(x, f, vmax, vmin, gidx, mode, decay, true);
    ctx->save_for_backward({res[1], gidx, f});
    return res[0];
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor& grad = grads[0];
    Tensor gf;
    if (ctx->needs_input_grad(1) && grad.defined()) gf = act_quant_grad_f(grad, saved[0], saved[1], saved[2].numel(), saved[2]);
    return {grad, gf, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor act_quant_autograd(const Tensor& x, const Tensor& f, Tensor& vmax, Tensor& vmin, const Tensor& gidx,
                          int64_t mode, double decay) {
  return ActQuantFn::apply(x, f, vmax, vmin, gidx, mode, decay);
}

Tensor act_quant_cpu(const Tensor& x, const Tensor& f, Tensor& vmax, Tensor& vmin, const Tensor& gidx, int64_t mode,
                     double decay) {
  return act_quant_forward(x, f, vmax, vmin, gidx, mode, decay, false)[0];  // no gradient: no q - x
}

// ---------------------------------------------------------------- weights
// One weight tensor with per-element fractional bits f: q = round(w * 2**f) / 2**f.
template <int Mode, bool Normal, typename T>
void weight_row(const T* __restrict w, const T* __restrict f, T* __restrict q, T* __restrict d, int64_t n) {
  for (int64_t e = 0; e < n; ++e) {
    const T fr = std::nearbyint(f[e]);
    if constexpr (Normal) {
      q[e] = round_as<Mode>(w[e] * pow2_normal(fr)) * pow2_normal(-fr);
    } else {
      const T s = pow2(fr);
      q[e] = round_as<Mode>(w[e] * s) / s;
    }
    if (d) d[e] = q[e] - w[e];
  }
}

// One weight tensor cast with fractional bits f[off : off + numel] (f in the weight's dtype);
// q - w into `delta` (flat) from `dpos` on when it is defined.
Tensor weight_cast(const Tensor& f, int64_t off, const Tensor& w_in, int64_t mode, const Tensor& delta, int64_t dpos) {
  TORCH_CHECK(w_in.device().is_cpu(), "hgqir: weights must be CPU tensors");
  TORCH_CHECK(w_in.scalar_type() == f.scalar_type(), "hgqir: a weight and f differ in dtype");
  const Tensor w = w_in.contiguous();
  const int64_t n = w.numel();
  TORCH_CHECK(off >= 0 && off + n <= f.numel(), "hgqir: f is too short for the weights");
  Tensor q = at::empty(w.sizes(), w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "hgqir_weight_cast", [&] {
    const scalar_t* pw = w.data_ptr<scalar_t>();
    const scalar_t* pf = f.data_ptr<scalar_t>() + off;
    scalar_t* pq = q.data_ptr<scalar_t>();
    scalar_t* pd = delta.defined() ? delta.data_ptr<scalar_t>() + dpos : nullptr;
    if (normal_scales(pf, n)) {
      HGQIR_BY_MODE(mode, weight_row<kMode, true>(pw, pf, pq, pd, n))
    } else {
      HGQIR_BY_MODE(mode, weight_row<kMode, false>(pw, pf, pq, pd, n))
    }
  });
  return q;
}

// ws: weights whose fractional bits are f[offset : offset + total numel], consecutive.
// Quantized weights, and (when `delta` is given) q - w of all of them in one flat buffer.
std::vector<Tensor> weight_quant_forward(const Tensor& f_in, at::TensorList ws, int64_t offset, int64_t mode,
                                         Tensor* delta) {
  TORCH_CHECK(f_in.device().is_cpu(), "hgqir::weight_quant runs on CPU tensors only");
  int64_t total = 0;
  for (const Tensor& w : ws) total += w.numel();
  TORCH_CHECK(offset >= 0 && offset + total <= f_in.numel(), "hgqir::weight_quant: f is too short for the weights");
  const auto dtype = ws.empty() ? f_in.scalar_type() : ws[0].scalar_type();
  const Tensor f = contiguous_as(f_in, dtype);
  if (delta) *delta = at::empty({total}, f.options());
  std::vector<Tensor> outs;
  outs.reserve(ws.size());
  int64_t pos = 0;
  for (const Tensor& w : ws) {
    TORCH_CHECK(w.scalar_type() == dtype, "hgqir::weight_quant: weights of one block share a dtype");
    outs.push_back(weight_cast(f, offset + pos, w, mode, delta ? *delta : Tensor(), pos));
    pos += w.numel();
  }
  return outs;
}

// -ln2 * g * (q - w) added into f's gradient at `offset` (the weight quantizer's surrogate).
void weight_grad_f(Tensor& gf, int64_t offset, const Tensor& g_in, const Tensor& delta) {
  const Tensor g = contiguous_as(g_in, delta.scalar_type());
  const int64_t n = delta.numel();
  AT_DISPATCH_FLOATING_TYPES(delta.scalar_type(), "hgqir_layer_grad_w", [&] {
    const scalar_t* pg = g.data_ptr<scalar_t>();
    const scalar_t* pd = delta.data_ptr<scalar_t>();
    AT_DISPATCH_FLOATING_TYPES(gf.scalar_type(), "hgqir_layer_grad_f", [&] {
      using out_t = scalar_t;
      out_t* pgf = gf.data_ptr<out_t>() + offset;
      for (int64_t e = 0; e < n; ++e) pgf[e] += out_t(-kLn2 * double(pg[e]) * double(pd[e]));
    });
  });
}

struct WeightQuantFn : public torch::autograd::Function<WeightQuantFn> {
  static variable_list forward(AutogradContext* ctx, const Tensor& f, at::TensorList ws, int64_t offset,
                               int64_t mode) {
    at::AutoDispatchBelowADInplaceOrView guard;
    Tensor delta;
    auto outs = weight_quant_forward(f, ws, offset, mode, &delta);
    ctx->save_for_backward({delta, f});
    ctx->saved_data["offset"] = offset;
    std::vector<int64_t> numels;
    for (const Tensor& w : ws) numels.push_back(w.numel());
    ctx->saved_data["numels"] = numels;
    return outs;
  }

  // Straight through for the weights; -ln2 * (q - w) * grad into their slice of f's gradient.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &delta = saved[0], &f = saved[1];
    const int64_t offset = ctx->saved_data["offset"].toInt();
    variable_list result;
    result.reserve(grads.size() + 3);
    Tensor gf;
    if (ctx->needs_input_grad(0)) {
      gf = at::zeros(f.sizes(), f.options());
      const auto numels = ctx->saved_data["numels"].toIntVector();
      int64_t pos = 0;
      for (size_t k = 0; k < grads.size(); ++k) {
        const int64_t n = numels[k];
        if (grads[k].defined()) weight_grad_f(gf, offset + pos, grads[k], delta.narrow(0, pos, n));
        pos += n;
      }
    }
    result.push_back(gf);
    for (auto& g : grads) result.push_back(g);  // straight through
    result.push_back(Tensor());
    result.push_back(Tensor());
    return result;
  }
};

std::vector<Tensor> weight_quant_autograd(const Tensor& f, at::TensorList ws, int64_t offset, int64_t mode) {
  return WeightQuantFn::apply(f, ws, offset, mode);
}

std::vector<Tensor> weight_quant_cpu(const Tensor& f, at::TensorList ws, int64_t offset, int64_t mode) {
  return weight_quant_forward(f, ws, offset, mode, nullptr);
}

// ---------------------------------------------------------------- EBOPs
// The bit-count vector lines up with f: every weight element (blocks in order), then every
// activation group. EBOPs = sum_r (A b)_r (B b)_r + sum_t max(b[ma_t], b[mb_t]), with
// M = [A; B] and N = [B^T A^T] in CSR. Everything static comes packed in two tensors (one
// argument each, so the call stays cheap), laid out by fast/training.py (header: plan.EBOPS_HEADER):
//   index: rows, |M crow|, |M col|, |N crow|, |N col|, |ma|, blocks, sizes[blocks],
//          modes[blocks], M crow, M col, N crow, N col, ma, mb        (int64)
//   values: M values, N values (float64; empty when every value is 1)
struct Plan {
  int64_t rows = 0, blocks = 0, pairs = 0;
  const int64_t *sizes, *modes, *m_crow, *m_col, *n_crow, *n_col, *ma, *mb;
  const double *m_val = nullptr, *n_val = nullptr;
  bool unit = false;  // every value of M is 1 (values empty): no products, and no N needed

  Plan(const Tensor& index, const Tensor& values) {
    TORCH_CHECK(index.scalar_type() == at::kLong && values.scalar_type() == at::kDouble && index.is_contiguous() &&
                    values.is_contiguous(),
                "hgqir::ebops: malformed index");
    const int64_t* h = index.data_ptr<int64_t>();
    TORCH_CHECK(index.numel() >= kEbopsHeaderSize, "hgqir::ebops: index shorter than its header");
    rows = h[kEbopsRows];
    const int64_t n_mcrow = h[kEbopsMCrow], n_mcol = h[kEbopsMCol], n_ncrow = h[kEbopsNCrow], n_ncol = h[kEbopsNCol];
    pairs = h[kEbopsPairs];
    blocks = h[kEbopsBlocks];
    sizes = h + kEbopsHeaderSize;
    modes = sizes + blocks;
    m_crow = modes + blocks;
    m_col = m_crow + n_mcrow;
    n_crow = m_col + n_mcol;
    n_col = n_crow + n_ncrow;
    ma = n_col + n_ncol;
    mb = ma + pairs;
    TORCH_CHECK(mb + pairs == h + index.numel(), "hgqir::ebops: index length does not match its header");
    unit = values.numel() == 0;
    TORCH_CHECK(unit || n_mcol + n_ncol == values.numel(), "hgqir::ebops: values length does not match the index");
    if (!unit) {
      m_val = values.data_ptr<double>();
      n_val = m_val + n_mcol;
    }
  }
};

// Widths of integer mantissas m (k + i + f, as mantissa_width(m, m)); finite values. Integer
// arithmetic of the float's own width and no branches, so that the loops over weights vectorize.
template <typename T>
inline T weight_width(T m) {
  using B = Bits<T>;
  using S = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  const T up = m + T(1);
  const T top = std::max(std::max(up, T(1)), -m);  // >= 1: the sign bit is clear
  S u;
  std::memcpy(&u, &top, sizeof u);
  const S biased = u >> B::kMant;
  const S frac = u & ((S(1) << B::kMant) - 1);
  return T(biased - S(B::kBias - 1)) - T(frac == 0) + T(m < T(0));
}

template <int Mode, typename T>
void weight_bits(const T* __restrict w, const T* __restrict f, double* __restrict bits, int64_t n) {
  constexpr int64_t kChunk = 256;  // widths in T (vectorized), then widened to double
  T width[kChunk];
  for (int64_t e0 = 0; e0 < n; e0 += kChunk) {
    const int64_t m = std::min(kChunk, n - e0);
    for (int64_t e = 0; e < m; ++e) {
      width[e] = weight_width(round_as<Mode>(w[e0 + e] * pow2_normal(std::nearbyint(f[e0 + e]))));
    }
    for (int64_t e = 0; e < m; ++e) bits[e0 + e] = double(width[e]);
  }
}

template <typename T>
void bit_counts(const Tensor& f, at::TensorList ws, const Plan& plan, const Tensor& vmax, const Tensor& vmin,
                double* pb) {
  const int64_t nb = f.numel();
  const T* pf = f.data_ptr<T>();
  int64_t pos = 0;
  size_t wi = 0;
  for (int64_t blk = 0; blk < plan.blocks; ++blk) {
    for (int64_t k = 0; k < plan.sizes[blk]; ++k, ++wi) {
      TORCH_CHECK(wi < ws.size(), "hgqir::ebops: fewer weights than the index lists");
      const Tensor w = contiguous_as(ws[wi], f.scalar_type());
      const T* pw = w.data_ptr<T>();
      const int64_t n = w.numel();
      TORCH_CHECK(pos + n <= nb, "hgqir::ebops: weights do not line up with f");
      if (normal_scales(pf + pos, n)) {
        HGQIR_BY_MODE(plan.modes[blk], weight_bits<kMode>(pw, pf + pos, pb + pos, n))
      } else {
        HGQIR_BY_MODE(plan.modes[blk], for (int64_t e = 0; e < n; ++e) {
          const T m = round_as<kMode>(pw[e] * scale_of(pf[pos + e]));
          pb[pos + e] = double(mantissa_width(m, m));
        })
      }
      pos += n;
    }
  }
  const Tensor hi = contiguous_as(vmax, f.scalar_type());
  const Tensor lo = contiguous_as(vmin, f.scalar_type());
  const T* ph = hi.data_ptr<T>();
  const T* pl = lo.data_ptr<T>();
  TORCH_CHECK(pos + hi.numel() == nb, "hgqir::ebops: bit layout does not line up with f (", pos, " weights + ",
              hi.numel(), " activation groups != ", nb, ")");
  for (int64_t a = 0; a < hi.numel(); ++a, ++pos) {
    const T s = scale_of(pf[pos]);
    pb[pos] = double(mantissa_width(pl[a] * s, ph[a] * s));
  }
}

// The cost (scale * EBOPs + l1 * sum of bits) and the bit counts it came from: nb widths, then
// M b (kept for the gradient).
std::pair<double, Tensor> ebops_value(const Tensor& f_in, at::TensorList ws, const Tensor& vmax, const Tensor& vmin,
                                      const Plan& plan, double scale, double l1) {
  TORCH_CHECK(f_in.device().is_cpu(), "hgqir::ebops runs on CPU tensors only");
  const Tensor f = f_in.contiguous();
  const int64_t nb = f.numel();
  Tensor bits = at::empty({nb + 2 * plan.rows}, f.options().dtype(at::kDouble));
  double* pb = bits.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "hgqir_ebops_bits", [&] { bit_counts<scalar_t>(f, ws, plan, vmax, vmin, pb); });
  double* puv = pb + nb;
  for (int64_t r = 0; r < 2 * plan.rows; ++r) {
    double acc = 0.0;
    if (plan.unit) {
      for (int64_t k = plan.m_crow[r]; k < plan.m_crow[r + 1]; ++k) acc += pb[plan.m_col[k]];
    } else {
      for (int64_t k = plan.m_crow[r]; k < plan.m_crow[r + 1]; ++k) acc += plan.m_val[k] * pb[plan.m_col[k]];
    }
    puv[r] = acc;
  }
  double total = 0.0;
  for (int64_t r = 0; r < plan.rows; ++r) total += puv[r] * puv[plan.rows + r];
  for (int64_t t = 0; t < plan.pairs; ++t) total += std::max(pb[plan.ma[t]], pb[plan.mb[t]]);
  double value = total * scale;
  if (l1 != 0.0) {
    double sum = 0.0;
    for (int64_t c = 0; c < nb; ++c) sum += pb[c];
    value += l1 * sum;
  }
  return {value, bits};
}

// d cost / d f from the saved bit counts, for an upstream gradient g, added into gf (f's dtype:
// each entry is computed in double, then cast, as autograd would add a double gradient cast to
// f's dtype).
void ebops_grad_into(Tensor& gf, const Tensor& bits, const Plan& plan, double scale, double l1, double g) {
  scale *= g;
  l1 *= g;
  const int64_t nb = gf.numel();
  const double* pb = bits.data_ptr<double>();
  const double* puv = pb + nb;
  std::vector<double> grad(nb);
  double* pg = grad.data();
  if (plan.unit) {  // A^T (B b) + B^T (A b), scattered from the rows of M: every term is an
    // integer (bit counts), so the sums are exact in any order and equal N's
    std::fill(pg, pg + nb, 0.0);
    for (int64_t r = 0; r < 2 * plan.rows; ++r) {
      const double other = puv[r < plan.rows ? r + plan.rows : r - plan.rows];
      for (int64_t k = plan.m_crow[r]; k < plan.m_crow[r + 1]; ++k) pg[plan.m_col[k]] += other;
    }
  } else {
    for (int64_t c = 0; c < nb; ++c) {  // A^T (B b) + B^T (A b)
      double acc = 0.0;
      for (int64_t k = plan.n_crow[c]; k < plan.n_crow[c + 1]; ++k) acc += plan.n_val[k] * puv[plan.n_col[k]];
      pg[c] = acc;
    }
  }
  for (int64_t t = 0; t < plan.pairs; ++t) pg[pb[plan.ma[t]] >= pb[plan.mb[t]] ? plan.ma[t] : plan.mb[t]] += 1.0;
  AT_DISPATCH_FLOATING_TYPES(gf.scalar_type(), "hgqir_ebops_grad", [&] {
    scalar_t* out = gf.data_ptr<scalar_t>();
    for (int64_t c = 0; c < nb; ++c) {
      // no gradient where a width is clipped at 0 (or a weight is 0)
      out[c] += scalar_t(pb[c] > 0.0 ? pg[c] * scale + l1 : 0.0);
    }
  });
}

// The value of a 0-dim gradient (no dispatch: it is read in every backward pass).
double scalar_of(const Tensor& t) {
  TORCH_CHECK(t.numel() == 1 && t.device().is_cpu(), "hgqir: expected a scalar CPU gradient");
  double v = 0.0;
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "hgqir_scalar_of", [&] { v = double(*t.data_ptr<scalar_t>()); });
  return v;
}

struct EbopsFn : public torch::autograd::Function<EbopsFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& f, at::TensorList ws, const Tensor& vmax,
                        const Tensor& vmin, const Tensor& index, const Tensor& values, double scale, double l1) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [value, bits] = ebops_value(f, ws, vmax, vmin, Plan(index, values), scale, l1);
    ctx->save_for_backward({bits, index, values, f});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["l1"] = l1;
    ctx->saved_data["n_inputs"] = int64_t(1 + ws.size() + 4 + 2);  // tensors, then scale and l1
    return at::scalar_tensor(value, f.options());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    const Tensor& f = s[3];
    const double g = grads[0].defined() ? scalar_of(grads[0]) : 0.0;
    Tensor gf = at::zeros(f.sizes(), f.options());
    ebops_grad_into(gf, s[0], Plan(s[1], s[2]), ctx->saved_data["scale"].toDouble(), ctx->saved_data["l1"].toDouble(), g);
    // one gradient per forward input: f, then nothing for the weights, ranges, index and scalars
    variable_list out(ctx->saved_data["n_inputs"].toInt());
    out[0] = gf;
    return out;
  }
};

Tensor ebops_autograd(const Tensor& f, at::TensorList ws, const Tensor& vmax, const Tensor& vmin, const Tensor& index,
                      const Tensor& values, double scale, double l1) {
  return EbopsFn::apply(f, ws, vmax, vmin, index, values, scale, l1);
}

// ---------------------------------------------------------------- fused layer chains
// A chain of layers of a training step as one call and one autograd node. Each layer: the
// weights and bias cast with their f (straight-through gradients), the linear map or convolution
// (ATen's own, so the values are the unfused path's bit for bit), an optional ReLU and an
// optional activation quantizer on the result (running range updated); each layer's output is
// the next one's input. On the small tensors of trigger-sized models the per-call and per-node
// overhead is most of a layer's cost, so a straight run of layers (an MLP: the whole network)
// is one call.
//
// `plan` (int64, built by fast/plan.py's pack_plan) describes the chain:
//   [layers, kRecord, record[0], ..., record[layers - 1], group indices...]
// with the record fields at the kField* offsets of the generated hgq_plan.h (plan.RECORD_FIELDS).
// kLayerQuantizer: no weights (a quantizer alone, after an optional ReLU); kLayerLinear: linear
// on a 2-D input; kLayerConv: convolution (nd 1 or 2, no dilation, one group). w_off / b_off (< 0: no bias) / a_off /
// i_off index the flat f, r_off / i_roff the flat ranges; a_off < 0: no output quantizer;
// i_off >= 0: the layer's input is quantized first (the quantizer that feeds it). gidx_at /
// in_gidx_at: where in `plan` the group of each element of the output / input quantizer is
// (len 0: every element is its own group). params: each layer's weight, then its bias if any.
struct ChainLayer {
  int64_t kind, relu, w_off, b_off, wmode, bmode, a_off, r_off, groups, amode, i_off, i_roff, i_groups, imode;
  std::vector<int64_t> stride, pad;
  const int64_t *gidx, *in_gidx;
  int64_t gidx_len, in_gidx_len;

  int64_t params() const { return kind != kLayerQuantizer ? 1 + (b_off >= 0) : 0; }
};

// Group indices at [at, at + len) of the plan, each in [0, groups) (checked: they index ranges).
const int64_t* plan_groups(const int64_t* p, int64_t total, int64_t at, int64_t len, int64_t groups) {
  TORCH_CHECK(len >= 0 && (len == 0 || (at >= 0 && at + len <= total)), "hgqir::chain: group index out of the plan");
  for (int64_t j = 0; j < len; ++j) {
    TORCH_CHECK(p[at + j] >= 0 && p[at + j] < groups, "hgqir::chain: group ", p[at + j], " of ", groups);
  }
  return len ? p + at : nullptr;
}

// The plan's layers, checked against the lengths of f (nf) and of the ranges (nr).
std::vector<ChainLayer> parse_plan(const Tensor& plan, int64_t nf, int64_t nr) {
  TORCH_CHECK(plan.scalar_type() == at::kLong && plan.dim() == 1 && plan.is_contiguous() && plan.device().is_cpu(),
              "hgqir::chain: the plan is a contiguous int64 CPU vector");
  const int64_t* p = plan.data_ptr<int64_t>();
  const int64_t total = plan.numel();
  const int64_t n_layers = total >= 2 ? p[kChainLayers] : -1;
  constexpr int64_t kHead = kChainRecord + 1;
  TORCH_CHECK(total >= kHead && p[kChainRecord] == kRecord && n_layers >= 0 && kHead + n_layers * kRecord <= total,
              "hgqir::chain: malformed plan");
  std::vector<ChainLayer> layers(n_layers);
  for (int64_t l = 0; l < n_layers; ++l) {
    const int64_t* r = p + kHead + l * kRecord;
    ChainLayer& L = layers[l];
    L.kind = r[kFieldKind], L.relu = r[kFieldRelu], L.w_off = r[kFieldWOff], L.b_off = r[kFieldBOff];
    L.wmode = r[kFieldWmode], L.bmode = r[kFieldBmode];
    L.a_off = r[kFieldAOff], L.r_off = r[kFieldROff], L.groups = r[kFieldGroups], L.amode = r[kFieldAmode];
    L.i_off = r[kFieldIOff], L.i_roff = r[kFieldIRoff], L.i_groups = r[kFieldIGroups], L.imode = r[kFieldImode];
    const int64_t nd = r[kFieldNd];
    TORCH_CHECK(L.kind == kLayerQuantizer || L.kind == kLayerLinear || L.kind == kLayerConv,
                "hgqir::chain: unknown layer kind ", L.kind);
    TORCH_CHECK(L.kind == kLayerConv ? (nd == 1 || nd == 2) : nd == 0,
                "hgqir::chain: a convolution has 1 or 2 spatial axes");
    TORCH_CHECK(L.kind != kLayerQuantizer || (L.a_off >= 0 && L.i_off < 0),
                "hgqir::chain: a quantizer alone takes no input quantizer");
    TORCH_CHECK(L.kind == kLayerQuantizer || (L.w_off >= 0 && L.w_off < nf && L.b_off < nf),
                "hgqir::chain: weight offsets out of f");
    L.stride.assign(r + kFieldStride, r + kFieldStride + nd);
    L.pad.assign(r + kFieldPad, r + kFieldPad + nd);
    TORCH_CHECK(L.a_off < 0 || (L.groups >= 0 && L.a_off + L.groups <= nf && L.r_off >= 0 && L.r_off + L.groups <= nr),
                "hgqir::chain: quantizer offsets out of range");
    TORCH_CHECK(L.i_off < 0 || (L.i_groups >= 0 && L.i_off + L.i_groups <= nf && L.i_roff >= 0 &&
                                L.i_roff + L.i_groups <= nr),
                "hgqir::chain: input quantizer offsets out of range");
    L.gidx_len = L.a_off >= 0 ? r[kFieldGidxLen] : 0;
    L.in_gidx_len = L.i_off >= 0 ? r[kFieldInGidxLen] : 0;
    L.gidx = plan_groups(p, total, r[kFieldGidxAt], L.gidx_len, L.groups);
    L.in_gidx = plan_groups(p, total, r[kFieldInGidxAt], L.in_gidx_len, L.i_groups);
  }
  return layers;
}

// Gradient of a convolution (one group, no dilation) with respect to its input, as fold(W^T g):
// one batched matrix product, then each kernel tap's columns added into the input positions it
// read. ATen's own is several times slower on the few-channel layers of trigger models (about
// 5x for a first layer with one input channel). Values agree with ATen's up to summation order.
Tensor conv_input_grad(const Tensor& gy, const Tensor& w, at::IntArrayRef in_sizes, const std::vector<int64_t>& stride,
                       const std::vector<int64_t>& pad) {
  const bool two = stride.size() == 2;
  const int64_t batch = gy.size(0), co = w.size(0), ci = w.size(1);
  const int64_t kh = two ? w.size(2) : 1, kw = w.size(two ? 3 : 2);
  const int64_t h = two ? in_sizes[2] : 1, wd = in_sizes[two ? 3 : 2];
  const int64_t ho = two ? gy.size(2) : 1, wo = gy.size(two ? 3 : 2);
  const int64_t sh = two ? stride[0] : 1, sw = stride.back(), ph = two ? pad[0] : 0, pw = pad.back();
  const int64_t taps = ci * kh * kw, len = ho * wo;
  const Tensor cols = at::matmul(w.reshape({co, taps}).t(), gy.reshape({batch, co, len})).contiguous();
  Tensor gx = at::zeros(in_sizes, gy.options());
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "hgqir_conv_input_grad", [&] {
    const scalar_t* pc = cols.data_ptr<scalar_t>();
    scalar_t* px = gx.data_ptr<scalar_t>();
    std::vector<int64_t> lo(kw), hi(kw);  // per tap column: the ow whose iw = ow * sw - pw + j is inside
    for (int64_t j = 0; j < kw; ++j) {
      lo[j] = std::max<int64_t>(0, (pw - j + sw - 1) / sw);
      hi[j] = std::max<int64_t>(lo[j], std::min<int64_t>(wo, (wd + pw - j + sw - 1) / sw));
    }
    at::parallel_for(0, batch, std::max<int64_t>(1, kGrain / std::max<int64_t>(taps * len, 1)), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t c = 0; c < ci; ++c) {
          scalar_t* plane = px + (b * ci + c) * h * wd;
          for (int64_t i = 0; i < kh; ++i) {
            for (int64_t j = 0; j < kw; ++j) {
              const scalar_t* src = pc + (b * taps + (c * kh + i) * kw + j) * len;
              for (int64_t oh = 0; oh < ho; ++oh) {
                const int64_t ih = oh * sh - ph + i;
                if (ih < 0 || ih >= h) continue;
                scalar_t* __restrict row = plane + ih * wd;
                const scalar_t* __restrict s = src + oh * wo;
                const int64_t off = j - pw;  // iw = ow * sw + off
                if (sw == 1) {
                  for (int64_t ow = lo[j]; ow < hi[j]; ++ow) row[ow + off] += s[ow];
                } else {
                  for (int64_t ow = lo[j]; ow < hi[j]; ++ow) row[ow * sw + off] += s[ow];
                }
              }
            }
          }
        }
      }
    });
  });
  return gx;
}

struct ChainFn : public torch::autograd::Function<ChainFn> {
  // Per layer: x (the linear map's input), wq, q - w, q - b, the ReLU's or output quantizer's
  // input, the quantizer's output (inner layers: q - x is recomputed from it) or its kept q - x
  // (the last layer, whose output the caller may change in place), the input quantizer's q - x
  // (kept: its input comes from the caller).
  static constexpr int64_t kSaved = 7;

  // With a non-empty `index` (and its `values`, and every weight the EBOPs count in cost_ws, as
  // hgqir::ebops takes them) the chain also returns the cost scale * EBOPs + l1 * sum(bits),
  // evaluated after its ranges are updated: the regularizer of the step without a call of its
  // own (an empty tensor if a weight's dtype is not f's). Without an index the second output is
  // 0 (no gradient).
  static variable_list forward(AutogradContext* ctx, const Tensor& x_in, at::TensorList params, const Tensor& f,
                               Tensor vmax, Tensor vmin, const Tensor& plan, at::TensorList cost_ws,
                               const Tensor& index, const Tensor& values, double scale, double l1, double decay) {
    at::AutoDispatchBelowADInplaceOrView guard;
    TORCH_CHECK(x_in.device().is_cpu() && f.device().is_cpu() && vmax.device().is_cpu() && vmin.device().is_cpu(),
                "hgqir::chain runs on CPU tensors only");
    TORCH_CHECK(vmax.numel() == vmin.numel(), "hgqir::chain: vmax and vmin differ in length");
    const std::vector<ChainLayer> layers = parse_plan(plan, f.numel(), vmax.numel());
    int64_t want = 0;
    for (const ChainLayer& L : layers) want += L.params();
    TORCH_CHECK(want == int64_t(params.size()), "hgqir::chain: the plan takes ", want, " weights and biases, got ",
                params.size());
    const auto dtype = x_in.scalar_type();
    const Tensor fw = contiguous_as(f, dtype);  // one conversion for the whole chain (none in training)
    Tensor hi = contiguous_as(vmax, dtype);
    Tensor lo = contiguous_as(vmin, dtype);
    std::vector<Tensor> saved;
    saved.reserve(kSaved * layers.size() + 4);
    Tensor h = x_in;
    size_t pi = 0;
    for (const ChainLayer& L : layers) {
      const bool last = &L == &layers.back();
      Tensor x, wq, dw, db, src, qd, delta_in, y = h;
      if (L.kind != kLayerQuantizer) {
        const Tensor& w = params[pi++];
        const Tensor b = L.b_off >= 0 ? params[pi++] : Tensor();
        x = h.contiguous();
        if (L.i_off >= 0) {
          std::tie(x, delta_in) = act_quant_at(x, fw, L.i_off, hi, lo, L.i_roff, L.i_groups, L.in_gidx, L.in_gidx_len,
                                               L.imode, false, decay);
        }
        dw = at::empty({w.numel()}, fw.options());
        wq = weight_cast(fw, L.w_off, w, L.wmode, dw, 0);
        Tensor bq;
        if (b.defined()) {
          db = at::empty({b.numel()}, fw.options());
          bq = weight_cast(fw, L.b_off, b, L.bmode, db, 0);
        }
        if (L.kind == kLayerLinear) {
          TORCH_CHECK(x.dim() == 2, "hgqir::chain: a fused linear layer takes [batch, features]");
          y = at::linear(x, wq, bq);
        } else {
          const std::vector<int64_t> ones(L.stride.size(), 1), zeros(L.stride.size(), 0);
          y = at::convolution(x, wq, bq, L.stride, L.pad, ones, false, zeros, 1);
        }
      }
      Tensor out;
      if (L.a_off >= 0) {
        y = y.contiguous();
        Tensor delta;
        std::tie(out, delta) =
            act_quant_at(y, fw, L.a_off, hi, lo, L.r_off, L.groups, L.gidx, L.gidx_len, L.amode, L.relu != 0, decay,
                         last);
        qd = last ? delta : out;
        if (L.relu || !last) src = y;
      } else {
        out = L.relu ? at::relu(y) : y;
        if (L.relu) src = y;
      }
      h = out;
      for (Tensor* t : {&x, &wq, &dw, &db, &src, &qd, &delta_in}) saved.push_back(std::move(*t));
    }
    if (hi.data_ptr() != vmax.data_ptr()) vmax.copy_(hi.view(vmax.sizes()));  // folded in a copy
    if (lo.data_ptr() != vmin.data_ptr()) vmin.copy_(lo.view(vmin.sizes()));
    Tensor cost, bits;
    bool same_dtype = true;  // as hgqir::ebops is used: weights in f's dtype (else no cost, empty)
    for (const Tensor& w : cost_ws) same_dtype = same_dtype && w.scalar_type() == f.scalar_type();
    if (index.numel() && same_dtype) {
      double value;
      std::tie(value, bits) = ebops_value(f, cost_ws, vmax, vmin, Plan(index, values), scale, l1);
      cost = at::scalar_tensor(value, f.options());
    } else {
      cost = index.numel() ? at::empty({0}, f.options()) : at::zeros({}, f.options());
      ctx->mark_non_differentiable({cost});
    }
    saved.push_back(bits);
    saved.push_back(index);
    saved.push_back(values);
    saved.push_back(f);
    ctx->save_for_backward(saved);
    ctx->saved_data["plan"] = plan;
    ctx->saved_data["ranges"] = vmax.numel();
    ctx->saved_data["cost_ws"] = int64_t(cost_ws.size());
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["l1"] = l1;
    return {h, cost};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const Tensor& f = s.back();
    const Tensor &bits = s[s.size() - 4], &index = s[s.size() - 3], &values = s[s.size() - 2];
    const Tensor plan = ctx->saved_data["plan"].toTensor();
    // The plan's version counts the backward passes through this chain (its values never
    // change): fast/step.py StepCost reads it to know whether a kept cost's graph is still there.
    torch::autograd::impl::bump_version(plan);
    const std::vector<ChainLayer> layers = parse_plan(plan, f.numel(), ctx->saved_data["ranges"].toInt());
    int64_t np = 0;
    for (const ChainLayer& L : layers) np += L.params();
    const int64_t at_f = 1 + np;
    // x, params, f, vmax, vmin, plan, cost_ws, index, values, scale, l1
    variable_list out(at_f + 4 + ctx->saved_data["cost_ws"].toInt() + 5);
    const bool want_f = ctx->needs_input_grad(at_f);
    Tensor gf = want_f ? at::zeros(f.sizes(), f.options()) : Tensor();
    Tensor g = grads[0];
    if (want_f && bits.defined() && grads[1].defined()) {  // the cost's gradient, as autograd would add it
      ebops_grad_into(gf, bits, Plan(index, values), ctx->saved_data["scale"].toDouble(), ctx->saved_data["l1"].toDouble(),
                      scalar_of(grads[1]));  // gf is all zeros here: the cast of the cost's gradient
    }
    if (!g.defined()) {
      out[at_f] = gf;
      return out;
    }
    int64_t pi = np;
    for (int64_t l = int64_t(layers.size()) - 1; l >= 0; --l) {
      const ChainLayer& L = layers[l];
      const Tensor* t = s.data() + kSaved * l;
      const Tensor &x = t[0], &wq = t[1], &dw = t[2], &db = t[3], &src = t[4], &qd = t[5], &delta_in = t[6];
      const bool last = l == int64_t(layers.size()) - 1;
      Tensor gy = g;
      if (L.a_off >= 0) {
        std::vector<double> acc(L.groups, 0.0);
        Tensor through = last ? act_backward(g, qd, Tensor(), src, L.relu != 0, L.gidx, acc.data())
                              : act_backward(g, Tensor(), qd, src, L.relu != 0, L.gidx, acc.data());
        if (L.relu) gy = through;
        if (want_f) add_grad_f(gf, L.a_off, acc.data(), L.groups);
      } else if (L.relu) {
        gy = at::threshold_backward(g, src, 0);
      }
      if (L.kind == kLayerQuantizer) {
        g = gy;
        continue;
      }
      pi -= L.params();
      const bool has_b = db.defined();
      const bool quantized_in = L.i_off >= 0;
      const bool need_gx = l > 0 || ctx->needs_input_grad(0) || (quantized_in && want_f);
      Tensor gx, gw, gb;
      if (L.kind == kLayerLinear) {  // as autograd differentiates addmm(b, x, wq.t())
        if (need_gx) gx = gy.mm(wq);
        gw = gy.t().mm(x);
        if (has_b) gb = gy.sum(0);
      } else {
        const int64_t nd = int64_t(L.stride.size());
        const std::vector<int64_t> ones(nd, 1), zeros(nd, 0);
        std::vector<int64_t> bias_sizes;
        if (has_b) bias_sizes.push_back(wq.size(0));
        // Few input channels (a first layer): the fold is faster than ATen's (measured with a
        // batch of 128, one thread: 1.3x the whole layer step at 1 channel, even at 3, slower
        // from 4); otherwise ATen's, in the same call as the weight gradient.
        const bool fold = need_gx && wq.size(1) <= 3;
        auto res = at::convolution_backward(gy, x, wq, bias_sizes, L.stride, L.pad, ones, false, zeros, 1,
                                            {need_gx && !fold, true, has_b});
        gx = fold ? conv_input_grad(gy, wq, x.sizes(), L.stride, L.pad) : std::get<0>(res);
        gw = std::get<1>(res);
        gb = std::get<2>(res);
      }
      if (want_f) {
        weight_grad_f(gf, L.w_off, gw, dw);
        if (has_b) weight_grad_f(gf, L.b_off, gb, db);
        if (quantized_in) {  // the input quantizer: straight through, its f from the input gradient
          std::vector<double> acc(L.i_groups, 0.0);
          act_backward(gx, delta_in, Tensor(), Tensor(), false, L.in_gidx, acc.data());
          add_grad_f(gf, L.i_off, acc.data(), L.i_groups);
        }
      }
      out[1 + pi] = gw;
      if (has_b) out[2 + pi] = gb;
      g = gx;
    }
    if (ctx->needs_input_grad(0)) out[0] = g;
    out[at_f] = gf;
    return out;
  }
};

Tensor chain_autograd(const Tensor& x, at::TensorList params, const Tensor& f, Tensor& vmax, Tensor& vmin,
                      const Tensor& plan, double decay) {
  const Tensor none = at::empty({0}, plan.options());
  return ChainFn::apply(x, params, f, vmax, vmin, plan, at::TensorList(), none, none, 0.0, 0.0, decay)[0];
}

std::tuple<Tensor, Tensor> chain_cost_autograd(const Tensor& x, at::TensorList params, const Tensor& f, Tensor& vmax,
                                               Tensor& vmin, const Tensor& plan, at::TensorList cost_ws,
                                               const Tensor& index, const Tensor& values, double scale, double l1,
                                               double decay) {
  TORCH_CHECK(index.numel() > 0, "hgqir::chain_cost: empty EBOPs index");
  auto out = ChainFn::apply(x, params, f, vmax, vmin, plan, cost_ws, index, values, scale, l1, decay);
  return {out[0], out[1]};
}

}  // namespace

int64_t layout() { return kLayoutHash; }

TORCH_LIBRARY(hgqir, m) {
  m.def("layout() -> int", &layout);
  m.def("act_quant(Tensor x, Tensor f, Tensor(a!) vmax, Tensor(b!) vmin, Tensor gidx, int mode, float decay=1.0) -> Tensor");
  m.def("weight_quant(Tensor f, Tensor[] ws, int offset, int mode) -> Tensor[]");
  m.def("ebops(Tensor f, Tensor[] ws, Tensor vmax, Tensor vmin, Tensor index, Tensor values, float scale, float l1) -> Tensor");
  m.def("chain(Tensor x, Tensor[] params, Tensor f, Tensor(a!) vmax, Tensor(b!) vmin, Tensor plan, float decay=1.0) -> Tensor");
  m.def(
      "chain_cost(Tensor x, Tensor[] params, Tensor f, Tensor(a!) vmax, Tensor(b!) vmin, Tensor plan, "
      "Tensor[] cost_ws, Tensor index, Tensor values, float scale, float l1, float decay=1.0) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(hgqir, Autograd, m) {
  m.impl("act_quant", act_quant_autograd);
  m.impl("weight_quant", weight_quant_autograd);
  m.impl("ebops", ebops_autograd);
  m.impl("chain", chain_autograd);
  m.impl("chain_cost", chain_cost_autograd);
}

TORCH_LIBRARY_IMPL(hgqir, CPU, m) {
  m.impl("act_quant", act_quant_cpu);
  m.impl("weight_quant", weight_quant_cpu);
}
