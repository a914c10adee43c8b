// The lean decode step: a decode step (each sequence's next token, and any drafts after it)
// through a Llama-family model with int8 weights, in one native call instead of ~2,500
// dispatched operators per step.
//
// Numbers: every linear layer computes what torch's dynamic int8 linear (fbgemm) computes. The
// step's input rows are quantized to uint8 with one scale and zero point (their min and max, the
// zero point nudged to an integer), multiplied with the same int8 weights in int32, and
// dequantized in the same order, so the outputs agree bit for bit. q/k/v and gate/up share their
// input, so each pair runs as one fused matrix with one quantization. Norms, RoPE, SiLU and the
// residual adds follow transformers' formulas operation by operation (no fused multiply-adds, see
// the pragma); a sum of squares or an exp may differ from torch's in the last bit.
//
// Threads: the whole step is one OpenMP region. Each matrix is split by output rows across the
// threads; every thread keeps its own copy of the hidden states and recomputes the small
// per-token work (norm, quantization, SiLU) itself, so the only synchronisation is a barrier
// after each matrix and after attention (five a layer, six with drafts). Each thread places
// (RoPE, cache write) and attends its share of the step's tokens: with one token, thread 0.
//
// Weights are packed for VNNI: groups of ROWS output rows, and for every 4 input columns the
// ROWS x 4 bytes of the group together, so one 32-bit broadcast of 4 input bytes feeds
// ROWS/16 `vpdpbusd` instructions and each thread streams its rows from memory in order. Up to
// MAX_TILE tokens share each load of the weights.
#pragma GCC optimize("fp-contract=off")

#include "lean_decode.h"

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "decode_attention.h"

namespace {

constexpr int64_t ROWS = 64;           // output rows of one packed group
constexpr float SMALL_SCALE = 6.1e-5f;  // fbgemm's smallest input scale

// An int8 weight [n, k] packed for VNNI, with what dequantizing its products needs.
struct Int8Matrix {
  torch::Tensor packed;    // [groups, k_pad / 4, ROWS, 4] int8
  torch::Tensor col_sums;  // [groups * ROWS] int32: each output row's sum of weights
  torch::Tensor scales;    // [groups * ROWS] float32: each output row's weight scale
  torch::Tensor bias;      // [groups * ROWS] float32
  bool has_bias = false;
  int64_t n = 0, k = 0, k_pad = 0, groups = 0;
};

Int8Matrix pack(const torch::Tensor& weight, const torch::Tensor& scales,
                const torch::Tensor& bias) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kChar, "weight: int8 [n, k]");
  const int64_t n = weight.size(0), k = weight.size(1);
  TORCH_CHECK(scales.scalar_type() == at::kFloat && scales.numel() == n, "scales: float32 [n]");
  TORCH_CHECK(bias.numel() == 0 || (bias.scalar_type() == at::kFloat && bias.numel() == n),
              "bias: float32 [n] or empty");
  Int8Matrix m;
  m.n = n;
  m.k = k;
  m.k_pad = (k + 3) / 4 * 4;
  m.groups = (n + ROWS - 1) / ROWS;
  const int64_t n_pad = m.groups * ROWS, kg = m.k_pad / 4;
  m.packed = torch::zeros({m.groups, kg, ROWS, 4}, torch::kChar);
  m.col_sums = torch::zeros({n_pad}, torch::kInt);
  m.scales = torch::ones({n_pad}, torch::kFloat);
  m.bias = torch::zeros({n_pad}, torch::kFloat);
  m.has_bias = bias.numel() > 0;
  const auto w = weight.contiguous();
  const int8_t* src = w.data_ptr<int8_t>();
  int8_t* dst = m.packed.data_ptr<int8_t>();
  int32_t* sums = m.col_sums.data_ptr<int32_t>();
  for (int64_t r = 0; r < n; ++r) {
    const int64_t g = r / ROWS, lane = r % ROWS;
    for (int64_t c = 0; c < k; ++c) {
      dst[((g * kg + c / 4) * ROWS + lane) * 4 + c % 4] = src[r * k + c];
      sums[r] += src[r * k + c];
    }
  }
  const auto sc = scales.contiguous();
  std::memcpy(m.scales.data_ptr<float>(), sc.data_ptr<float>(), n * sizeof(float));
  if (m.has_bias) {
    const auto b = bias.contiguous();
    std::memcpy(m.bias.data_ptr<float>(), b.data_ptr<float>(), n * sizeof(float));
  }
  return m;
}

