// Fused CPU kernels for training the hgqir PyTorch shims (see frontends/torch_native.py).
//
// Three operators, each one autograd node whose forward and backward run in C++ without
// touching Python: on the small tensors of a trigger-sized model, a training step is dominated
// by per-call overhead, not arithmetic, so every quantizer is one call each way.
//
//   hgqir::act_quant(x, f, vmax, vmin, gidx, mode)     activation quantizer, running range
//   hgqir::weight_quant(f, ws, offset, mode)           all weights of one rounding mode
//   hgqir::ebops(f, ws, vmax, vmin, ...)               beta * EBOPs + l1 * sum(bits)
//
// The arithmetic is the Python training path's (frontends/torch_quant.py, torch_bits.py,
// torch_ebops.py), operation for operation in the same dtype, so the quantized values and bit
// counts are identical; gradient sums are accumulated in double.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

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

constexpr double kLn2 = 0.693147180559945309417232121458176568;
constexpr int64_t kGrain = 1 << 16;  // elements per parallel task (smaller tensors: one thread)

// Rounding of integer-scaled values in training: 0 nearest (ties to even, as torch.round),
// 1 floor (TRN), 2 toward zero (TRN_ZERO). Loops are instantiated per mode (they vectorize).
template <int Mode, typename T>
inline T round_as(T v) {
  if constexpr (Mode == 1) {
    return std::floor(v);
  } else if constexpr (Mode == 2) {
    return std::trunc(v);
  } else {
    return std::nearbyint(v);
  }
}

