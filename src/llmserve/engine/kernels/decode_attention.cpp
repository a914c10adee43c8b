// Decode attention read in place from the paged KV cache (flash-decoding on CPU).
//
// One task per sequence: keys and values are read straight from their cache slots (no gather; a
// block's slots are consecutive rows), and an online softmax over tiles of TILE positions keeps
// one pass over the context. Sinks enter as the softmax's starting logit; soft-capping is applied
// to each score; a sliding window only moves where the loop starts.
//
// Head sizes 64 and 128 take the vector path: the query heads of one KV group attend together,
// each key and value row loaded once for all of them, queries and accumulators held in vector
// registers, and the dot products' horizontal sums done W positions at a time by a transposing
// tree. Every group takes a short span of positions in turn, so the cache's rows (all KV heads of
// a slot) come from memory once and in order. Other head sizes take the scalar path.
// GCC vector extensions keep it one source for AVX-512, AVX2 and SSE/NEON widths.
//
// Caches hold float32, bfloat16, or int8 with one float32 scale per slot and KV head. Against an
// int8 cache the query is rounded to int8 as well, so the key dot products are integer
// arithmetic (VNNI where the CPU has it).
#include "decode_attention.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t TILE = 32;
// Cache rows are prefetched twice: FAR positions ahead only into L2, NEAR positions ahead from
// there into L1. (Prefetching 16 positions ahead straight into L1 left the loads stalled: an
// L1 prefetch holds one of the core's few L1 miss buffers until its line arrives. The two
// stages made an int8 layer ~25% faster.)
constexpr int64_t FAR = 48;
constexpr int64_t NEAR = 4;

inline float load(const float* p, int64_t i) { return p[i]; }

inline float load(const at::BFloat16* p, int64_t i) {
  uint32_t bits = static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(p)[i]) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

inline float load(const int8_t* p, int64_t i) { return static_cast<float>(p[i]); }

// A row's scale: int8 caches store one per slot and KV head, other caches none (1).
inline float row_scale(const float* scales, int64_t slot, int64_t kv_heads, int64_t kv_head) {
  return scales ? scales[slot * kv_heads + kv_head] : 1.0f;
}

// A row of d floats rounded to int8 with one scale, its largest magnitude mapped to 127 (an
// all-zero row keeps scale 1); returns the scale. attention.py's quantize_rows is the same rule.
inline float quantize_row(const float* x, int64_t d, int8_t* out) {
  float amax = 0.0f;
  for (int64_t i = 0; i < d; ++i) amax = std::max(amax, std::fabs(x[i]));
  float step = amax / 127.0f;
  if (!(step > 0.0f)) step = 1.0f;
  for (int64_t i = 0; i < d; ++i) out[i] = static_cast<int8_t>(std::nearbyint(x[i] / step));
  return step;
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
  const float* k_scales;  // int8 caches: one scale per slot and KV head ([slots, kv_heads])
  const float* v_scales;
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

// Ask for a whole cache row (every KV head of one slot) ahead of its use: into L1 (locality 3)
// or only as far as L2 (1).
template <int LOCALITY, typename T>
inline void prefetch_row(const T* row, int64_t bytes) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, LOCALITY);
}

// The rows NEAR positions after `t` into L1, and FAR after it into L2 (with the int8 scales).
// Always inlined: left as a call by GCC, it cost the int8 kernel a third of its speed.
template <typename T>
__attribute__((always_inline)) inline void prefetch_ahead(const T* k_cache, const T* v_cache,
                                                          const int64_t* slots, int64_t t,
                                                          int64_t length, int64_t row,
                                                          const Options& o) {
  const int64_t row_bytes = row * static_cast<int64_t>(sizeof(T));
  if (t + NEAR < length) {
    const int64_t near = slots[t + NEAR];
    prefetch_row<3>(k_cache + near * row, row_bytes);
    prefetch_row<3>(v_cache + near * row, row_bytes);
  }
  if (t + FAR < length) {
    const int64_t far = slots[t + FAR];
    prefetch_row<1>(k_cache + far * row, row_bytes);
    prefetch_row<1>(v_cache + far * row, row_bytes);
    if (o.k_scales) {
      __builtin_prefetch(o.k_scales + far * o.kv_heads);
      __builtin_prefetch(o.v_scales + far * o.kv_heads);
    }
  }
}

