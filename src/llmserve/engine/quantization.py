"""int8 weights: every `nn.Linear` of a loaded causal LM becomes a dynamic-int8 linear layer.

The kernels are torch's own (fbgemm, behind the `x86` quantized engine): weights are int8 with a
scale per output channel, each call quantizes its activations to uint8 with one scale for the
call, multiplies in int32 and returns float32. Embeddings, norms, the KV cache and everything
else stay as loaded. docs/benchmarks.md has the measured speed and quality against float32.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import warnings

import torch

# NOTE: torch 2.13 deprecates creating qint8 tensors (pytorch#184982) but still needs one to pack
# weights for fbgemm; the packed kernel itself is not deprecated. torch is pinned (pyproject).
_QTENSOR_DEPRECATION = "torch.quantize_per_tensor, torch.quantize_per_channel"
_MADV_DONTNEED = 4
# NOTE: the overload, not the packet `torch.ops.quantized.linear_dynamic`: the packet checks its
# arguments for fake script objects in Python on every call, ~8 us each, 200 calls per step.
_LINEAR_DYNAMIC = torch.ops.quantized.linear_dynamic.default


class Int8Linear(torch.nn.Module):
    """`y = x @ W.T + b` with W packed as int8 for fbgemm; float32 in and out."""

    def __init__(self, packed: object, in_features: int, out_features: int, *, reduce_range: bool):
        super().__init__()
        self._packed = packed
        self.in_features = in_features
        self.out_features = out_features
        self.reduce_range = reduce_range

    @classmethod
    def from_linear(
        cls, linear: torch.nn.Linear, *, per_channel: bool, reduce_range: bool
    ) -> Int8Linear:
        weight = linear.weight.detach().float()
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_QTENSOR_DEPRECATION, category=UserWarning)
            packed = torch.ops.quantized.linear_prepack(_quantize(weight, per_channel), bias)
        return cls(packed, linear.in_features, linear.out_features, reduce_range=reduce_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _LINEAR_DYNAMIC(x, self._packed, self.reduce_range)
        return out

    def int8_weight(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The packed layer as plain tensors: int8 weight [out, in], its float32 scale per output
        row (one for all rows when quantized per tensor), and the float32 bias or None."""
        weight, bias = torch.ops.quantized.linear_unpack(self._packed)
        if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            scales = weight.q_per_channel_scales().float()
        else:
            scales = torch.full((weight.shape[0],), weight.q_scale(), dtype=torch.float32)
        return weight.int_repr(), scales, None if bias is None else bias.detach().float()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _quantize(weight: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Symmetric int8: the largest magnitude of each row (or of all of W) maps to 127."""
    if not per_channel:
        scale = max(float(weight.abs().max()) / 127, 1e-12)
        return torch.quantize_per_tensor(weight, scale, 0, torch.qint8)
    scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    return torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)


def quantize_int8(model: torch.nn.Module, *, per_channel: bool = True, reduce_range: bool) -> int:
    """Swap every `nn.Linear` of `model` for an `Int8Linear`; returns how many were swapped.

    `reduce_range` quantizes activations to 7 bits: needed where the kernel's int16 pair sums
    can saturate (AVX2 without VNNI), a small loss of precision elsewhere.
    """
    kept = _kept_ranges(model)
    num_swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(
                    parent,
                    name,
                    Int8Linear.from_linear(
                        child, per_channel=per_channel, reduce_range=reduce_range
                    ),
                )
                _release_pages(child.weight, kept)
                num_swapped += 1
    return num_swapped


def _kept_ranges(model: torch.nn.Module) -> list[tuple[int, int]]:
    """Byte ranges of the tensors that stay after quantization (embeddings, norms, buffers)."""
    kept = []
    for module in model.modules():
        if type(module) is not torch.nn.Linear:  # a tied LM head's weight is the embedding's
            tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
            kept += [(t.data_ptr(), t.data_ptr() + t.nbytes) for t in tensors]
    return kept


def _release_pages(weight: torch.Tensor, kept: list[tuple[int, int]]) -> None:
    """Give back the memory pages only this (now dropped) fp32 weight used.

    NOTE: transformers memory-maps safetensors files, so a weight's pages stay resident in the
    mapping (and count toward the process's memory) until every tensor of the file is freed;
    the embedding keeps it open. Only pages wholly inside this weight, and outside every tensor
    that stays, are dropped, so nothing that is still read can lose its contents.
    """
    if not sys.platform.startswith("linux"):
        return
    start = -(-weight.data_ptr() // mmap.PAGESIZE) * mmap.PAGESIZE
    end = (weight.data_ptr() + weight.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if end <= start or any(a < end and start < b for a, b in kept):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)