// `tokens` rows of k floats (x[t * x_stride + i]) quantized as fbgemm's dynamic linear quantizes
// its input: uint8 in [0, qmax], one scale and zero point for all the rows, chosen from their
// min and max (both widened to include 0). `out` has k_pad bytes a row; the padding is 0.
struct QuantizedInput {
  float scale;
  int32_t zero_point;
};

QuantizedInput quantize_input(const float* x, int64_t tokens, int64_t k, int64_t x_stride,
                              int64_t k_pad, int32_t qmax, uint8_t* out) {
  float lo = x[0], hi = x[0];
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < k; ++i) {
      lo = std::min(lo, x[t * x_stride + i]);
      hi = std::max(hi, x[t * x_stride + i]);
    }
  }
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  float scale = static_cast<float>((static_cast<double>(hi) - lo) / qmax);
  if (scale == 0.0f || std::isinf(1.0f / scale)) scale = 0.1f;
  if (scale < SMALL_SCALE) {
    const float amplifier = SMALL_SCALE / scale;
    scale = SMALL_SCALE;
    if (lo == 0.0f) {
      hi = SMALL_SCALE * qmax;
    } else if (hi == 0.0f) {
      lo = -SMALL_SCALE * qmax;
    } else {
      lo *= amplifier;
      hi *= amplifier;
    }
  }
  const double from_min = 0.0 - lo / static_cast<double>(scale);
  const double from_max = qmax - hi / static_cast<double>(scale);
  const double error_min = std::abs(lo / static_cast<double>(scale));
  const double error_max = qmax + std::abs(hi / static_cast<double>(scale));
  const double initial = error_min < error_max ? from_min : from_max;
  const int32_t zero_point =
      initial < 0 ? 0 : initial > qmax ? qmax : static_cast<int32_t>(std::nearbyint(initial));
  const float inverse = 1.0f / scale;
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = x + t * x_stride;
    uint8_t* q_row = out + t * k_pad;
    for (int64_t i = 0; i < k; ++i) {  // fbgemm: round(clamp(x * inverse + zero point)), fused
      const float q = std::fma(row[i], inverse, static_cast<float>(zero_point));
      q_row[i] = static_cast<uint8_t>(
          std::nearbyint(std::min(std::max(q, 0.0f), static_cast<float>(qmax))));
    }
    for (int64_t i = k; i < k_pad; ++i) q_row[i] = 0;
  }
  return {scale, zero_point};
}

// The int32 dot products of one packed group's ROWS output rows with R quantized tokens (rows
// of k_groups * 4 bytes): acc[r * ROWS + row]. Each weight vector is loaded once for all R.
template <int R>
inline void group_products(const int8_t* w, const uint8_t* xq, int64_t k_groups, int32_t* acc) {
  const int64_t k_pad = 4 * k_groups;
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
  __m512i a[R][4];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) a[r][j] = _mm512_setzero_si512();
  for (int64_t c = 0; c < k_groups; ++c, w += ROWS * 4) {
    const __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 64);
    const __m512i w2 = _mm512_loadu_si512(w + 128), w3 = _mm512_loadu_si512(w + 192);
    for (int r = 0; r < R; ++r) {
      int32_t four;
      std::memcpy(&four, xq + r * k_pad + 4 * c, sizeof(four));
      const __m512i x = _mm512_set1_epi32(four);
      a[r][0] = _mm512_dpbusd_epi32(a[r][0], x, w0);
      a[r][1] = _mm512_dpbusd_epi32(a[r][1], x, w1);
      a[r][2] = _mm512_dpbusd_epi32(a[r][2], x, w2);
      a[r][3] = _mm512_dpbusd_epi32(a[r][3], x, w3);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) _mm512_storeu_si512(acc + r * ROWS + 16 * j, a[r][j]);
