"""The one weight-change detector: `weights_digest(module)`, a digest of every parameter's and buffer's values.

Why a pass over the values, not a cheaper signal: writes through `.data` (`p.data[i, j] += 1`,
`p.data.copy_(x)`) or through a numpy / DLPack view change the weights without a trace anywhere else.
`p.data` is a new tensor with its own autograd version counter, so `p._version` does not move; the storage
has no counter; identity, `data_ptr`, dtype and shape stay the same. Any key built from that metadata (the
old `version_key`) or from a sample of values (the old `probe_digest`, 8 values per tensor) keeps returning
the old answer after such a write. Only the values tell, so the digest reads them all, as fast as the
hardware allows:

- CPU tensors: CRC-32 of each tensor's bytes (zlib, no copy; the GIL is released, so tensors are hashed on
  a few threads), combined with each tensor's name, dtype and shape.
- Tensors on an accelerator: the device's tensors concatenated, then a position-weighted sum of their 32-bit
  words on the device itself (odd weights, 64-bit wrap-around): a few kernels and one 8-byte transfer per
  device instead of copying the weights out.

Both detect every change of a single value (any one 32-bit word) with certainty: CRC-32 detects every
error burst of up to 32 bits, and an odd weight times a nonzero word difference is never 0 mod 2^64.
Other changes (many values, moved values) go unseen only by a checksum collision, about 2^-32 per changed
tensor on the CPU: a change detector, not a cryptographic hash (`cultureclip.checkpoint.checkpoint_sha` is the sha256 that
results record; it is keyed by this digest).

Cost, measured with `python bench/weights_check.py` (README, "Performance"): a real-size ViT-B/32
(151 M parameters, 577 MiB) takes ~0.15 s on the 2-core build machine under load (0.4x of a one-image
forward pass there; the sha256 pass takes ~0.36 s); the device path is in `bench/gpu_suite.sh`, not yet
measured on a GPU.
"""
from __future__ import annotations

import hashlib
import os
import zlib
from concurrent.futures import ThreadPoolExecutor

import torch

_POOL: ThreadPoolExecutor | None = None
_CHUNK = 1 << 20  # device path: words per row of the position weights
_WEIGHTS: dict[torch.device, torch.Tensor] = {}  # device -> (_CHUNK,) odd int64 position weights


def named_tensors(module: torch.nn.Module):
    """(name, tensor) for every parameter and buffer, in one walk over the submodules (a tensor shared by two
    modules is listed under both names, which a digest does not mind)."""
    for prefix, m in module.named_modules():
        for kind in (m._parameters, m._buffers):
            for name, t in kind.items():
                if t is not None:
                    yield (f"{prefix}.{name}" if prefix else name), t


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="weights-digest")
    return _POOL


def _words(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes as a flat uint8 view (no copy when contiguous)."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def _crc(t: torch.Tensor) -> int:
    return zlib.crc32(_words(t).numpy()) if t.numel() else 0


def _position_weights(device: torch.device) -> torch.Tensor:
    w = _WEIGHTS.get(device)
    if w is None:  # fixed odd pseudo-random weights (a seeded generator: the same digest in every process)
        g = torch.Generator().manual_seed(0x5EED)
        w = (torch.randint(0, 2**62, (_CHUNK,), generator=g, dtype=torch.int64) * 2 + 1).to(device)
        _WEIGHTS[device] = w
    return w


def _device_sum(t: torch.Tensor) -> torch.Tensor:
    """A 0-dim int64 on `t`'s device: the sum over `t`'s 32-bit words of word * odd weight (row r of `_CHUNK`
    words scaled by the odd 2r+1), wrapping mod 2^64. Runs where `t` is (the CPU in tests)."""
    raw = _words(t)
    words = -(-raw.numel() // 4)
    rows = -(-words // _CHUNK)
    if rows * _CHUNK * 4 != raw.numel():  # zero-padded to whole rows of whole words
        raw = torch.cat([raw, raw.new_zeros(rows * _CHUNK * 4 - raw.numel())])
    per_row = (raw.view(torch.int32).to(torch.int64).view(rows, _CHUNK) * _position_weights(t.device)).sum(dim=1)
    scale = torch.arange(rows, device=t.device, dtype=torch.int64) * 2 + 1
    return (per_row * scale).sum()


def weights_digest(module: torch.nn.Module) -> str:
    """Changes whenever any parameter or buffer of `module` changes value, dtype, shape or name, however it
    was written (in place, through `.data`, by replacement). A full pass over the values (see the module
    docstring for the guarantee and the cost)."""
    items = list(named_tensors(module))
    on_cpu = [t for _, t in items if t.device.type == "cpu"]
    h = hashlib.blake2b(digest_size=16)
    for name, t in items:
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|{t.device.type}\n".encode())
    h.update(repr(list(_pool().map(_crc, on_cpu)) if len(on_cpu) > 1 else [_crc(t) for t in on_cpu]).encode())
    devices = sorted({t.device for _, t in items if t.device.type != "cpu"}, key=str)
    for device in devices:  # one concatenation and a few kernels per device, not a few per tensor
        flat = torch.cat([_words(t) for _, t in items if t.device == device])
        h.update(f"{device}:{_device_sum(flat).item()}".encode())
    return h.hexdigest()
