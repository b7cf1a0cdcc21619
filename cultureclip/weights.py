"""The one weight-change detector: has any weight of a model changed since I last looked?

`revision(module)` returns a number that stays the same while no parameter or buffer of `module` changes and
changes after any change; numbers are never reused in a process, so a revision can key a cache on its own.
`memoized(module, name, compute)` keeps one value per (module, name) and recomputes it only on a new revision:
`cultureclip.checkpoint.checkpoint_sha` (sha256 of the weights, which keys results, the disk label banks and the
demo's evaluations) and the label banks of `cultureclip.inference.Embedder` both ask here, and nowhere else.
`forget(module)` declares a change this module cannot see (see "Limits" below).

How it is exact. The first time a module is looked at, each of its parameters (class exactly `nn.Parameter`)
and buffers (exactly `torch.Tensor`) is *tracked*: it gets a serial number, and its `.data` changes in one
thing (below). For parameters that is done by a `.data` property on `nn.Parameter`, installed once per process
when the first parameter is tracked, which behaves exactly as PyTorch's for every untracked parameter; they keep
their class, because PyTorch's dispatch exempts exact Parameters from its per-op `__torch_function__` check: a
subclass costs ~0.3 us per tensor argument of every op (bench/weights_detector.py; estimated a few percent of a
batch-1 GPU forward). Buffers, used by few ops, are switched in place to the subclass `TrackedBuffer`.
A revision is the tuple, over the module tree (submodule names) and every tensor with its name, of (serial,
autograd version counter, data pointer); it is computed on each call (pure Python over 300-400 tensors for a
ViT-B/32, ~0.3 ms) and a new revision number is issued when that tuple differs from the one seen last.
Every way PyTorch can write a tracked tensor's elements moves it:
- An in-place op through the tensor or through anything sharing its version counter (its views, `detach()`,
  the tensors `state_dict()` returns): PyTorch bumps the counter on every in-place op (`add_` under no_grad,
  optimizer steps, `load_state_dict`'s `copy_`, LoRA merges' `add_`, `nn.init`).
- A write through `.data` (`p.data[i, j] += 1`, `p.data.copy_(x)`, peft's `weight.data += delta`): plain
  PyTorch hands out a view with a fresh version counter, so the parameter's own counter never moves (this is
  what a probe of a few values per tensor missed). A tracked tensor's `.data` is its `detach()` instead: the
  same storage, sizes and no autograd history, but the shared counter, so the write bumps the parameter.
- Assigning `.data` (`module.to(...)`, `p.data = x`): the tracked setter assigns as PyTorch does, gives the
  tensor a new serial, and keeps `x`: later writes through `x` (which aliases the weights now) move `x`'s
  counter, which the revision includes.
- Replacing a tensor (`load_state_dict(assign=True)`, `module.weight = nn.Parameter(...)`, a LoRA adapter
  added or merged away, `torch.utils.swap_tensors`): the new tensor is untracked, so it is tracked with a new
  serial on the next call; a removed or renamed tensor changes the list itself.
Counters only grow and serials are never reused, so a changed tensor never looks unchanged (no ABA), and a
forward pass, a `state_dict()` or reading `.data` writes nothing, so it never issues a new revision.

Limits: a write that bypasses PyTorch's operators is invisible to version counters: through `.numpy()` or
DLPack views, `untyped_storage()`, a tensor made with `set_()` on the weights' storage, or a native extension
writing a raw pointer. So is a write through a `.data` view taken before the module was first looked at and kept
in a variable (tracking starts at the first look; an `Embedder` looks when it is created). Call
`forget(module)` (or `Embedder.invalidate()`) after such a write. Tensors that cannot be tracked (other
Parameter subclasses such as quantized weights, tensor subclasses, tensors made under `torch.inference_mode`) are
read in full on every call instead: their bytes' digest is part of the revision, exact but a memory pass each.
CLIP models built here have none.

Side effect: on a tracked model a write through `.data` between a forward and its backward now raises PyTorch's
"modified by an inplace operation" error instead of silently corrupting the gradient.

Cost (bench/weights_detector.py, ViT-B/32, 2 shared cores under load): a revision ~0.3 ms against ~0.4 s for the
sha256 of every weight; one read of every weight takes 70-80 ms and a vectorized digest in torch ops 2.5-4.5 s, so
no content check can sit on a per-request path. Deep copies of tracked tensors come out untracked (a copy is
tracked by its own module); a pickled parameter carries its tracking attributes (an unpickled one counts as
tracked, which only means its `.data` writes are seen).
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

T = TypeVar("T")

_SERIAL = "_cultureclip_serial"  # attribute names on tracked tensors
_SOURCE = "_cultureclip_source"
_serials = itertools.count(1)
_revisions = itertools.count(1)
_track_lock = threading.Lock()


_PLAIN_DATA = torch._C.TensorBase.data  # PyTorch's own `.data` descriptor


def is_tracked(t: torch.Tensor) -> bool:
    """Whether `t` is tracked (its `.data` shares its version counter)."""
    return _SERIAL in t.__dict__ and type(t) in _TRACKED_TYPES


def _data_get(t: torch.Tensor) -> torch.Tensor:
    """`.data`: a tracked tensor's `detach()` (same storage, shared version counter), else PyTorch's `.data`."""
    return t.detach() if _SERIAL in t.__dict__ else _PLAIN_DATA.__get__(t)


def _data_set(t: torch.Tensor, x: torch.Tensor) -> None:
    """`.data = x`: as PyTorch assigns; a tracked tensor then gets a new serial and keeps `x` (it aliases `x`)."""
    _PLAIN_DATA.__set__(t, x)
    d = t.__dict__
    if _SERIAL in d and x is not t:
        d[_SERIAL] = next(_serials)
        d[_SOURCE] = x


_TRACKED_DATA = property(_data_get, _data_set, doc="The tensor's data; see cultureclip.weights.")


def _user_state(t: torch.Tensor) -> dict:
    """A tracked buffer's attributes other than the tracking ones (what a copy or a pickle carries)."""
    return {k: v for k, v in t.__dict__.items() if k not in (_SERIAL, _SOURCE)}