#else
  for (int64_t i = 0; i < R * ROWS; ++i) acc[i] = 0;
  for (int64_t c = 0; c < k_groups; ++c, w += ROWS * 4) {
    for (int r = 0; r < R; ++r) {
      const uint8_t* x = xq + r * k_pad + 4 * c;
      const int32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
      int32_t* out = acc + r * ROWS;
      for (int64_t row = 0; row < ROWS; ++row)
        out[row] += x0 * w[4 * row] + x1 * w[4 * row + 1] + x2 * w[4 * row + 2] +
                    x3 * w[4 * row + 3];
    }
  }
#endif
}

constexpr int64_t MAX_TILE = 4;  // tokens multiplied together: 16 accumulators in registers

// Output rows of groups [g0, g1) of `m` for `tokens` quantized tokens (xq: k_pad bytes each) into
// out[t * out_stride + row], with fbgemm's dequantization: float(acc - zero_point * col_sum) *
// (input_scale * row_scale), plus the bias in the same fused multiply-add.
void multiply_groups(const Int8Matrix& m, const uint8_t* xq, int64_t tokens, QuantizedInput q,
                     int64_t g0, int64_t g1, float* out, int64_t out_stride) {
  const int8_t* w = m.packed.data_ptr<int8_t>();
  const int32_t* sums = m.col_sums.data_ptr<int32_t>();
  const float* scales = m.scales.data_ptr<float>();
  const float* bias = m.bias.data_ptr<float>();
  const int64_t k_groups = m.k_pad / 4;
  alignas(64) int32_t acc[MAX_TILE * ROWS];
  for (int64_t g = g0; g < g1; ++g) {
    const int8_t* group = w + g * k_groups * ROWS * 4;
    for (int64_t t0 = 0; t0 < tokens; t0 += MAX_TILE) {
      const int64_t tile = std::min(MAX_TILE, tokens - t0);
      const uint8_t* x = xq + t0 * m.k_pad;
      switch (tile) {
        case 1: group_products<1>(group, x, k_groups, acc); break;
        case 2: group_products<2>(group, x, k_groups, acc); break;
        case 3: group_products<3>(group, x, k_groups, acc); break;
        default: group_products<4>(group, x, k_groups, acc); break;
      }
      for (int64_t t = 0; t < tile; ++t) {
        float* out_t = out + (t0 + t) * out_stride;
        for (int64_t r = 0; r < ROWS; ++r) {
          const int64_t row = g * ROWS + r;
          const int32_t raw = acc[t * ROWS + r] - q.zero_point * sums[row];
          const float multiplier = q.scale * scales[row];
          out_t[row] = m.has_bias ? std::fma(static_cast<float>(raw), multiplier, bias[row])
                                  : static_cast<float>(raw) * multiplier;
        }
      }
    }
  }
}

// [begin, end) of `n` items for this thread.
inline std::pair<int64_t, int64_t> share(int64_t n, int thread, int threads) {
  return {n * thread / threads, n * (thread + 1) / threads};
}

// This thread's share of `m`'s output rows (whole groups); out rows are m.groups * ROWS wide.
void multiply_share(const Int8Matrix& m, const uint8_t* xq, int64_t tokens, QuantizedInput q,
                    int thread, int threads, float* out) {
  const auto [g0, g1] = share(m.groups, thread, threads);
  multiply_groups(m, xq, tokens, q, g0, g1, out, m.groups * ROWS);
}

// transformers' RMSNorm of the Llama family: weight * (x * rsqrt(mean(x^2) + eps)).
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float variance = static_cast<float>(sum) / static_cast<float>(n);
  const float inv = 1.0f / std::sqrt(variance + eps);
  for (int64_t i = 0; i < n; ++i) {
    const float normed = x[i] * inv;
    out[i] = weight[i] * normed;
  }
}