// The scalar path. One sequence, every query head: a slot's whole row (all KV heads,
// contiguous, and a block's slots are consecutive) is read once for keys and once for values.
// Head sizes the vector path does not take (it has 64 and 128).
template <typename T>
void attend_one(const float* q, const T* k_cache, const T* v_cache, const int64_t* slots,
                int64_t first, int64_t length, const float* sinks, const Options& o, float* out) {
  const int64_t G = o.groups, d = o.head_dim, H = o.kv_heads * G;
  const int64_t row = o.kv_heads * d;
  std::vector<float> acc(H * d, 0.0f), scores(H * TILE), m(H), l(H);
  for (int64_t h = 0; h < H; ++h) {
    m[h] = sinks ? sinks[h] : -INFINITY;  // a sink is a logit with no value: exp(sink) joins l
    l[h] = sinks ? 1.0f : 0.0f;
  }
  for (int64_t start = first; start < length; start += TILE) {
    const int64_t n = std::min(TILE, length - start);
    for (int64_t t = 0; t < n; ++t) {
      prefetch_ahead(k_cache, v_cache, slots, start + t, length, row, o);
      const T* kr = k_cache + slots[start + t] * row;
      for (int64_t h = 0; h < H; ++h) {
        const float* qh = q + h * d;
        const T* kh = kr + (h / G) * d;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < d; ++i) s += qh[i] * load(kh, i);
        const float key_scale = row_scale(o.k_scales, slots[start + t], o.kv_heads, h / G);
        scores[h * TILE + t] = s * o.scaling * key_scale;
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
        const float p =
            scores[h * TILE + t] * row_scale(o.v_scales, slots[start + t], o.kv_heads, h / G);
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
typedef int8_t vchar __attribute__((vector_size(W * sizeof(int8_t))));
typedef int16_t vshort __attribute__((vector_size(W * sizeof(int16_t))));

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

inline vfloat vload(const int8_t* p) {  // an int8 row's values before their scale
#if defined(__AVX512F__)
  const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
      reinterpret_cast<const __m128i*>(p))));
#elif defined(__AVX2__)
  const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
      reinterpret_cast<const __m128i*>(p))));
#else  // GCC widens int8 to float lane by lane in one step, so by way of int16 and int32
  vchar c;
  std::memcpy(&c, p, sizeof(c));
  const vfloat f = __builtin_convertvector(
      __builtin_convertvector(__builtin_convertvector(c, vshort), vint), vfloat);
#endif
  vfloat v;
  std::memcpy(&v, &f, sizeof(v));
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

// How one query head meets key rows. Float and bfloat16 rows are widened to float and multiplied
// by the query (pre-scaled). Keys give `dot`: W lanes whose sum is the head's score before
// `score` finishes it with the row's scale.
template <typename T, int64_t HD>
struct FloatKeys {
  static constexpr int64_t C = HD / W;
  struct Row {
    vfloat v[C];
  };
  static Row load_row(const T* p) {
    Row r;
    for (int64_t c = 0; c < C; ++c) r.v[c] = vload(p + c * W);
    return r;
  }
  vfloat q[C];
  void set_query(const float* qh, float scaling) {
    for (int64_t c = 0; c < C; ++c) q[c] = vload(qh + c * W) * scaling;
  }
  vfloat dot(const Row& r) const {
    vfloat s = q[0] * r.v[0];
    for (int64_t c = 1; c < C; ++c) s += q[c] * r.v[c];
    return s;
  }
  float score(float dot_sum, float /*key_scale*/) const { return dot_sum; }
};

