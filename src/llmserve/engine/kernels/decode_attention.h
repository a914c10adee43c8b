// Decode attention over the paged KV cache (decode_attention.cpp): the tensor entry points the
// Python engine calls, and the raw ones the native decode step (lean_decode.cpp) calls.
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <utility>
#include <vector>

// q [D, H, d] float32; caches [slots, kv_heads, d] float32, bfloat16 or int8; scales
// [slots, kv_heads] float32 for int8 caches, else empty; slots [D, max_ctx] int64; lengths [D]
// int64; sinks [H] float32 or empty; window 0: none; softcap 0: none.
torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
                               torch::Tensor k_scales, torch::Tensor v_scales,
                               torch::Tensor slots, torch::Tensor lengths, torch::Tensor sinks,
                               double scaling, int64_t window, double softcap);

// rows [T, kv_heads, d] float32 written into an int8 cache [slots, kv_heads, d] at `slots` [T],
// each row with one scale in `scales` [slots, kv_heads].
void store_int8(torch::Tensor rows, torch::Tensor slots, torch::Tensor cache,
                torch::Tensor scales);

namespace llmserve {

// Whether `scales` can be an int8 cache's row scales: float32, contiguous, one per slot and KV
// head of `cache` ([slots, kv_heads, d]).
bool are_row_scales(const torch::Tensor& scales, const torch::Tensor& cache);

// One layer's cache: keys and values [slots, kv_heads, d] (float32, bfloat16 or int8), and for
// int8 one float32 scale per slot and KV head (else null).
struct CacheLayer {
  torch::Tensor keys, values;
  float* key_scales = nullptr;
  float* value_scales = nullptr;
};

// One sequence's `num_heads` query heads (q [num_heads, d]) over its context `slots[0, length)`
// into out [num_heads, d]; no sinks, no soft-capping. Runs on the calling thread.
void attend_one_sequence(const float* q, int64_t num_heads, const CacheLayer& cache,
                         const int64_t* slots, int64_t length, float scaling, int64_t window,
                         float* out);

// One sequence's attention split between threads (flash-decoding): each thread takes a part of
// the positions and leaves its sums unnormalized in an AttentionPart; SplitAttention::combine
// rescales the parts to their common max and makes the output. A split sums in another order
// than one thread's walk, so the numbers agree with it to float rounding; the operator path's
// decode_attention splits the same way, so the lean step's attention equals it bit for bit.
struct AttentionPart {
  float* values;  // [num_heads, d]: the sum of exp(score - max) * value over the part
  float* maxes;   // [num_heads]: the part's largest score (-inf for an empty part)
  float* sums;    // [num_heads]: the sum of exp(score - max)
};

// The parts of `rows` rows' attention split `parts` ways, in buffers it owns: unit u is row
// u / parts's part u % parts.
class SplitAttention {
 public:
  SplitAttention(int64_t rows, int64_t parts, int64_t num_heads, int64_t head_dim);
  SplitAttention(const SplitAttention&) = delete;  // its parts point into its own buffers
  SplitAttention& operator=(const SplitAttention&) = delete;
  const AttentionPart& operator[](int64_t unit) const { return units_[unit]; }
  // out [num_heads, d]: row `row`'s attention from its parts, which together cover the
  // positions it attends to.
  void combine(int64_t row, float* out) const;

 private:
  int64_t parts_, num_heads_, head_dim_;
  std::vector<float> values_, stats_;
  std::vector<AttentionPart> units_;
};

// A context splits only from this many attended positions: below it, one thread's walk is
// cheaper than waking another.
constexpr int64_t SPLIT_MIN_POSITIONS = 256;

// How many of a context's `length` positions its last token attends to under `window` (0: all).
int64_t attended_positions(int64_t length, int64_t window);

// The parts each of `rows` rows' attention takes on `threads` threads: threads / rows when there
// are fewer rows than threads and heads of a size the vector path takes (64, 128); else 1.
int64_t attention_parts(int64_t rows, int64_t threads, int64_t head_dim);

// Part `part` of `parts` of the positions a context of `length` attends to under `window` (0:
// none), as [begin, end): near-equal runs of whole 32-position tiles; a context shorter than
// SPLIT_MIN_POSITIONS is all part 0's, the others empty (SplitAttention::combine then gives
// exactly the one-thread walk's numbers).
std::pair<int64_t, int64_t> attended_part(int64_t length, int64_t window, int64_t part,
                                          int64_t parts);

// The query heads' sums over positions [begin, end) of the context `slots[0, length)` into
// `part`; no sinks, no soft-capping. Runs on the calling thread.
void attend_part(const float* q, int64_t num_heads, const CacheLayer& cache,
                 const int64_t* slots, int64_t length, int64_t begin, int64_t end, float scaling,
                 const AttentionPart& part);

// One token's key and value rows ([kv_heads, d] float32 each) stored at `slot`, converted as the
// Python path converts them (bfloat16 rounded to nearest even, int8 with a scale per row).
void store_token(const float* key, const float* value, int64_t slot, const CacheLayer& cache);

}  // namespace llmserve