class TrackedBuffer(torch.Tensor):
    """A buffer whose `.data` shares its version counter; ops on it return plain tensors, as on a Parameter.

    (A subclass costs PyTorch's dispatch a `__torch_function__` look-up per op it is passed to: fine for the few
    ops a model runs on its buffers, which is why parameters are not subclassed.)"""

    __torch_function__ = torch._C._disabled_torch_function_impl
    data = _TRACKED_DATA

    def __deepcopy__(self, memo: dict) -> torch.Tensor:  # a plain tensor, with the attributes as torch copies them
        if id(self) not in memo:
            new = self.detach().clone(memory_format=torch.preserve_format).requires_grad_(self.requires_grad)
            new.__dict__.update(copy.deepcopy(_user_state(self), memo))
            memo[id(self)] = new
        return memo[id(self)]

    def __reduce_ex__(self, proto):
        plain = self.detach()
        plain.__dict__.update(_user_state(self))
        return plain.__reduce_ex__(proto)


def _install_parameter_data() -> None:
    """Give `nn.Parameter` the tracked `.data` (once per process, when the first parameter is tracked): it
    behaves as PyTorch's for every untracked parameter and costs nothing on the ops a model runs."""
    if nn.Parameter.__dict__.get("data") is not _TRACKED_DATA:
        nn.Parameter.data = _TRACKED_DATA


def _track(t: torch.Tensor) -> bool:
    """Track `t` (exact `nn.Parameter`: a serial; exact `torch.Tensor`: a serial and the class TrackedBuffer);
    False when it cannot be (other classes, meta and inference tensors, which have no version counter)."""
    with _track_lock:
        cls = type(t)
        if cls not in (nn.Parameter, torch.Tensor, TrackedBuffer) or t.is_meta or t.is_inference():
            return False
        if cls is nn.Parameter:
            _install_parameter_data()
        elif cls is torch.Tensor:
            t.__class__ = TrackedBuffer
        d = t.__dict__
        if _SERIAL not in d:
            d[_SERIAL] = next(_serials)
            d.pop(_SOURCE, None)
        return True