// Int8 rows meet an int8 copy of the query (one scale per head), so every dot product is exact
// integer arithmetic whichever way it runs: VNNI's vpdpbusd where the CPU has it (it multiplies
// unsigned by signed bytes, so the row is offset by +128 and the query's sum takes that back
// out), else widened to float (exact: the sums stay far below 2^24).
template <int64_t HD>
struct Int8Keys {
  float q_scale = 0.0f, offset = 0.0f;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
  static constexpr int64_t C = HD / 64;
  static constexpr float OFFSET = 128.0f;
  struct Row {
    __m512i v[C];
  };
  static Row load_row(const int8_t* p) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    Row r;
    for (int64_t c = 0; c < C; ++c) r.v[c] = _mm512_xor_si512(_mm512_loadu_si512(p + c * 64), flip);
    return r;
  }
  __m512i q[C];
  vfloat dot(const Row& r) const {
    __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), r.v[0], q[0]);
    for (int64_t c = 1; c < C; ++c) acc = _mm512_dpbusd_epi32(acc, r.v[c], q[c]);
    const __m512 sums = _mm512_cvtepi32_ps(acc);
    vfloat out;
    std::memcpy(&out, &sums, sizeof(out));
    return out;
  }
  void store_query(const int8_t* q8) {
    for (int64_t c = 0; c < C; ++c) q[c] = _mm512_loadu_si512(q8 + c * 64);
  }
#else
  static constexpr float OFFSET = 0.0f;
  using Widened = FloatKeys<int8_t, HD>;  // the int8 query and rows widened to float
  using Row = typename Widened::Row;
  static Row load_row(const int8_t* p) { return Widened::load_row(p); }
  Widened widened;
  vfloat dot(const Row& r) const { return widened.dot(r); }
  void store_query(const int8_t* q8) {
    float q[HD];
    for (int64_t i = 0; i < HD; ++i) q[i] = q8[i];
    widened.set_query(q, 1.0f);
  }
#endif
  // The head's query rounded to int8 with one scale, as the cache's rows are.
  void set_query(const float* qh, float scaling) {
    int8_t q8[HD];
    const float step = quantize_row(qh, HD, q8);
    int32_t sum = 0;
    for (int64_t i = 0; i < HD; ++i) sum += q8[i];
    store_query(q8);
    q_scale = step * scaling;
    offset = OFFSET * static_cast<float>(sum);
  }
  float score(float dot_sum, float key_scale) const {
    return (dot_sum - offset) * q_scale * key_scale;
  }
};

template <typename T, int64_t HD>
using KeysOf = std::conditional_t<std::is_same_v<T, int8_t>, Int8Keys<HD>, FloatKeys<T, HD>>;

// A block of query heads of one KV group (at most MAX_BLOCK), and its online softmax so far.
template <typename T, int64_t HD>
struct HeadBlock {
  static constexpr int64_t C = HD / W;
  static constexpr int64_t MAX_BLOCK =
      std::max<int64_t>(1, std::min<int64_t>(4, REGISTERS / 2 / C));
  int64_t kv_head = 0, h0 = 0, size = 0;
  KeysOf<T, HD> keys[MAX_BLOCK];
  vfloat acc[MAX_BLOCK][C];
  float m[MAX_BLOCK], l[MAX_BLOCK];

  void begin(const float* q, const float* sinks, const Options& o) {
    for (int64_t g = 0; g < size; ++g) {
      keys[g].set_query(q + (h0 + g) * HD, o.scaling);
      for (int64_t c = 0; c < C; ++c) acc[g][c] = vfloat{};
      // a sink is a logit with no value: exp(sink) joins l
      m[g] = sinks ? sinks[h0 + g] : -INFINITY;
      l[g] = sinks ? 1.0f : 0.0f;
    }
  }

  void finish(float* out) const {
    for (int64_t g = 0; g < size; ++g) {
      const float inv = 1.0f / l[g];
      for (int64_t c = 0; c < C; ++c) {
        const vfloat r = acc[g][c] * inv;
        std::memcpy(out + (h0 + g) * HD + c * W, &r, sizeof(r));
      }
    }
  }

  // The sums so far, unnormalized, for SplitAttention::combine.
  void leave(const llmserve::AttentionPart& part) const {
    for (int64_t g = 0; g < size; ++g) {
      std::memcpy(part.values + (h0 + g) * HD, acc[g], sizeof(acc[g]));
      part.maxes[h0 + g] = m[g];
      part.sums[h0 + g] = l[g];
    }
  }
};

