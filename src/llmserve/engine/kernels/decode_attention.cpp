// Decode attention read in place from the paged KV cache (flash-decoding on CPU).
//
// One task per sequence: keys and values are read straight from their cache slots (no gather; a
// block's slots are consecutive rows), and an online softmax over tiles of TILE positions keeps
// one pass over the context. Sinks enter as the softmax's starting logit; soft-capping is applied
// to each score; a sliding window only moves where the loop starts.
//
// Head sizes that are a multiple of the vector width (64, 128) take the vector path: the query
// heads of one KV group walk the context together, each key and value row loaded once for all of
// them, queries and accumulators held in vector registers, and the dot products' horizontal sums
// done W positions at a time by a transposing tree. Other head sizes take the scalar path.
// GCC vector extensions keep it one source for AVX-512, AVX2 and SSE/NEON widths.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t TILE = 32;

inline float load(const float* p, int64_t i) { return p[i]; }

inline float load(const at::BFloat16* p, int64_t i) {
  uint32_t bits = static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(p)[i]) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// exp(x) for x <= 0 (every argument here is a logit minus a running max): range reduction to
// 2^n * exp(r), |r| <= ln2/2, and a degree-6 polynomial; relative error ~2e-7. Inline and
// branch-free so the compiler vectorises the loops that call it.
inline float fast_exp(float x) {
  x = std::max(x, -87.0f);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = x - n * 0.693145751953125f - n * 1.428606765330187045e-06f;
  float p = 1.3888889e-3f;
  p = p * r + 8.3333333e-3f;
  p = p * r + 4.1666667e-2f;
  p = p * r + 1.6666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

struct Options {
  int64_t kv_heads, groups, head_dim, window;
  float scaling, softcap;
};

// One tile of the online softmax for one head: its n scores become exp(score - new max) (after
// soft-capping), the running max `m` and sum `l` take the tile in; returns the factor the
// head's accumulated values must be scaled by (0 while `m` was still -inf).
inline float softmax_tile(float* scores, int64_t n, float softcap, float& m, float& l) {
  if (softcap > 0.0f)
    for (int64_t t = 0; t < n; ++t) scores[t] = softcap * std::tanh(scores[t] / softcap);
  float tile_max = m;
  for (int64_t t = 0; t < n; ++t) tile_max = std::max(tile_max, scores[t]);
  const float alpha = fast_exp(m - tile_max);
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t t = 0; t < n; ++t) {
    scores[t] = fast_exp(scores[t] - tile_max);
    sum += scores[t];
  }
  l = l * alpha + sum;
  m = tile_max;
  return alpha;
}

// Ask for a whole cache row (every KV head of one slot) ahead of its use.
template <typename T>
inline void prefetch_row(const T* row, int64_t bytes) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
}

// The scalar path. One sequence, every query head: a slot's whole row (all KV heads,
// contiguous, and a block's slots are consecutive) is read once for keys and once for values.
// Head sizes the vector path does not take (it has 64 and 128).
template <typename T>
void attend_one(const float* q, const T* k_cache, const T* v_cache, const int64_t* slots,
                int64_t first, int64_t length, const float* sinks, const Options& o, float* out) {
  const int64_t G = o.groups, d = o.head_dim, H = o.kv_heads * G;
  const int64_t row = o.kv_heads * d;
  const int64_t row_bytes = row * static_cast<int64_t>(sizeof(T));
  std::vector<float> acc(H * d, 0.0f), scores(H * TILE), m(H), l(H);
  for (int64_t h = 0; h < H; ++h) {
    m[h] = sinks ? sinks[h] : -INFINITY;  // a sink is a logit with no value: exp(sink) joins l
    l[h] = sinks ? 1.0f : 0.0f;
  }
  for (int64_t start = first; start < length; start += TILE) {
    const int64_t n = std::min(TILE, length - start);
    for (int64_t t = 0; t < n; ++t) {
      if (start + t + 8 < length) prefetch_row(k_cache + slots[start + t + 8] * row, row_bytes);
      if (start + t + 8 < length) prefetch_row(v_cache + slots[start + t + 8] * row, row_bytes);
      const T* kr = k_cache + slots[start + t] * row;
      for (int64_t h = 0; h < H; ++h) {
        const float* qh = q + h * d;
        const T* kh = kr + (h / G) * d;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < d; ++i) s += qh[i] * load(kh, i);
        scores[h * TILE + t] = s * o.scaling;
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      const float alpha = softmax_tile(scores.data() + h * TILE, n, o.softcap, m[h], l[h]);
      float* ah = acc.data() + h * d;
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) ah[i] *= alpha;
    }
    for (int64_t t = 0; t < n; ++t) {
      const T* vr = v_cache + slots[start + t] * row;
      for (int64_t h = 0; h < H; ++h) {
        const float p = scores[h * TILE + t];
        const T* vh = vr + (h / G) * d;
        float* ah = acc.data() + h * d;
#pragma omp simd
        for (int64_t i = 0; i < d; ++i) ah[i] += p * load(vh, i);
      }
    }
  }
  for (int64_t h = 0; h < H; ++h) {
    const float inv = 1.0f / l[h];
    for (int64_t i = 0; i < d; ++i) out[h * d + i] = acc[h * d + i] * inv;
  }
}


