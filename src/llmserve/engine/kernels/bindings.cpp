// The Python module of the engine's compiled kernels (decode_kernel.py builds and loads it).
#include "decode_attention.h"
#include "lean_decode.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decode_attention", &decode_attention, "decode attention over the paged KV cache");
  m.def("store_int8", &store_int8, "rows quantized into an int8 KV cache with a scale per row");
  bind_lean_decode(m);
}