// transformers' rotary embedding of one head: x * cos + rotate_half(x) * sin.
void rotate(float* x, const float* cos, const float* sin, int64_t d) {
  const int64_t half = d / 2;
  float rotated[512];
  for (int64_t i = 0; i < half; ++i) {
    rotated[i] = -x[i + half];
    rotated[i + half] = x[i];
  }
  for (int64_t i = 0; i < d; ++i) {
    const float a = x[i] * cos[i];
    const float b = rotated[i] * sin[i];
    x[i] = a + b;
  }
}

// Where thread 0's time in the step goes, summed over steps until read (`phase_times`). A matrix
// phase ends when the slower thread finishes its rows (the barrier), so it includes the wait.
enum Phase { QKV, ATTENTION, O_PROJ, GATE_UP, DOWN, LM_HEAD, NUM_PHASES };
constexpr const char* PHASE_NAMES[NUM_PHASES] = {"qkv", "attention", "o_proj",
                                                 "gate_up", "down", "lm_head"};

class PhaseClock {
 public:
  explicit PhaseClock(bool on) : on_(on), last_(now()) {}
  // The time since the previous mark goes to `phase`.
  void mark(std::array<double, NUM_PHASES>& totals, Phase phase) {
    if (!on_) return;
    const auto t = now();
    totals[phase] += std::chrono::duration<double>(t - last_).count();
    last_ = t;
  }

 private:
  static std::chrono::steady_clock::time_point now() { return std::chrono::steady_clock::now(); }
  bool on_;
  std::chrono::steady_clock::time_point last_;
};

struct Layer {
  Int8Matrix qkv, o, gate_up, down;
  torch::Tensor input_norm, post_norm;  // [hidden]
  torch::Tensor q_norm, k_norm;         // [head_dim] (Qwen3), or empty
  int64_t window = 0;                   // 0: none
};

class LeanDecoder {
 public:
  LeanDecoder(torch::Tensor embed, torch::Tensor final_norm, std::vector<torch::Tensor> lm_head,
              int64_t heads, int64_t kv_heads, int64_t head_dim, double eps, double scaling,
              int64_t qmax)
      : embed_(embed.contiguous()),
        final_norm_(final_norm.contiguous()),
        heads_(heads),
        kv_heads_(kv_heads),
        head_dim_(head_dim),
        eps_(static_cast<float>(eps)),
        scaling_(static_cast<float>(scaling)),
        qmax_(static_cast<int32_t>(qmax)) {
    TORCH_CHECK(embed_.dim() == 2 && embed_.scalar_type() == at::kFloat, "embed: float32 [V, h]");
    TORCH_CHECK(head_dim_ <= 512 && head_dim_ % 2 == 0, "head_dim");
    TORCH_CHECK(heads_ % kv_heads_ == 0, "heads must be a multiple of kv_heads");
    hidden_ = embed_.size(1);
    lm_head_ = pack(lm_head.at(0), lm_head.at(1), lm_head.at(2));
    TORCH_CHECK(lm_head_.k == hidden_, "lm_head's input size is not the hidden size");
  }