// ---- The vector path: heads of one KV group attend together, accumulators in registers. ----
#if defined(__AVX512F__)
constexpr int64_t W = 16;  // floats per vector register
constexpr int64_t REGISTERS = 32;
#elif defined(__AVX__)
constexpr int64_t W = 8;
constexpr int64_t REGISTERS = 16;
#else
constexpr int64_t W = 4;
constexpr int64_t REGISTERS = 16;
#endif
typedef float vfloat __attribute__((vector_size(W * sizeof(float))));
typedef uint16_t vhalf __attribute__((vector_size(W * sizeof(uint16_t))));
typedef uint32_t vuint __attribute__((vector_size(W * sizeof(uint32_t))));
typedef int32_t vint __attribute__((vector_size(W * sizeof(int32_t))));

inline vfloat vload(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline vfloat vload(const at::BFloat16* p) {  // bfloat16 is a float's high half
  vhalf h;
  std::memcpy(&h, p, sizeof(h));
  const vuint bits = __builtin_convertvector(h, vuint) << 16;
  vfloat v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

constexpr int64_t bit_reverse(int64_t p) {  // of log2(W) bits
  int64_t r = 0;
  for (int64_t w = W; w > 1; w /= 2, p /= 2) r = r * 2 + (p % 2);
  return r;
}

// One step of a transposing sum: in each 2B-lane segment, B lanes of x's pairwise sums, then
// B of y's.
template <int64_t B>
inline vfloat combine(vfloat x, vfloat y) {
  vint lo, hi;
  for (int64_t l = 0; l < W; ++l) {
    const int64_t seg = l / (2 * B) * (2 * B), i = l % (2 * B);
    lo[l] = static_cast<int32_t>(i < B ? seg + i : W + seg + i - B);
    hi[l] = lo[l] + static_cast<int32_t>(B);
  }
  return __builtin_shuffle(x, y, lo) + __builtin_shuffle(x, y, hi);
}

// The levels of the tree: B = W/2, W/4, ..., 1, each halving the 2B vectors it is given.
template <int64_t B>
inline void combine_levels(vfloat* cur) {
  for (int64_t i = 0; i < B; ++i) cur[i] = combine<B>(cur[2 * i], cur[2 * i + 1]);
  if constexpr (B > 1) combine_levels<B / 2>(cur);
}

// Lane i of the result: the sum of v[i]'s lanes (W horizontal sums at once). Taking the inputs
// in bit-reversed order leaves the sums in natural order.
inline vfloat sum_lanes(const vfloat* v) {
  vfloat cur[W];
  for (int64_t p = 0; p < W; ++p) cur[p] = v[bit_reverse(p)];
  combine_levels<W / 2>(cur);
  return cur[0];
}

// Query heads [h0, h0 + GB) of one KV group over positions [first, length) of one sequence.
// HD: the head size (a multiple of W); C = HD / W vectors per head row.
template <typename T, int64_t HD, int64_t GB>
void attend_heads(const float* q, const T* k_cache, const T* v_cache, const int64_t* slots,
                  int64_t first, int64_t length, const float* sinks, const Options& o,
                  int64_t kv_head, int64_t h0, float* out) {
  constexpr int64_t C = HD / W;
  const int64_t row = o.kv_heads * HD;
  const int64_t row_bytes = HD * static_cast<int64_t>(sizeof(T));
  vfloat qv[GB][C], acc[GB][C];
  float m[GB], l[GB], scores[GB][TILE];
  vfloat partial[GB][TILE];  // unsummed q.k products, summed W positions at a time
  for (int64_t g = 0; g < GB; ++g) {
    for (int64_t c = 0; c < C; ++c) {
      qv[g][c] = vload(q + (h0 + g) * HD + c * W) * o.scaling;
      acc[g][c] = vfloat{};
    }
    m[g] = sinks ? sinks[h0 + g] : -INFINITY;  // a sink is a logit with no value: exp(sink) joins l
    l[g] = sinks ? 1.0f : 0.0f;
  }
  const int64_t offset = kv_head * HD;
  for (int64_t start = first; start < length; start += TILE) {
    const int64_t n = std::min(TILE, length - start);
    for (int64_t t = 0; t < n; ++t) {
      if (start + t + 8 < length) {
        prefetch_row(k_cache + slots[start + t + 8] * row + offset, row_bytes);
        prefetch_row(v_cache + slots[start + t + 8] * row + offset, row_bytes);
      }
      const T* kr = k_cache + slots[start + t] * row + offset;
      vfloat kv[C];
      for (int64_t c = 0; c < C; ++c) kv[c] = vload(kr + c * W);
      for (int64_t g = 0; g < GB; ++g) {
        vfloat s = qv[g][0] * kv[0];
        for (int64_t c = 1; c < C; ++c) s += qv[g][c] * kv[c];
        partial[g][t] = s;
      }
    }
    for (int64_t g = 0; g < GB; ++g) {
      for (int64_t t = n; t < TILE; ++t) partial[g][t] = vfloat{};
      for (int64_t t0 = 0; t0 < n; t0 += W) {
        const vfloat summed = sum_lanes(&partial[g][t0]);
        std::memcpy(&scores[g][t0], &summed, sizeof(summed));
      }
    }
    for (int64_t g = 0; g < GB; ++g) {
      const float alpha = softmax_tile(scores[g], n, o.softcap, m[g], l[g]);
      for (int64_t c = 0; c < C; ++c) acc[g][c] *= alpha;
    }
    for (int64_t t = 0; t < n; ++t) {
      const T* vr = v_cache + slots[start + t] * row + offset;
      vfloat vv[C];
      for (int64_t c = 0; c < C; ++c) vv[c] = vload(vr + c * W);
      for (int64_t g = 0; g < GB; ++g) {
        const float p = scores[g][t];
        for (int64_t c = 0; c < C; ++c) acc[g][c] += p * vv[c];
      }
    }
  }
  for (int64_t g = 0; g < GB; ++g) {
    const float inv = 1.0f / l[g];
    for (int64_t c = 0; c < C; ++c) {
      const vfloat r = acc[g][c] * inv;
      std::memcpy(out + (h0 + g) * HD + c * W, &r, sizeof(r));
    }
  }
}

// Query heads [h, h + block) of KV head `kv_head`, block <= GB: the largest block is compiled
// with its accumulators in registers, smaller ones step down a size at a time.
template <typename T, int64_t HD, int64_t GB>
void attend_block(int64_t block, const float* q, const T* k_cache, const T* v_cache,
                  const int64_t* slots, int64_t first, int64_t length, const float* sinks,
                  const Options& o, int64_t kv_head, int64_t h, float* out) {
  if constexpr (GB > 1) {
    if (block < GB)
      return attend_block<T, HD, GB - 1>(block, q, k_cache, v_cache, slots, first, length, sinks,
                                         o, kv_head, h, out);
  }
  attend_heads<T, HD, GB>(q, k_cache, v_cache, slots, first, length, sinks, o, kv_head, h, out);
}

// Every query head of one sequence, a KV group at a time, in blocks of up to MAX_BLOCK heads
// (as many as keep their accumulators and queries in half the vector registers).
template <typename T, int64_t HD>
void attend_grouped(const float* q, const T* k_cache, const T* v_cache, const int64_t* slots,
                    int64_t first, int64_t length, const float* sinks, const Options& o,
                    float* out) {
  constexpr int64_t MAX_BLOCK =
      std::max<int64_t>(1, std::min<int64_t>(4, REGISTERS / 2 / (HD / W)));
  for (int64_t kv_head = 0; kv_head < o.kv_heads; ++kv_head) {
    const int64_t end = (kv_head + 1) * o.groups;
    for (int64_t h = kv_head * o.groups; h < end; h += MAX_BLOCK) {
      const int64_t block = std::min(end - h, MAX_BLOCK);
      attend_block<T, HD, MAX_BLOCK>(block, q, k_cache, v_cache, slots, first, length, sinks, o,
                                     kv_head, h, out);
    }
  }
}

template <typename T>
void run(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
         const torch::Tensor& slots, const torch::Tensor& lengths, const torch::Tensor& sinks,
         const Options& o, torch::Tensor& out) {
  const int64_t D = q.size(0), max_ctx = slots.size(1), H = q.size(1), d = o.head_dim;
  const float* qp = q.data_ptr<float>();
  const float* sp = sinks.numel() ? sinks.data_ptr<float>() : nullptr;
  const T* kp = k_cache.data_ptr<T>();
  const T* vp = v_cache.data_ptr<T>();
  const int64_t* slot_p = slots.data_ptr<int64_t>();
  const int64_t* len_p = lengths.data_ptr<int64_t>();
  float* op = out.data_ptr<float>();
  // Small steps stay on one thread: waking the pool costs more than they do.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, max_ctx * H));
  at::parallel_for(0, D, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t length = len_p[b];
      const int64_t first = o.window > 0 ? std::max<int64_t>(0, length - o.window) : 0;
      const float* qb = qp + b * H * d;
      const int64_t* sb = slot_p + b * max_ctx;
      float* ob = op + b * H * d;
      if (d == 64) {
        attend_grouped<T, 64>(qb, kp, vp, sb, first, length, sp, o, ob);
      } else if (d == 128) {
        attend_grouped<T, 128>(qb, kp, vp, sb, first, length, sp, o, ob);
      } else {
        attend_one<T>(qb, kp, vp, sb, first, length, sp, o, ob);
      }
    }
  });
}

}  // namespace