// The first GB heads of `block` over positions [start, end) of a context of `length`, in tiles,
// with queries and accumulators copied into registers for the span. With `prefetch`, whole
// cache rows (every KV head) are asked for ahead (prefetch_ahead).
template <typename T, int64_t HD, int64_t GB>
void attend_span(HeadBlock<T, HD>& block, const T* k_cache, const T* v_cache,
                 const int64_t* slots, int64_t start, int64_t end, int64_t length,
                 const Options& o, bool prefetch) {
  using Keys = KeysOf<T, HD>;
  constexpr int64_t C = HD / W;
  const int64_t row = o.kv_heads * HD;
  const int64_t offset = block.kv_head * HD;
  Keys keys[GB];
  vfloat acc[GB][C];
  float m[GB], l[GB];
  // Two tiles are in flight: each tile's keys are read while the previous tile's values are
  // added up, so the core has independent work while a tile's softmax waits on its keys
  // (~8% faster than keys, softmax and values of one tile in turn).
  float weights[2][GB][TILE];  // softmax weights times value scales
  vfloat partial[GB][TILE];    // unsummed q.k products, summed W positions at a time
  for (int64_t g = 0; g < GB; ++g) {
    keys[g] = block.keys[g];
    for (int64_t c = 0; c < C; ++c) acc[g][c] = block.acc[g][c];
    m[g] = block.m[g];
    l[g] = block.l[g];
  }
  auto keys_at = [&](int64_t tile, int64_t t) {
    if (prefetch) prefetch_ahead(k_cache, v_cache, slots, tile + t, length, row, o);
    const typename Keys::Row kr = Keys::load_row(k_cache + slots[tile + t] * row + offset);
    for (int64_t g = 0; g < GB; ++g) partial[g][t] = keys[g].dot(kr);
  };
  auto values_at = [&](const float (&w)[GB][TILE], int64_t tile, int64_t t) {
    const T* vr = v_cache + slots[tile + t] * row + offset;
    vfloat vv[C];
    for (int64_t c = 0; c < C; ++c) vv[c] = vload(vr + c * W);
    for (int64_t g = 0; g < GB; ++g) {
      const float p = w[g][t];
      for (int64_t c = 0; c < C; ++c) acc[g][c] += p * vv[c];
    }
  };
  int64_t last = start, last_n = 0;  // the tile whose values are still to be added
  int cur = 0;
  for (int64_t tile = start; tile < end; tile += TILE) {
    const int64_t n = std::min(TILE, end - tile);
    const int64_t both = std::min(n, last_n);
    for (int64_t t = 0; t < both; ++t) {
      keys_at(tile, t);
      values_at(weights[cur ^ 1], last, t);
    }
    for (int64_t t = both; t < n; ++t) keys_at(tile, t);
    for (int64_t t = both; t < last_n; ++t) values_at(weights[cur ^ 1], last, t);
    float key_scales[TILE], value_scales[TILE];
    for (int64_t t = 0; t < n; ++t) {
      key_scales[t] = row_scale(o.k_scales, slots[tile + t], o.kv_heads, block.kv_head);
      value_scales[t] = row_scale(o.v_scales, slots[tile + t], o.kv_heads, block.kv_head);
    }
    for (int64_t g = 0; g < GB; ++g) {
      float* scores = weights[cur][g];
      for (int64_t t = n; t < TILE; ++t) partial[g][t] = vfloat{};
      for (int64_t t0 = 0; t0 < n; t0 += W) {
        const vfloat summed = sum_lanes(&partial[g][t0]);
        std::memcpy(&scores[t0], &summed, sizeof(summed));
      }
      for (int64_t t = 0; t < n; ++t) scores[t] = keys[g].score(scores[t], key_scales[t]);
      const float alpha = softmax_tile(scores, n, o.softcap, m[g], l[g]);
      for (int64_t c = 0; c < C; ++c) acc[g][c] *= alpha;
      for (int64_t t = 0; t < n; ++t) scores[t] *= value_scales[t];
    }
    last = tile;
    last_n = n;
    cur ^= 1;
  }
  for (int64_t t = 0; t < last_n; ++t) values_at(weights[cur ^ 1], last, t);
  for (int64_t g = 0; g < GB; ++g) {
    for (int64_t c = 0; c < C; ++c) block.acc[g][c] = acc[g][c];
    block.m[g] = m[g];
    block.l[g] = l[g];
  }
}