  // weights: q, k, v fused ([int8 weight, scales, bias] x 4: qkv, o, gate_up, down); norms:
  // input, post-attention, q_norm, k_norm (the last two may be empty).
  void add_layer(std::vector<torch::Tensor> weights, std::vector<torch::Tensor> norms,
                 int64_t window) {
    TORCH_CHECK(weights.size() == 12 && norms.size() == 4, "a layer has 4 matrices, 4 norms");
    Layer layer;
    layer.qkv = pack(weights[0], weights[1], weights[2]);
    layer.o = pack(weights[3], weights[4], weights[5]);
    layer.gate_up = pack(weights[6], weights[7], weights[8]);
    layer.down = pack(weights[9], weights[10], weights[11]);
    layer.input_norm = norms[0].contiguous();
    layer.post_norm = norms[1].contiguous();
    layer.q_norm = norms[2].contiguous();
    layer.k_norm = norms[3].contiguous();
    layer.window = window;
    const int64_t q_size = heads_ * head_dim_, kv_size = kv_heads_ * head_dim_;
    TORCH_CHECK(layer.qkv.k == hidden_ && layer.qkv.n == q_size + 2 * kv_size, "qkv shape");
    TORCH_CHECK(layer.o.k == q_size && layer.o.n == hidden_, "o_proj shape");
    TORCH_CHECK(layer.gate_up.k == hidden_ && layer.gate_up.n % 2 == 0, "gate/up shape");
    TORCH_CHECK(layer.down.k == layer.gate_up.n / 2 && layer.down.n == hidden_, "down shape");
    TORCH_CHECK(layer.input_norm.numel() == hidden_ && layer.post_norm.numel() == hidden_, "norm");
    TORCH_CHECK(layer.q_norm.numel() == 0 || layer.q_norm.numel() == head_dim_, "q_norm");
    TORCH_CHECK(layer.k_norm.numel() == 0 || layer.k_norm.numel() == head_dim_, "k_norm");
    layers_.push_back(std::move(layer));
  }

  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

  // Seconds thread 0 spent in each phase over the steps since the last call, and the steps.
  std::map<std::string, double> phase_times() {
    std::map<std::string, double> out;
    for (int i = 0; i < NUM_PHASES; ++i) out[PHASE_NAMES[i]] = phase_seconds_[i];
    out["steps"] = static_cast<double>(steps_);
    phase_seconds_.fill(0.0);
    steps_ = 0;
    return out;
  }

  // The bytes of packed weights one step reads.
  int64_t weight_bytes() const {
    int64_t bytes = lm_head_.packed.numel();
    for (const auto& l : layers_)
      bytes += l.qkv.packed.numel() + l.o.packed.numel() + l.gate_up.packed.numel() +
               l.down.packed.numel();
    return bytes;
  }

  // The logits [T, vocab] of the step's T rows: `tokens` [T] (int64). Row j's context, itself
  // last, is at contexts[starts[j], starts[j] + lengths[j]) (int64 slots; a sequence's drafted
  // rows share one context with growing lengths); cos and sin [T, head_dim] are the rows'
  // rotary embeddings. Each row's key and value are stored in every layer's cache at its own
  // slot, then each row attends to its context.
  torch::Tensor step(torch::Tensor tokens, torch::Tensor contexts, torch::Tensor starts,
                     torch::Tensor lengths, torch::Tensor cos, torch::Tensor sin,
                     std::vector<torch::Tensor> keys, std::vector<torch::Tensor> values,
                     std::vector<torch::Tensor> key_scales,
                     std::vector<torch::Tensor> value_scales) {
    const int64_t L = num_layers(), T = tokens.numel();
    for (const auto* t : {&tokens, &contexts, &starts, &lengths})
      TORCH_CHECK(t->scalar_type() == at::kLong && t->dim() == 1 && t->is_contiguous(),
                  "tokens, contexts, starts and lengths: int64 vectors");
    TORCH_CHECK(T > 0 && starts.numel() == T && lengths.numel() == T, "one start, length a row");
    const int64_t* token_p = tokens.data_ptr<int64_t>();
    const int64_t* start_p = starts.data_ptr<int64_t>();
    const int64_t* length_p = lengths.data_ptr<int64_t>();
    for (int64_t j = 0; j < T; ++j) {
      TORCH_CHECK(token_p[j] >= 0 && token_p[j] < embed_.size(0), "token id out of range");
      TORCH_CHECK(start_p[j] >= 0 && length_p[j] >= 1 &&
                      start_p[j] + length_p[j] <= contexts.numel(),
                  "a row's context lies outside `contexts`");
    }
    for (const auto* r : {&cos, &sin})
      TORCH_CHECK(r->scalar_type() == at::kFloat && r->is_contiguous() &&
                      r->numel() == T * head_dim_,
                  "cos, sin: float32 [T, head_dim]");
    TORCH_CHECK(static_cast<int64_t>(keys.size()) == L && static_cast<int64_t>(values.size()) == L &&
                    static_cast<int64_t>(key_scales.size()) == L &&
                    static_cast<int64_t>(value_scales.size()) == L,
                "one cache per layer");
    std::vector<llmserve::CacheLayer> caches(L);
    const int64_t* context_p = contexts.data_ptr<int64_t>();
    for (int64_t i = 0; i < L; ++i)
      caches[i] = cache_layer(keys[i], values[i], key_scales[i], value_scales[i], context_p,
                              contexts.numel());
    const int64_t vocab_pad = lm_head_.groups * ROWS;
    auto logits = torch::empty({T, vocab_pad}, torch::kFloat);
    {
      pybind11::gil_scoped_release no_gil;
      run(token_p, T, context_p, start_p, length_p, cos.data_ptr<float>(), sin.data_ptr<float>(),
          caches, logits.data_ptr<float>());
    }
    return vocab_pad == lm_head_.n ? logits : logits.narrow(1, 0, lm_head_.n).contiguous();
  }