// q [D, H, d] float32; caches [slots, kv_heads, d] float32 or bfloat16; slots [D, max_ctx] int64;
// lengths [D] int64; sinks [H] float32 or empty; window 0: none; softcap 0: none.
torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
                               torch::Tensor slots, torch::Tensor lengths, torch::Tensor sinks,
                               double scaling, int64_t window, double softcap) {
  TORCH_CHECK(q.dim() == 3 && q.scalar_type() == at::kFloat && q.is_contiguous(), "q");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "caches must be contiguous");
  TORCH_CHECK(slots.scalar_type() == at::kLong && slots.is_contiguous(), "slots");
  TORCH_CHECK(lengths.scalar_type() == at::kLong && lengths.is_contiguous(), "lengths");
  TORCH_CHECK(sinks.numel() == 0 || sinks.scalar_type() == at::kFloat, "sinks");
  const int64_t kv_heads = k_cache.size(1);
  TORCH_CHECK(q.size(1) % kv_heads == 0 && q.size(2) == k_cache.size(2), "head shapes");
  Options o{kv_heads, q.size(1) / kv_heads, q.size(2), window, static_cast<float>(scaling),
            static_cast<float>(softcap)};
  auto out = torch::empty_like(q);
  if (k_cache.scalar_type() == at::kFloat) {
    run<float>(q, k_cache, v_cache, slots, lengths, sinks, o, out);
  } else {
    TORCH_CHECK(k_cache.scalar_type() == at::kBFloat16, "cache dtype must be float32 or bfloat16");
    run<at::BFloat16>(q, k_cache, v_cache, slots, lengths, sinks, o, out);
  }
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decode_attention", &decode_attention, "decode attention over the paged KV cache");
}