// A span for a block of `block.size` <= GB heads: the largest size is compiled with its
// accumulators in registers, smaller ones step down a size at a time.
template <typename T, int64_t HD, int64_t GB>
void attend_block_span(HeadBlock<T, HD>& block, const T* k_cache, const T* v_cache,
                       const int64_t* slots, int64_t start, int64_t end, int64_t length,
                       const Options& o, bool prefetch) {
  if constexpr (GB > 1) {
    if (block.size < GB)
      return attend_block_span<T, HD, GB - 1>(block, k_cache, v_cache, slots, start, end, length,
                                              o, prefetch);
  }
  attend_span<T, HD, GB>(block, k_cache, v_cache, slots, start, end, length, o, prefetch);
}

// Every query head of one sequence in blocks of up to MAX_BLOCK heads of one KV group (as many as
// keep their accumulators and queries in half the vector registers), before any position.
template <typename T, int64_t HD>
std::vector<HeadBlock<T, HD>> head_blocks(const float* q, const float* sinks, const Options& o) {
  constexpr int64_t MAX_BLOCK = HeadBlock<T, HD>::MAX_BLOCK;
  std::vector<HeadBlock<T, HD>> blocks;
  for (int64_t kv_head = 0; kv_head < o.kv_heads; ++kv_head) {
    const int64_t end = (kv_head + 1) * o.groups;
    for (int64_t h = kv_head * o.groups; h < end; h += MAX_BLOCK) {
      blocks.emplace_back();
      blocks.back().kv_head = kv_head;
      blocks.back().h0 = h;
      blocks.back().size = std::min(end - h, MAX_BLOCK);
      blocks.back().begin(q, sinks, o);
    }
  }
  return blocks;
}

// The blocks over positions [begin, end) of a context of `length`, SPAN positions at a time,
// every block taking the span in turn: the cache rows (every KV head of a slot) are read from
// memory once, in order, and each block reads them from cache.
template <typename T, int64_t HD>
void walk_positions(std::vector<HeadBlock<T, HD>>& blocks, const T* k_cache, const T* v_cache,
                    const int64_t* slots, int64_t begin, int64_t end, int64_t length,
                    const Options& o) {
  constexpr int64_t SPAN = 8 * TILE;
  for (int64_t start = begin; start < end; start += SPAN) {
    const int64_t span_end = std::min(start + SPAN, end);
    for (size_t i = 0; i < blocks.size(); ++i)
      attend_block_span<T, HD, HeadBlock<T, HD>::MAX_BLOCK>(blocks[i], k_cache, v_cache, slots,
                                                           start, span_end, length, o, i == 0);
  }
}

template <typename T, int64_t HD>
void attend_grouped(const float* q, const T* k_cache, const T* v_cache, const int64_t* slots,
                    int64_t first, int64_t length, const float* sinks, const Options& o,
                    float* out) {
  auto blocks = head_blocks<T, HD>(q, sinks, o);
  walk_positions(blocks, k_cache, v_cache, slots, first, length, length, o);
  for (const auto& block : blocks) block.finish(out);
}

// Positions [begin, end) of the context into `part`: the same walk, its sums left unnormalized.
template <typename T, int64_t HD>
void attend_grouped_part(const float* q, const T* k_cache, const T* v_cache,
                         const int64_t* slots, int64_t begin, int64_t end, int64_t length,
                         const Options& o, const llmserve::AttentionPart& part) {
  auto blocks = head_blocks<T, HD>(q, nullptr, o);
  walk_positions(blocks, k_cache, v_cache, slots, begin, end, length, o);
  for (const auto& block : blocks) block.leave(part);
}

// One sequence's query heads over its context `slots[0, length)`: the vector path for head
// sizes 64 and 128, else the scalar path.
template <typename T>
void attend_sequence(const float* q, const T* k_cache, const T* v_cache, const int64_t* slots,
                     int64_t length, const float* sinks, const Options& o, float* out) {
  const int64_t first = length - llmserve::attended_positions(length, o.window);
  if (o.head_dim == 64) {
    attend_grouped<T, 64>(q, k_cache, v_cache, slots, first, length, sinks, o, out);
  } else if (o.head_dim == 128) {
    attend_grouped<T, 128>(q, k_cache, v_cache, slots, first, length, sinks, o, out);
  } else {
    attend_one<T>(q, k_cache, v_cache, slots, first, length, sinks, o, out);
  }
}

