// The lean decode step (lean_decode.cpp): a Llama-family model's one-token forward pass with
// int8 weights, as one native call.
#pragma once

#include <torch/extension.h>

void bind_lean_decode(pybind11::module_& m);