  // One matrix alone (tests compare it with torch's dynamic int8 linear): x [T, k] float32, its
  // rows quantized together as torch does.
  static torch::Tensor linear(const Int8Matrix& m, torch::Tensor x, int64_t qmax) {
    TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.size(1) == m.k && x.size(0),
                "x: [T, k]");
    const auto xc = x.contiguous();
    const int64_t T = x.size(0);
    auto out = torch::empty({T, m.groups * ROWS}, torch::kFloat);
    std::vector<uint8_t> xq(T * m.k_pad);
    const QuantizedInput q = quantize_input(xc.data_ptr<float>(), T, m.k, m.k, m.k_pad,
                                            static_cast<int32_t>(qmax), xq.data());
    multiply_groups(m, xq.data(), T, q, 0, m.groups, out.data_ptr<float>(), m.groups * ROWS);
    return out.narrow(1, 0, m.n).contiguous();
  }

 private:
  llmserve::CacheLayer cache_layer(const torch::Tensor& keys, const torch::Tensor& values,
                                   const torch::Tensor& key_scales,
                                   const torch::Tensor& value_scales, const int64_t* slots,
                                   int64_t length) const {
    const auto dtype = keys.scalar_type();
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kChar,
                "cache dtype must be float32, bfloat16 or int8");
    TORCH_CHECK(values.scalar_type() == dtype && keys.is_contiguous() && values.is_contiguous() &&
                    keys.dim() == 3 && keys.sizes() == values.sizes() &&
                    keys.size(1) == kv_heads_ && keys.size(2) == head_dim_,
                "caches: [slots, kv_heads, head_dim]");
    for (int64_t t = 0; t < length; ++t)
      TORCH_CHECK(slots[t] >= 0 && slots[t] < keys.size(0), "slot out of range");
    llmserve::CacheLayer c{keys, values};
    if (dtype == at::kChar) {
      TORCH_CHECK(llmserve::are_row_scales(key_scales, keys) &&
                      llmserve::are_row_scales(value_scales, values),
                  "int8 caches need float32 scales [slots, kv_heads]");
      c.key_scales = key_scales.data_ptr<float>();
      c.value_scales = value_scales.data_ptr<float>();
    }
    return c;
  }

  void run(const int64_t* tokens, int64_t T, const int64_t* contexts, const int64_t* starts,
           const int64_t* lengths, const float* cos, const float* sin,
           const std::vector<llmserve::CacheLayer>& caches, float* logits) {
    const int64_t h = hidden_, q_size = heads_ * head_dim_;
    int64_t widest = std::max(h, lm_head_.k_pad), qkv_width = 0, inter_width = 0;
    for (const auto& layer : layers_) {
      widest = std::max({widest, layer.o.k_pad, layer.down.k_pad});
      qkv_width = std::max(qkv_width, layer.qkv.groups * ROWS);
      inter_width = std::max(inter_width, layer.gate_up.groups * ROWS);
    }
    at::internal::lazy_init_num_threads();  // this thread's OpenMP count: torch's setting
    const int threads = std::max(1, at::get_num_threads());
    // With fewer rows than threads (a lone sequence), each row's attention is split into parts
    // over its positions, so no thread waits while another reads a long context.
    const int64_t parts = llmserve::attention_parts(T, threads, head_dim_);
    // Shared between the threads: each matrix's output rows, attention's ([T, width]) when rows
    // are not split, and the parts' sums when they are.
    const int64_t projected_width = (h + ROWS - 1) / ROWS * ROWS;  // o_proj's and down's rows
    std::vector<float> qkv(T * qkv_width), attn(parts > 1 ? 0 : T * q_size),
        projected(T * projected_width), gate_up(T * inter_width);
    const llmserve::SplitAttention split(parts > 1 ? T : 0, parts, heads_, head_dim_);
    ++steps_;
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num(), N = omp_get_num_threads();
      PhaseClock clock(t == 0);
      auto& times = phase_seconds_;
      // This thread's copy of every token's hidden state, and its scratch rows.
      std::vector<float> state(T * h), normed(T * widest);
      std::vector<float> combined(parts > 1 ? T * q_size : 0);  // this thread's split attention
      std::vector<uint8_t> xq(T * widest);
      for (int64_t j = 0; j < T; ++j)
        std::memcpy(state.data() + j * h, embed_.data_ptr<float>() + tokens[j] * h,
                    h * sizeof(float));
      const auto [first_token, end_token] = share(T, t, N);
      // Every token's hidden state through an RMSNorm into `normed`.
      auto normalize = [&](const torch::Tensor& weight) {
        for (int64_t j = 0; j < T; ++j)
          rms_norm(state.data() + j * h, weight.data_ptr<float>(), h, eps_,
                   normed.data() + j * h);
      };
      // One matrix over the step's T input rows (`width` floats each): quantized together, this
      // thread's share of the output rows into `out`, then every thread waits for the others.
      auto project = [&](const Int8Matrix& m, const float* input, int64_t width, float* out,
                         Phase phase) {
        const QuantizedInput q = quantize_input(input, T, width, width, m.k_pad, qmax_, xq.data());
        multiply_share(m, xq.data(), T, q, t, N, out);
#pragma omp barrier
        clock.mark(times, phase);
      };
      for (size_t i = 0; i < layers_.size(); ++i) {
        const Layer& layer = layers_[i];
        normalize(layer.input_norm);
        project(layer.qkv, normed.data(), h, qkv.data(), QKV);
        const int64_t qkv_row = layer.qkv.groups * ROWS;
        for (int64_t j = first_token; j < end_token; ++j)
          place(layer, caches[i], contexts[starts[j] + lengths[j] - 1], cos + j * head_dim_,
                sin + j * head_dim_, qkv.data() + j * qkv_row);
        // A drafted row attends to the rows before it, a split row's parts to its own: every
        // row is placed first.
        if (T > 1 || parts > 1) {
#pragma omp barrier
        }
        if (parts == 1) {
          for (int64_t j = first_token; j < end_token; ++j)
            llmserve::attend_one_sequence(qkv.data() + j * qkv_row, heads_, caches[i],
                                          contexts + starts[j], lengths[j], scaling_,
                                          layer.window, attn.data() + j * q_size);
        } else {
          const auto [first_unit, end_unit] = share(T * parts, t, N);
          for (int64_t u = first_unit; u < end_unit; ++u) {
            const int64_t j = u / parts;
            const auto [begin, end] =
                llmserve::attended_part(lengths[j], layer.window, u % parts, parts);
            llmserve::attend_part(qkv.data() + j * qkv_row, heads_, caches[i],
                                  contexts + starts[j], lengths[j], begin, end, scaling_,
                                  split[u]);
          }
        }
#pragma omp barrier
        // each thread combines the parts itself: no third barrier before o_proj reads them
        for (int64_t j = 0; parts > 1 && j < T; ++j) split.combine(j, combined.data() + j * q_size);
        clock.mark(times, ATTENTION);
        project(layer.o, parts > 1 ? combined.data() : attn.data(), q_size, projected.data(),
                O_PROJ);
        add_rows(state.data(), projected.data(), T, h, projected_width);
        normalize(layer.post_norm);
        project(layer.gate_up, normed.data(), h, gate_up.data(), GATE_UP);
        const int64_t inter = layer.down.k, gate_up_width = layer.gate_up.groups * ROWS;
        for (int64_t j = 0; j < T; ++j) {
          const float* gu = gate_up.data() + j * gate_up_width;
          float* out = normed.data() + j * inter;
          for (int64_t c = 0; c < inter; ++c) {
            const float g = gu[c];
            const float silu = g / (1.0f + std::exp(-g));
            out[c] = silu * gu[inter + c];
          }
        }
        project(layer.down, normed.data(), inter, projected.data(), DOWN);
        add_rows(state.data(), projected.data(), T, h, projected_width);
        // the next layer's first barrier comes after its q/k/v: no thread can overwrite
        // `projected` before every thread has added it
      }
      normalize(final_norm_);
      project(lm_head_, normed.data(), h, logits, LM_HEAD);
    }
  }

  // state[j] += rows[j] for T rows of h (rows `stride` apart): the residual add.
  static void add_rows(float* state, const float* rows, int64_t T, int64_t h, int64_t stride) {
    for (int64_t j = 0; j < T; ++j)
      for (int64_t c = 0; c < h; ++c) state[j * h + c] = state[j * h + c] + rows[j * stride + c];
  }

  // One token's q/k/v row (q heads, then k, then v): RoPE (after Qwen3's per-head norms) on q and
  // k in place, and its key and value stored at `slot`.
  void place(const Layer& layer, const llmserve::CacheLayer& cache, int64_t slot,
             const float* cos, const float* sin, float* qkv) const {
    const int64_t d = head_dim_;
    for (int64_t head = 0; head < heads_ + kv_heads_; ++head) {
      float* x = qkv + head * d;
      const auto& norm = head < heads_ ? layer.q_norm : layer.k_norm;
      if (norm.numel()) rms_norm(x, norm.data_ptr<float>(), d, eps_, x);
      rotate(x, cos, sin, d);
    }
    const float* k = qkv + heads_ * d;
    llmserve::store_token(k, k + kv_heads_ * d, slot, cache);
  }

  torch::Tensor embed_, final_norm_;
  Int8Matrix lm_head_;
  std::vector<Layer> layers_;
  int64_t hidden_ = 0, heads_, kv_heads_, head_dim_;
  float eps_, scaling_;
  int32_t qmax_;
  std::array<double, NUM_PHASES> phase_seconds_{};
  int64_t steps_ = 0;
};

}  // namespace

void bind_lean_decode(pybind11::module_& m) {
  pybind11::class_<Int8Matrix>(m, "Int8Matrix")
      .def_readonly("n", &Int8Matrix::n)
      .def_readonly("k", &Int8Matrix::k);
  m.def("pack_int8", &pack, "an int8 weight [n, k] with row scales and bias, packed for VNNI");
  m.def("int8_linear", &LeanDecoder::linear, "x [m, k] through a packed int8 matrix");
  pybind11::class_<LeanDecoder>(m, "LeanDecoder")
      .def(pybind11::init<torch::Tensor, torch::Tensor, std::vector<torch::Tensor>, int64_t,
                          int64_t, int64_t, double, double, int64_t>())
      .def("add_layer", &LeanDecoder::add_layer)
      .def("num_layers", &LeanDecoder::num_layers)
      .def("phase_times", &LeanDecoder::phase_times)
      .def("weight_bytes", &LeanDecoder::weight_bytes)
      .def("step", &LeanDecoder::step);
}