// Positions [begin, end) of one sequence's context into `part` (head sizes 64 and 128).
template <typename T>
void attend_sequence_part(const float* q, const T* k_cache, const T* v_cache,
                          const int64_t* slots, int64_t begin, int64_t end, int64_t length,
                          const Options& o, const llmserve::AttentionPart& part) {
  if (o.head_dim == 64) {
    attend_grouped_part<T, 64>(q, k_cache, v_cache, slots, begin, end, length, o, part);
  } else {
    TORCH_CHECK(o.head_dim == 128, "attention splits for head sizes 64 and 128");
    attend_grouped_part<T, 128>(q, k_cache, v_cache, slots, begin, end, length, o, part);
  }
}

// Fewer sequences than threads, one of them long: each sequence's positions split into parts
// (the lean step splits the same way, so both paths give the same numbers).
template <typename T>
void run_split(const float* q, const T* k_cache, const T* v_cache, const int64_t* slots,
               int64_t max_ctx, const int64_t* lengths, int64_t D, int64_t parts,
               const Options& o, float* out) {
  const int64_t H = o.kv_heads * o.groups, width = H * o.head_dim;
  const llmserve::SplitAttention split(D, parts, H, o.head_dim);
  at::parallel_for(0, D * parts, 1, [&](int64_t first_unit, int64_t end_unit) {
    for (int64_t u = first_unit; u < end_unit; ++u) {
      const int64_t b = u / parts;
      const auto [begin, end] = llmserve::attended_part(lengths[b], o.window, u % parts, parts);
      attend_sequence_part<T>(q + b * width, k_cache, v_cache, slots + b * max_ctx, begin, end,
                              lengths[b], o, split[u]);
    }
  });
  for (int64_t b = 0; b < D; ++b) split.combine(b, out + b * width);
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
  const int64_t parts = llmserve::attention_parts(D, at::get_num_threads(), d);
  bool long_context = false;  // short ones would only wake the pool for an empty part
  for (int64_t b = 0; b < D; ++b)
    long_context |=
        llmserve::attended_positions(len_p[b], o.window) >= llmserve::SPLIT_MIN_POSITIONS;
  if (parts > 1 && long_context && sp == nullptr && o.softcap == 0.0f)
    return run_split<T>(qp, kp, vp, slot_p, max_ctx, len_p, D, parts, o, op);
  // Small steps stay on one thread: waking the pool costs more than they do.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, max_ctx * H));
  at::parallel_for(0, D, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      attend_sequence<T>(qp + b * H * d, kp, vp, slot_p + b * max_ctx, len_p[b], sp, o,
                         op + b * H * d);
  });
}

}  // namespace

using llmserve::are_row_scales;

torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
                               torch::Tensor k_scales, torch::Tensor v_scales,
                               torch::Tensor slots, torch::Tensor lengths, torch::Tensor sinks,
                               double scaling, int64_t window, double softcap) {
  TORCH_CHECK(q.dim() == 3 && q.scalar_type() == at::kFloat && q.is_contiguous(), "q");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "caches must be contiguous");
  TORCH_CHECK(slots.scalar_type() == at::kLong && slots.is_contiguous(), "slots");
  TORCH_CHECK(lengths.scalar_type() == at::kLong && lengths.is_contiguous(), "lengths");
  TORCH_CHECK(sinks.numel() == 0 || sinks.scalar_type() == at::kFloat, "sinks");
  const int64_t kv_heads = k_cache.size(1);
  TORCH_CHECK(q.size(1) % kv_heads == 0 && q.size(2) == k_cache.size(2), "head shapes");
  const bool int8 = k_cache.scalar_type() == at::kChar;
  TORCH_CHECK(!int8 || (are_row_scales(k_scales, k_cache) && are_row_scales(v_scales, v_cache)),
              "int8 caches need float32 scales [slots, kv_heads]");
  Options o{kv_heads,
            q.size(1) / kv_heads,
            q.size(2),
            window,
            static_cast<float>(scaling),
            static_cast<float>(softcap),
            int8 ? k_scales.data_ptr<float>() : nullptr,
            int8 ? v_scales.data_ptr<float>() : nullptr};
  auto out = torch::empty_like(q);
  if (k_cache.scalar_type() == at::kFloat) {
    run<float>(q, k_cache, v_cache, slots, lengths, sinks, o, out);
  } else if (int8) {
    run<int8_t>(q, k_cache, v_cache, slots, lengths, sinks, o, out);
  } else {
    TORCH_CHECK(k_cache.scalar_type() == at::kBFloat16,
                "cache dtype must be float32, bfloat16 or int8");
    run<at::BFloat16>(q, k_cache, v_cache, slots, lengths, sinks, o, out);
  }
  return out;
}