def _content_digest(t: torch.Tensor) -> str:
    """Every byte of a tensor that cannot be tracked (a memory pass): exact, for the rare untrackable tensor."""
    try:
        raw = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    except (RuntimeError, NotImplementedError, ValueError):  # no data to read (meta, uninitialized): no weights yet
        return f"unreadable:{id(t)}:{t._version}"
    return hashlib.blake2b(raw, digest_size=16).hexdigest() + f"|{t.dtype}|{tuple(t.shape)}"


def _entry(t: torch.Tensor) -> tuple:
    """One tensor's part of the state: (serial, version, data pointer[, version of a tensor assigned to .data])."""
    d = t.__dict__
    serial = d.get(_SERIAL)
    if serial is None or type(t) not in _TRACKED_TYPES:
        if not _track(t):
            return (type(t).__name__, _content_digest(t))
        serial = d[_SERIAL]
    source = d.get(_SOURCE)
    if source is None:
        return (serial, t._version, t.data_ptr())
    return (serial, t._version, t.data_ptr(), source._version)


_TRACKED_TYPES = (nn.Parameter, TrackedBuffer)


def weights_state(module: nn.Module) -> tuple:
    """What `revision` compares: every submodule's name and every parameter and buffer with its name and
    `_entry`, depth first. Tracks the tensors it has not seen (the first call on a model, a replaced tensor).
    A tensor shared by two modules appears twice, which a comparison does not mind; a module met again (shared,
    or a cycle) is walked once."""
    out: list = []
    stack: list = [module]
    seen: set[int] = set()
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        for tensors in (m._parameters, m._buffers):
            for name, t in tensors.items():
                if t is not None:
                    out.append(name)
                    out.append(_entry(t))
        for name, child in m._modules.items():
            if child is not None:
                out.append(name)
                stack.append(child)
    return tuple(out)


class _ModuleState:
    """Per module: the state seen last, its revision number, the memoized values."""

    def __init__(self) -> None:
        self.state: tuple | None = None
        self.revision = 0
        self.lock = threading.Lock()  # guards state/revision (held briefly)
        self.compute_lock = threading.Lock()  # one memoized computation at a time per module
        self.memo: dict[str, tuple[int, Any]] = {}


# weak keys: a dropped model (a WiSE-FT blend evicted from its cache) takes its entry with it
_STATES: "weakref.WeakKeyDictionary[nn.Module, _ModuleState]" = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def _module_state(module: nn.Module) -> _ModuleState:
    with _STATES_LOCK:
        st = _STATES.get(module)
        if st is None:
            st = _STATES[module] = _ModuleState()
        return st


def revision(module: nn.Module) -> int:
    """A number for the current weights of `module`: equal while none changed, new after any change (exact for
    every write through PyTorch; see the module docstring), never reused in the process. ~0.3 ms for a ViT-B/32."""
    st = _module_state(module)
    state = weights_state(module)
    with st.lock:
        if st.state != state or not st.revision:
            st.state, st.revision = state, next(_revisions)
        return st.revision


def forget(module: nn.Module) -> None:
    """Declare the weights of `module` changed (after a write that bypasses PyTorch's operators: numpy or DLPack
    views, raw storage): the next `revision` is new and every memoized value is recomputed."""
    st = _module_state(module)
    with st.lock:
        st.state, st.revision = None, 0


def memoized(module: nn.Module, name: str, compute: Callable[[], T]) -> T:
    """`compute()` for the current weights of `module`, kept per (module, name) and recomputed only when
    `revision(module)` changed. Two threads asking at once compute it once. `compute` must not hold a reference
    to a module in what it returns (the memo would keep the model alive)."""
    st = _module_state(module)
    with st.compute_lock:
        rev = revision(module)
        hit = st.memo.get(name)
        if hit is not None and hit[0] == rev:
            return hit[1]
        value = compute()
        st.memo[name] = (rev, value)  # under the revision seen before computing: a write meanwhile recomputes
        return value
