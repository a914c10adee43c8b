// Decode attention over the paged KV cache (decode_attention.cpp): the tensor entry points the
// Python engine calls, and the raw ones the native decode step (lean_decode.cpp) calls.
#pragma once

#include <torch/extension.h>

#include <cstdint>

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

// One token's key and value rows ([kv_heads, d] float32 each) stored at `slot`, converted as the
// Python path converts them (bfloat16 rounded to nearest even, int8 with a scale per row).
void store_token(const float* key, const float* value, int64_t slot, const CacheLayer& cache);

}  // namespace llmserve