// The same numbers as attention.py's quantize_rows, in one call instead of a dozen operators.
void store_int8(torch::Tensor rows, torch::Tensor slots, torch::Tensor cache,
                torch::Tensor scales) {
  TORCH_CHECK(rows.dim() == 3 && rows.scalar_type() == at::kFloat && rows.is_contiguous(), "rows");
  TORCH_CHECK(slots.scalar_type() == at::kLong && slots.is_contiguous() &&
                  slots.numel() == rows.size(0),
              "slots");
  TORCH_CHECK(cache.scalar_type() == at::kChar && cache.is_contiguous() &&
                  cache.size(1) == rows.size(1) && cache.size(2) == rows.size(2),
              "cache");
  TORCH_CHECK(are_row_scales(scales, cache), "scales");
  const int64_t T = rows.size(0), kv_heads = rows.size(1), d = rows.size(2);
  const float* rp = rows.data_ptr<float>();
  const int64_t* sp = slots.data_ptr<int64_t>();
  int8_t* cp = cache.data_ptr<int8_t>();
  float* scp = scales.data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    TORCH_CHECK(sp[t] >= 0 && sp[t] < cache.size(0), "slot out of range");
    for (int64_t h = 0; h < kv_heads; ++h) {
      const int64_t row = sp[t] * kv_heads + h;
      scp[row] = quantize_row(rp + (t * kv_heads + h) * d, d, cp + row * d);
    }
  }
}