#define HGQIR_BY_MODE(mode, ...)            \
  switch (mode) {                           \
    case 1: {                               \
      constexpr int kMode = 1;              \
      __VA_ARGS__;                          \
      break;                                \
    }                                       \
    case 2: {                               \
      constexpr int kMode = 2;              \
      __VA_ARGS__;                          \
      break;                                \
    }                                       \
    default: {                              \
      constexpr int kMode = 0;              \
      __VA_ARGS__;                          \
    }                                       \
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
// (torch_quant.width_of_mantissas): ceil(log2(top)) plus a sign bit when lo < 0, where
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
// One sample: quantize, keep q - x for the gradient, fold q into the per-element range.
// With Relu, x is first clamped at 0 as torch.relu does (nan stays nan).
template <int Mode, bool ExactInverse, bool Relu, typename T>
void act_row(const T* __restrict x, T* __restrict out, T* __restrict delta, const T* __restrict scale,
             const T* __restrict inv, T* __restrict top, T* __restrict bottom, int64_t n) {
  int nan = 0;
  for (int64_t j = 0; j < n; ++j) {
    const T a = Relu ? (x[j] < T(0) ? T(0) : x[j]) : x[j];
    const T v = round_as<Mode>(a * scale[j]);
    const T q = ExactInverse ? v * inv[j] : v / scale[j];
    out[j] = q;
    delta[j] = q - a;
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

// x: [batch, n] (any shape, batch first); f, vmax, vmin: one entry per group; gidx: group of
// each of the n elements (int64), or empty when every element is its own group.
std::vector<Tensor> act_quant_forward(const Tensor& x_in, const Tensor& f_in, Tensor vmax, Tensor vmin,
                                      const Tensor& gidx_in, int64_t mode, bool relu = false) {
  TORCH_CHECK(x_in.device().is_cpu(), "hgqir::act_quant runs on CPU tensors only");
  TORCH_CHECK(x_in.dim() >= 1, "hgqir::act_quant needs a batch axis");
  const Tensor x = x_in.contiguous();
  const auto dtype = x.scalar_type();
  const int64_t batch = x.size(0);
  const int64_t n = batch ? x.numel() / batch : 0;
  const int64_t groups = f_in.numel();
  const Tensor gidx = gidx_in.numel() ? gidx_in.contiguous() : gidx_in;
  TORCH_CHECK(gidx.numel() ? gidx.numel() == n : groups == n, "hgqir::act_quant: f has ", groups,
              " groups for ", n, " elements per sample");
  TORCH_CHECK(vmax.numel() == groups && vmin.numel() == groups, "hgqir::act_quant: range size mismatch");
  Tensor out = at::empty_like(x);
  Tensor delta = at::empty_like(x);
  const Tensor f = contiguous_as(f_in, dtype);
  Tensor hi = contiguous_as(vmax, dtype);
  Tensor lo = contiguous_as(vmin, dtype);
  AT_DISPATCH_FLOATING_TYPES(dtype, "hgqir_act_quant", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pf = f.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    scalar_t* pd = delta.data_ptr<scalar_t>();
    scalar_t* ph = hi.data_ptr<scalar_t>();
    scalar_t* pl = lo.data_ptr<scalar_t>();
    const int64_t* pg = gidx.numel() ? gidx.data_ptr<int64_t>() : nullptr;
    // Per element of a sample: the scale and its inverse (multiplying by an exact power of two
    // is the division, bit for bit; extreme scales fall back to dividing).
    std::vector<scalar_t> scale(n), inv(n);
    const bool exact_inverse = normal_scales(pf, groups);
    for (int64_t j = 0; j < n; ++j) {
      const scalar_t fr = std::nearbyint(pf[pg ? pg[j] : j]);
      scale[j] = pow2(fr);
      inv[j] = exact_inverse ? pow2_normal(-fr) : scalar_t(0);
    }
    constexpr scalar_t kInf = std::numeric_limits<scalar_t>::infinity();
    std::vector<scalar_t> top(n, -kInf), bottom(n, kInf);
    std::mutex merge;
    // Rows in parallel for large batches (ATen's threads); each chunk folds its own range and
    // merges it once: max and min do not depend on the order, so results are deterministic.
    at::parallel_for(0, batch, std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)), [&](int64_t b0, int64_t b1) {
      const bool whole = b0 == 0 && b1 == batch;
      std::vector<scalar_t> local_top, local_bottom;
      if (!whole) {
        local_top.assign(n, -kInf);
        local_bottom.assign(n, kInf);
      }
      scalar_t* tp = whole ? top.data() : local_top.data();
      scalar_t* bt = whole ? bottom.data() : local_bottom.data();
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t row = b * n;
        if (exact_inverse && relu) {
          HGQIR_BY_MODE(mode, act_row<kMode, true, true>(px + row, po + row, pd + row, scale.data(), inv.data(), tp, bt, n))
        } else if (exact_inverse) {
          HGQIR_BY_MODE(mode, act_row<kMode, true, false>(px + row, po + row, pd + row, scale.data(), inv.data(), tp, bt, n))
        } else if (relu) {
          HGQIR_BY_MODE(mode, act_row<kMode, false, true>(px + row, po + row, pd + row, scale.data(), inv.data(), tp, bt, n))
        } else {
          HGQIR_BY_MODE(mode, act_row<kMode, false, false>(px + row, po + row, pd + row, scale.data(), inv.data(), tp, bt, n))
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
    for (int64_t j = 0; j < n; ++j) {  // fold the batch's per-element range into the groups
      const int64_t g = pg ? pg[j] : j;
      ph[g] = (top[j] > ph[g] || top[j] != top[j]) ? top[j] : ph[g];
      pl[g] = (bottom[j] < pl[g] || bottom[j] != bottom[j]) ? bottom[j] : pl[g];
    }
  });
  if (hi.data_ptr() != vmax.data_ptr()) vmax.copy_(hi.view(vmax.sizes()));  // folded in a copy
  if (lo.data_ptr() != vmin.data_ptr()) vmin.copy_(lo.view(vmin.sizes()));
  return {out, delta};
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

// Sums over the batch of grad * (q - x) per group (double, in `acc`, added to). With `pre` (the
// pre-activation of a fused ReLU) also returns the gradient through the ReLU: grad where
// pre > 0 (as torch's threshold_backward), else 0; otherwise returns nothing.
Tensor act_backward(const Tensor& grad_in, const Tensor& delta, const Tensor& pre, const Tensor& gidx, double* acc) {
  const Tensor grad = contiguous_as(grad_in, delta.scalar_type());
  const int64_t batch = delta.size(0);
  const int64_t n = batch ? delta.numel() / batch : 0;
  std::vector<double> per_element(n, 0.0);
  Tensor through;
  if (pre.defined()) through = at::empty_like(delta);
  AT_DISPATCH_FLOATING_TYPES(delta.scalar_type(), "hgqir_act_quant_backward", [&] {
    const scalar_t* pgr = grad.data_ptr<scalar_t>();
    const scalar_t* pd = delta.data_ptr<scalar_t>();
    const scalar_t* pp = pre.defined() ? pre.data_ptr<scalar_t>() : nullptr;
    scalar_t* pt = pre.defined() ? through.data_ptr<scalar_t>() : nullptr;
    double* pe_all = per_element.data();
    // Columns in parallel for large tensors: every element's sum runs over the batch in order
    // whatever the thread count (deterministic).
    at::parallel_for(0, n, std::max<int64_t>(1, kGrain / std::max<int64_t>(batch, 1)), [&](int64_t j0, int64_t j1) {
      double* __restrict pe = pe_all;
      for (int64_t b = 0; b < batch; ++b) {
        const scalar_t* __restrict gr = pgr + b * n;
        const scalar_t* __restrict dr = pd + b * n;
        for (int64_t j = j0; j < j1; ++j) pe[j] += double(gr[j]) * double(dr[j]);
      }
      if (pp) {
        for (int64_t b = 0; b < batch; ++b) relu_through(pgr + b * n + j0, pp + b * n + j0, pt + b * n + j0, j1 - j0);
      }
    });
  });
  const int64_t* pg = gidx.numel() ? gidx.data_ptr<int64_t>() : nullptr;
  for (int64_t j = 0; j < n; ++j) acc[pg ? pg[j] : j] += per_element[j];
  return through;
}

// -ln2 * acc into a tensor of f's dtype (d out / d f = -ln2 * (q - x)).
template <typename Out>
void write_grad_f(Out* out, const double* acc, int64_t n) {
  for (int64_t g = 0; g < n; ++g) out[g] = Out(-kLn2 * acc[g]);
}

Tensor act_quant_grad_f(const Tensor& grad, const Tensor& delta, const Tensor& gidx, int64_t groups,
                        const Tensor& f_like) {
  std::vector<double> acc(groups, 0.0);
  act_backward(grad, delta, Tensor(), gidx, acc.data());
  Tensor gf = at::empty(f_like.sizes(), f_like.options());  // f's own dtype and shape
  AT_DISPATCH_FLOATING_TYPES(gf.scalar_type(), "hgqir_act_quant_grad_f",
                             [&] { write_grad_f(gf.data_ptr<scalar_t>(), acc.data(), groups); });
  return gf;
}

struct ActQuantFn : public torch::autograd::Function<ActQuantFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& f, Tensor vmax, Tensor vmin,
                        const Tensor& gidx, int64_t mode) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto res = act_quant_forward(x, f, vmax, vmin, gidx, mode);
    ctx->save_for_backward({res[1], gidx, f});
    return res[0];
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor& grad = grads[0];
    Tensor gf;
    if (ctx->needs_input_grad(1) && grad.defined()) gf = act_quant_grad_f(grad, saved[0], saved[1], saved[2].numel(), saved[2]);
    return {grad, gf, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor act_quant_autograd(const Tensor& x, const Tensor& f, Tensor& vmax, Tensor& vmin, const Tensor& gidx,
                          int64_t mode) {
  return ActQuantFn::apply(x, f, vmax, vmin, gidx, mode);
}

Tensor act_quant_cpu(const Tensor& x, const Tensor& f, Tensor& vmax, Tensor& vmin, const Tensor& gidx, int64_t mode) {
  return act_quant_forward(x, f, vmax, vmin, gidx, mode)[0];
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
  for (const Tensor& w_in : ws) {
    TORCH_CHECK(w_in.device().is_cpu(), "hgqir::weight_quant runs on CPU tensors only");
    TORCH_CHECK(w_in.scalar_type() == dtype, "hgqir::weight_quant: weights of one block share a dtype");
    const Tensor w = w_in.contiguous();
    const int64_t n = w.numel();
    Tensor q = at::empty(w.sizes(), w.options());
    AT_DISPATCH_FLOATING_TYPES(dtype, "hgqir_weight_quant", [&] {
      const scalar_t* pw = w.data_ptr<scalar_t>();
      const scalar_t* pf = f.data_ptr<scalar_t>() + offset + pos;
      scalar_t* pq = q.data_ptr<scalar_t>();
      scalar_t* pd = delta ? delta->data_ptr<scalar_t>() + pos : nullptr;
      if (normal_scales(pf, n)) {
        HGQIR_BY_MODE(mode, weight_row<kMode, true>(pw, pf, pq, pd, n))
      } else {
        HGQIR_BY_MODE(mode, weight_row<kMode, false>(pw, pf, pq, pd, n))
      }
    });
    outs.push_back(q);
    pos += n;
  }
  return outs;
}

// -ln2 * g * (q - w) into f's gradient at `offset` (the weight quantizer's surrogate).
void weight_grad_f(Tensor& gf, int64_t offset, const Tensor& g_in, const Tensor& delta) {
  const Tensor g = contiguous_as(g_in, delta.scalar_type());
  const int64_t n = delta.numel();
  AT_DISPATCH_FLOATING_TYPES(delta.scalar_type(), "hgqir_layer_grad_w", [&] {
    const scalar_t* pg = g.data_ptr<scalar_t>();
    const scalar_t* pd = delta.data_ptr<scalar_t>();
    AT_DISPATCH_FLOATING_TYPES(gf.scalar_type(), "hgqir_layer_grad_f", [&] {
      using out_t = scalar_t;
      out_t* pgf = gf.data_ptr<out_t>() + offset;
      for (int64_t e = 0; e < n; ++e) pgf[e] = out_t(-kLn2 * double(pg[e]) * double(pd[e]));
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

// ---------------------------------------------------------------- fused layers
// A whole layer of a training step as one autograd node: the weights and bias cast with their
// f (straight-through gradients), the linear map or convolution (ATen's own, so the values are
// the unfused path's bit for bit), an optional ReLU and an optional activation quantizer on the
// result (running range updated). `geometry` packs the static description:
//   [kind, relu, w_off, b_off, wmode, bmode, a_off, r_off, groups, amode,
//    i_off, i_roff, i_groups, imode, nd, stride[nd], pad[nd]]
// kind 0: no weights (a quantizer alone, after an optional ReLU); 1: linear on a 2-D input;
// 2: convolution (nd 1 or 2, no dilation, one group). w_off / b_off / a_off / i_off index the
// flat f, r_off / i_roff the flat ranges; a_off < 0: no output quantizer; i_off >= 0: the input
// is quantized first (the quantizer that feeds the layer, with group index in_gidx). vmax,
// vmin: the whole flat ranges.
struct Geometry {
  int64_t kind, relu, w_off, b_off, wmode, bmode, a_off, r_off, groups, amode, i_off, i_roff, i_groups, imode;
  std::vector<int64_t> stride, pad;

  explicit Geometry(at::IntArrayRef g) {
    constexpr int64_t kHead = 15;
    TORCH_CHECK(int64_t(g.size()) >= kHead, "hgqir::layer: geometry too short");
    kind = g[0], relu = g[1], w_off = g[2], b_off = g[3], wmode = g[4], bmode = g[5];
    a_off = g[6], r_off = g[7], groups = g[8], amode = g[9];
    i_off = g[10], i_roff = g[11], i_groups = g[12], imode = g[13];
    const int64_t nd = g[14];
    TORCH_CHECK(int64_t(g.size()) == kHead + 2 * nd, "hgqir::layer: geometry length does not match its rank");
    stride.assign(g.begin() + kHead, g.begin() + kHead + nd);
    pad.assign(g.begin() + kHead + nd, g.end());
    TORCH_CHECK(kind >= 0 && kind <= 2 && (kind != 2 || nd == 1 || nd == 2), "hgqir::layer: unknown layer kind");
    TORCH_CHECK(kind != 0 || (a_off >= 0 && i_off < 0), "hgqir::layer: a quantizer alone takes no input quantizer");
  }
};

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

struct LayerFn : public torch::autograd::Function<LayerFn> {
  // params: [], [w] or [w, b] (autograd takes no undefined inputs).
  static Tensor forward(AutogradContext* ctx, const Tensor& x_in, at::TensorList params, const Tensor& f, Tensor vmax,
                        Tensor vmin, const Tensor& gidx, const Tensor& in_gidx, at::IntArrayRef geometry) {
    at::AutoDispatchBelowADInplaceOrView guard;
    TORCH_CHECK(x_in.device().is_cpu() && f.device().is_cpu(), "hgqir::layer runs on CPU tensors only");
    const Geometry geo(geometry);
    const Tensor w = params.size() > 0 ? params[0] : Tensor();
    const Tensor b = params.size() > 1 ? params[1] : Tensor();
    Tensor x = x_in, wq, bq, dw, db, y = x_in, delta_in;
    if (geo.kind) {
      TORCH_CHECK(w.defined(), "hgqir::layer: a linear or conv layer needs its weight");
      x = x_in.contiguous();
      if (geo.i_off >= 0) {
        TORCH_CHECK(geo.i_off + geo.i_groups <= f.numel() && geo.i_roff + geo.i_groups <= vmax.numel(),
                    "hgqir::layer: input quantizer offsets out of range");
        auto res = act_quant_forward(x, f.narrow(0, geo.i_off, geo.i_groups), vmax.narrow(0, geo.i_roff, geo.i_groups),
                                     vmin.narrow(0, geo.i_roff, geo.i_groups), in_gidx, geo.imode);
        x = res[0];
        delta_in = res[1];
      }
      wq = weight_quant_forward(f, {w}, geo.w_off, geo.wmode, &dw)[0];
      if (b.defined()) bq = weight_quant_forward(f, {b}, geo.b_off, geo.bmode, &db)[0];
      if (geo.kind == 1) {
        TORCH_CHECK(x.dim() == 2, "hgqir::layer: a fused linear layer takes [batch, features]");
        y = at::linear(x, wq, bq);
      } else {
        const std::vector<int64_t> ones(geo.stride.size(), 1), zeros(geo.stride.size(), 0);
        y = at::convolution(x, wq, bq, geo.stride, geo.pad, ones, false, zeros, 1);
      }
    }
    Tensor out, delta, pre;
    if (geo.relu) pre = y;
    if (geo.a_off >= 0) {
      TORCH_CHECK(geo.a_off + geo.groups <= f.numel() && geo.r_off + geo.groups <= vmax.numel(),
                  "hgqir::layer: quantizer offsets out of range");
      auto res = act_quant_forward(y, f.narrow(0, geo.a_off, geo.groups), vmax.narrow(0, geo.r_off, geo.groups),
                                   vmin.narrow(0, geo.r_off, geo.groups), gidx, geo.amode, geo.relu != 0);
      out = res[0];
      delta = res[1];
    } else {
      out = geo.relu ? at::relu(y) : y;
    }
    ctx->save_for_backward({geo.kind ? x : Tensor(), wq, dw, db, pre, delta, gidx, f, delta_in, in_gidx});
    ctx->saved_data["geometry"] = std::vector<int64_t>(geometry.begin(), geometry.end());
    ctx->saved_data["params"] = int64_t(params.size());
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    const Tensor &x = s[0], &wq = s[1], &dw = s[2], &db = s[3], &pre = s[4], &delta = s[5], &gidx = s[6], &f = s[7];
    const Tensor &delta_in = s[8], &in_gidx = s[9];
    const Geometry geo(ctx->saved_data["geometry"].toIntVector());
    const int64_t np = ctx->saved_data["params"].toInt();
    variable_list out(1 + np + 6);  // x, params, f, vmax, vmin, gidx, in_gidx, geometry
    const Tensor& g = grads[0];
    if (!g.defined()) return out;
    const int64_t at_f = 1 + np;
    const bool want_f = ctx->needs_input_grad(at_f);
    Tensor gf = want_f ? at::zeros(f.sizes(), f.options()) : Tensor();
    Tensor gy = g;
    if (geo.a_off >= 0) {
      std::vector<double> acc(geo.groups, 0.0);
      Tensor through = act_backward(g, delta, pre, gidx, acc.data());
      if (pre.defined()) gy = through;
      if (want_f) {
        AT_DISPATCH_FLOATING_TYPES(gf.scalar_type(), "hgqir_layer_grad_a",
                                   [&] { write_grad_f(gf.data_ptr<scalar_t>() + geo.a_off, acc.data(), geo.groups); });
      }
    } else if (pre.defined()) {
      gy = at::threshold_backward(g, pre, 0);
    }
    if (geo.kind == 0) {
      out[0] = gy;
      out[at_f] = gf;
      return out;
    }
    const bool has_b = db.defined();
    const bool quantized_in = geo.i_off >= 0;
    const bool need_gx = ctx->needs_input_grad(0) || (quantized_in && want_f);
    Tensor gx, gw, gb;
    if (geo.kind == 1) {  // as autograd differentiates addmm(b, x, wq.t())
      if (need_gx) gx = gy.mm(wq);
      gw = gy.t().mm(x);
      if (has_b) gb = gy.sum(0);
    } else {
      const int64_t nd = int64_t(geo.stride.size());
      const std::vector<int64_t> ones(nd, 1), zeros(nd, 0);
      std::vector<int64_t> bias_sizes;
      if (has_b) bias_sizes.push_back(wq.size(0));
      // Few input channels (a first layer): the fold is faster than ATen's (measured with a
      // batch of 128, one thread: 1.3x the whole layer step at 1 channel, even at 3, slower
      // from 4); otherwise ATen's, in the same call as the weight gradient.
      const bool fold = need_gx && wq.size(1) <= 3;
      auto res = at::convolution_backward(gy, x, wq, bias_sizes, geo.stride, geo.pad, ones, false, zeros, 1,
                                          {need_gx && !fold, true, has_b});
      gx = fold ? conv_input_grad(gy, wq, x.sizes(), geo.stride, geo.pad) : std::get<0>(res);
      gw = std::get<1>(res);
      gb = std::get<2>(res);
    }
    if (want_f) {
      weight_grad_f(gf, geo.w_off, gw, dw);
      if (has_b) weight_grad_f(gf, geo.b_off, gb, db);
      if (quantized_in) {  // the input quantizer: straight through, its f from the input gradient
        std::vector<double> acc(geo.i_groups, 0.0);
        act_backward(gx, delta_in, Tensor(), in_gidx, acc.data());
        AT_DISPATCH_FLOATING_TYPES(gf.scalar_type(), "hgqir_layer_grad_in",
                                   [&] { write_grad_f(gf.data_ptr<scalar_t>() + geo.i_off, acc.data(), geo.i_groups); });
      }
    }
    if (!ctx->needs_input_grad(0)) gx = Tensor();
    out[0] = gx;
    out[1] = gw;
    if (has_b) out[2] = gb;
    out[at_f] = gf;
    return out;
  }
};

Tensor layer_autograd(const Tensor& x, const std::optional<Tensor>& w, const std::optional<Tensor>& b, const Tensor& f,
                      Tensor& vmax, Tensor& vmin, const Tensor& gidx, const Tensor& in_gidx, at::IntArrayRef geometry) {
  std::vector<Tensor> params;
  if (w.has_value() && w->defined()) params.push_back(*w);
  if (b.has_value() && b->defined()) {
    TORCH_CHECK(!params.empty(), "hgqir::layer: a bias without a weight");
    params.push_back(*b);
  }
  return LayerFn::apply(x, at::TensorList(params), f, vmax, vmin, gidx, in_gidx, geometry);
}

// ---------------------------------------------------------------- EBOPs
// The bit-count vector lines up with f: every weight element (blocks in order), then every
// activation group. EBOPs = sum_r (A b)_r (B b)_r + sum_t max(b[ma_t], b[mb_t]), with
// M = [A; B] and N = [B^T A^T] in CSR. Everything static comes packed in two tensors (one
// argument each, so the call stays cheap), laid out by torch_ebops.EbopsIndex.native_tensors:
//   index: rows, |M crow|, |M col|, |N crow|, |N col|, |ma|, blocks, sizes[blocks],
//          modes[blocks], M crow, M col, N crow, N col, ma, mb        (int64)
//   values: M values, N values                                     (float64)
struct Plan {
  int64_t rows = 0, blocks = 0, pairs = 0;
  const int64_t *sizes, *modes, *m_crow, *m_col, *n_crow, *n_col, *ma, *mb;
  const double *m_val, *n_val;

  Plan(const Tensor& index, const Tensor& values) {
    TORCH_CHECK(index.scalar_type() == at::kLong && values.scalar_type() == at::kDouble && index.is_contiguous() &&
                    values.is_contiguous(),
                "hgqir::ebops: malformed index");
    const int64_t* h = index.data_ptr<int64_t>();
    rows = h[0];
    const int64_t n_mcrow = h[1], n_mcol = h[2], n_ncrow = h[3], n_ncol = h[4];
    pairs = h[5];
    blocks = h[6];
    sizes = h + 7;
    modes = sizes + blocks;
    m_crow = modes + blocks;
    m_col = m_crow + n_mcrow;
    n_crow = m_col + n_mcol;
    n_col = n_crow + n_ncrow;
    ma = n_col + n_ncol;
    mb = ma + pairs;
    TORCH_CHECK(mb + pairs == h + index.numel(), "hgqir::ebops: index length does not match its header");
    m_val = values.data_ptr<double>();
    n_val = m_val + n_mcol;
    TORCH_CHECK(n_mcol + n_ncol == values.numel(), "hgqir::ebops: values length does not match the index");
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

struct EbopsFn : public torch::autograd::Function<EbopsFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& f_in, at::TensorList ws, const Tensor& vmax,
                        const Tensor& vmin, const Tensor& index, const Tensor& values, double scale, double l1) {
    at::AutoDispatchBelowADInplaceOrView guard;
    TORCH_CHECK(f_in.device().is_cpu(), "hgqir::ebops runs on CPU tensors only");
    const Tensor f = f_in.contiguous();
    const Plan plan(index, values);
    const int64_t nb = f.numel();
    Tensor bits = at::empty({nb + 2 * plan.rows}, f.options().dtype(at::kDouble));  // bits, then M b
    double* pb = bits.data_ptr<double>();
    AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "hgqir_ebops_bits", [&] { bit_counts<scalar_t>(f, ws, plan, vmax, vmin, pb); });
    double* puv = pb + nb;
    for (int64_t r = 0; r < 2 * plan.rows; ++r) {
      double acc = 0.0;
      for (int64_t k = plan.m_crow[r]; k < plan.m_crow[r + 1]; ++k) acc += plan.m_val[k] * pb[plan.m_col[k]];
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
    ctx->save_for_backward({bits, index, values, f_in});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["l1"] = l1;
    ctx->saved_data["n_inputs"] = int64_t(1 + ws.size() + 4 + 2);  // tensors, then scale and l1
    return at::scalar_tensor(value, f.options());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = ctx->get_saved_variables();
    const Tensor &bits = s[0], &f = s[3];
    const Plan plan(s[1], s[2]);
    const double g = grads[0].defined() ? grads[0].item<double>() : 0.0;
    const double scale = ctx->saved_data["scale"].toDouble() * g;
    const double l1 = ctx->saved_data["l1"].toDouble() * g;
    const int64_t nb = f.numel();
    const double* pb = bits.data_ptr<double>();
    const double* puv = pb + nb;
    Tensor gb = at::empty({nb}, bits.options());
    double* pg = gb.data_ptr<double>();
    for (int64_t c = 0; c < nb; ++c) {  // A^T (B b) + B^T (A b)
      double acc = 0.0;
      for (int64_t k = plan.n_crow[c]; k < plan.n_crow[c + 1]; ++k) acc += plan.n_val[k] * puv[plan.n_col[k]];
      pg[c] = acc;
    }
    for (int64_t t = 0; t < plan.pairs; ++t) pg[pb[plan.ma[t]] >= pb[plan.mb[t]] ? plan.ma[t] : plan.mb[t]] += 1.0;
    for (int64_t c = 0; c < nb; ++c) {
      // no gradient where a width is clipped at 0 (or a weight is 0)
      pg[c] = pb[c] > 0.0 ? pg[c] * scale + l1 : 0.0;
    }
    // one gradient per forward input: f, then nothing for the weights, ranges, index and scalars
    variable_list out(ctx->saved_data["n_inputs"].toInt());
    out[0] = gb.to(f.scalar_type()).view(f.sizes());  // f is float32 in training: one small cast
    return out;
  }
};

Tensor ebops_autograd(const Tensor& f, at::TensorList ws, const Tensor& vmax, const Tensor& vmin, const Tensor& index,
                      const Tensor& values, double scale, double l1) {
  return EbopsFn::apply(f, ws, vmax, vmin, index, values, scale, l1);
}

}  // namespace

TORCH_LIBRARY(hgqir, m) {
  m.def("act_quant(Tensor x, Tensor f, Tensor(a!) vmax, Tensor(b!) vmin, Tensor gidx, int mode) -> Tensor");
  m.def("weight_quant(Tensor f, Tensor[] ws, int offset, int mode) -> Tensor[]");
  m.def("ebops(Tensor f, Tensor[] ws, Tensor vmax, Tensor vmin, Tensor index, Tensor values, float scale, float l1) -> Tensor");
  m.def(
      "layer(Tensor x, Tensor? w, Tensor? b, Tensor f, Tensor(a!) vmax, Tensor(b!) vmin, Tensor gidx, Tensor in_gidx, "
      "int[] geometry) -> Tensor");
}

TORCH_LIBRARY_IMPL(hgqir, Autograd, m) {
  m.impl("act_quant", act_quant_autograd);
  m.impl("weight_quant", weight_quant_autograd);
  m.impl("ebops", ebops_autograd);
  m.impl("layer", layer_autograd);
}

TORCH_LIBRARY_IMPL(hgqir, CPU, m) {
  m.impl("act_quant", act_quant_cpu);
  m.impl("weight_quant", weight_quant_cpu);
}