namespace llmserve {

bool are_row_scales(const torch::Tensor& scales, const torch::Tensor& cache) {
  return scales.scalar_type() == at::kFloat && scales.is_contiguous() &&
         scales.numel() == cache.size(0) * cache.size(1);
}

namespace {

// The options of a cache layer's attention for `num_heads` query heads: no sinks, no soft-capping.
Options options_for(int64_t num_heads, const CacheLayer& cache, float scaling, int64_t window) {
  const int64_t kv_heads = cache.keys.size(1);
  const bool int8 = cache.keys.scalar_type() == at::kChar;
  return Options{kv_heads,
                 num_heads / kv_heads,
                 cache.keys.size(2),
                 window,
                 scaling,
                 0.0f,
                 int8 ? cache.key_scales : nullptr,
                 int8 ? cache.value_scales : nullptr};
}

// `f(k_cache, v_cache)` with the layer's caches as pointers of their element type.
template <typename F>
void with_caches(const CacheLayer& cache, F&& f) {
  switch (cache.keys.scalar_type()) {
    case at::kFloat:
      return f(cache.keys.data_ptr<float>(), cache.values.data_ptr<float>());
    case at::kBFloat16:
      return f(cache.keys.data_ptr<at::BFloat16>(), cache.values.data_ptr<at::BFloat16>());
    default:
      return f(cache.keys.data_ptr<int8_t>(), cache.values.data_ptr<int8_t>());
  }
}

}  // namespace

void attend_one_sequence(const float* q, int64_t num_heads, const CacheLayer& cache,
                         const int64_t* slots, int64_t length, float scaling, int64_t window,
                         float* out) {
  const Options o = options_for(num_heads, cache, scaling, window);
  with_caches(cache, [&](const auto* k_cache, const auto* v_cache) {
    attend_sequence(q, k_cache, v_cache, slots, length, nullptr, o, out);
  });
}

int64_t attended_positions(int64_t length, int64_t window) {
  return window > 0 ? std::min(length, window) : length;
}

int64_t attention_parts(int64_t rows, int64_t threads, int64_t head_dim) {
  return rows < threads && (head_dim == 64 || head_dim == 128) ? threads / rows : 1;
}

std::pair<int64_t, int64_t> attended_part(int64_t length, int64_t window, int64_t part,
                                          int64_t parts) {
  const int64_t attended = attended_positions(length, window), first = length - attended;
  if (attended < SPLIT_MIN_POSITIONS)
    return part == 0 ? std::pair{first, length} : std::pair{length, length};
  const int64_t tiles = (attended + TILE - 1) / TILE;  // parts start on a whole tile
  auto start = [&](int64_t i) { return std::min(length, first + tiles * i / parts * TILE); };
  return {start(part), start(part + 1)};
}

void attend_part(const float* q, int64_t num_heads, const CacheLayer& cache,
                 const int64_t* slots, int64_t length, int64_t begin, int64_t end, float scaling,
                 const AttentionPart& part) {
  const Options o = options_for(num_heads, cache, scaling, 0);
  with_caches(cache, [&](const auto* k_cache, const auto* v_cache) {
    attend_sequence_part(q, k_cache, v_cache, slots, begin, end, length, o, part);
  });
}

SplitAttention::SplitAttention(int64_t rows, int64_t parts, int64_t num_heads,
                               int64_t head_dim)
    : parts_(parts),
      num_heads_(num_heads),
      head_dim_(head_dim),
      values_(rows * parts * num_heads * head_dim),
      stats_(2 * rows * parts * num_heads) {
  for (int64_t u = 0; u < rows * parts; ++u)
    units_.push_back({values_.data() + u * num_heads * head_dim,
                      stats_.data() + 2 * u * num_heads, stats_.data() + (2 * u + 1) * num_heads});
}

void SplitAttention::combine(int64_t row, float* out) const {
  const AttentionPart* parts = units_.data() + row * parts_;
  for (int64_t h = 0; h < num_heads_; ++h) {
    float top = -INFINITY;  // an empty part's max is -inf and weighs nothing
    for (int64_t p = 0; p < parts_; ++p) top = std::max(top, parts[p].maxes[h]);
    float sum = 0.0f;
    for (int64_t p = 0; p < parts_; ++p)
      sum += parts[p].sums[h] * std::exp(parts[p].maxes[h] - top);
    float* o = out + h * head_dim_;
    std::fill(o, o + head_dim_, 0.0f);
    for (int64_t p = 0; p < parts_; ++p) {
      const float weight = std::exp(parts[p].maxes[h] - top) / sum;
      const float* v = parts[p].values + h * head_dim_;
      for (int64_t i = 0; i < head_dim_; ++i) o[i] += weight * v[i];
    }
  }
}

void store_token(const float* key, const float* value, int64_t slot, const CacheLayer& cache) {
  const int64_t kv_heads = cache.keys.size(1), d = cache.keys.size(2), row = kv_heads * d;
  const float* rows[2] = {key, value};
  const torch::Tensor* caches[2] = {&cache.keys, &cache.values};
  float* scales[2] = {cache.key_scales, cache.value_scales};
  for (int which = 0; which < 2; ++which) {
    const torch::Tensor& c = *caches[which];
    switch (c.scalar_type()) {
      case at::kFloat:
        std::memcpy(c.data_ptr<float>() + slot * row, rows[which], row * sizeof(float));
        break;
      case at::kBFloat16: {
        at::BFloat16* dst = c.data_ptr<at::BFloat16>() + slot * row;
        for (int64_t i = 0; i < row; ++i) dst[i] = at::BFloat16(rows[which][i]);  // nearest-even
        break;
      }
      default:
        for (int64_t h = 0; h < kv_heads; ++h)
          scales[which][slot * kv_heads + h] =
              quantize_row(rows[which] + h * d, d, c.data_ptr<int8_t>() + slot * row + h * d);
    }
  }
}

}  // namespace llmserve
