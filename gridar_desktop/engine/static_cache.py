"""A preallocated ("static") KV cache for our decoding loop, and the row operations the loop needs on any cache.

Why: transformers' `DynamicCache` grows by `torch.cat` at every decoding step, so each step rewrites the whole cache
(at Janus-Pro-7B with 600-token prompts about as many bytes as the weights). Here every layer owns a buffer sized
for what the state will still decode, and a step writes its new key/value in place; row gathers (branching,
pruning, refills), stream merges and forks copy the cache once per band, as before.

Why not transformers' `StaticCache`: its layers hand attention the whole buffer (every step reads and multiplies
the unused capacity, behind a mask), know nothing of our left-padded rows, and have no row gather. Our layer is a
`DynamicLayer` to the library (the same mask sizes, `get_seq_length` = positions written), so the library's prefill
forward writes into it unchanged; it only keeps its tensors in a larger buffer. Attention reads `buffer[:, :, :T]`,
the same numbers in the same order as the concatenated tensor, so tokens are identical to the growing cache
(`tests/test_static_cache.py`).

Buffers are zero-filled: the CUDA-graph step (`engine.lean.forward_static`) attends over the whole capacity behind a
mask, and a masked NaN from uninitialised memory would still poison `softmax @ V`.
"""
from __future__ import annotations

import logging

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer


class StaticLayer(DynamicLayer):
    """One layer's keys and values in a buffer (R, kv heads, capacity, d); `keys`/`values` are the written prefix."""

    def __init__(self, capacity: int = 0) -> None:
        super().__init__()
        self.capacity = capacity          # positions to allocate at the first write (grown if ever exceeded)
        self.kbuf: torch.Tensor | None = None
        self.vbuf: torch.Tensor | None = None
        self.length = 0
        self.grown = 0                    # reallocations after the first: 0 when the capacity was planned right
        self.shared = False               # reads another layer's buffer (a fork): copies before its first write

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def _alloc(self, like_k: torch.Tensor, like_v: torch.Tensor, rows: int, capacity: int) -> None:
        self.kbuf = like_k.new_zeros((rows, like_k.shape[1], capacity, like_k.shape[3]))
        self.vbuf = like_v.new_zeros((rows, like_v.shape[1], capacity, like_v.shape[3]))
        self._room = capacity
        self._inference = self.kbuf.is_inference()
        self.shared = False

    def _views(self) -> None:
        self.keys = self.kbuf.narrow(2, 0, self.length)
        self.values = self.vbuf.narrow(2, 0, self.length)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        # kept short: on small models this runs often enough per step for its Python to show (decode_speed.py)
        at = self.length
        new = key_states.shape[-2]
        need = at + new
        if self.kbuf is None or need > self._room or (self._inference and not torch.is_inference_mode_enabled()):
            self._make_room(key_states, value_states, need)
        self.kbuf.narrow(2, at, new).copy_(key_states)
        self.vbuf.narrow(2, at, new).copy_(value_states)
        self.length = need
        self.keys = self.kbuf.narrow(2, 0, need)
        self.values = self.vbuf.narrow(2, 0, need)
        return self.keys, self.values

    def _make_room(self, key_states: torch.Tensor, value_states: torch.Tensor, need: int) -> None:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.kbuf is None:
            self._alloc(key_states, value_states, key_states.shape[0], max(self.capacity, need))
            return
        # more positions than planned: grow with headroom (amortised), keeping what is written. (A buffer made
        # under inference mode cannot be written outside it: a caller outside it gets a fresh buffer.)
        old_k, old_v = self.kbuf, self.vbuf
        room = need + max(64, need // 4)
        if not self.shared:                        # a fork's first write is its copy, not a growth
            room = max(room, old_k.shape[2])
            self.grown += 1
        self._alloc(old_k, old_v, old_k.shape[0], room)
        self.kbuf[:, :, :self.length] = old_k[:, :, :self.length]
        self.vbuf[:, :, :self.length] = old_v[:, :, :self.length]

    def get_seq_length(self) -> int:
        return self.length

    @property
    def free(self) -> int:
        """Positions still free in the buffer."""
        return (self._room - self.length) if self.kbuf is not None else self.capacity

    @classmethod
    def holding(cls, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> "StaticLayer":
        """A layer holding `keys`/`values` (R, heads, T, d) in a buffer of max(capacity, T) positions."""
        layer = cls(capacity)
        layer.lazy_initialization(keys, values)
        T = keys.shape[2]
        layer._alloc(keys, values, keys.shape[0], max(capacity, T))
        layer.kbuf[:, :, :T] = keys
        layer.vbuf[:, :, :T] = values
        layer.length = T
        layer._views()
        return layer

    @classmethod
    def sharing(cls, other: "StaticLayer") -> "StaticLayer":
        """A layer reading `other`'s written positions without copying them. It has no room of its own, so its first
        write (or `reserve`) copies them into a buffer of its own; `other` only ever writes past them, so what this
        layer reads stays as it was."""
        layer = cls(0)
        layer.lazy_initialization(other.kbuf, other.vbuf)
        layer.kbuf, layer.vbuf, layer.length = other.kbuf, other.vbuf, other.length
        layer._room, layer._inference, layer.shared = other.length, other._inference, True
        layer._views()
        return layer


class StaticKVCache(Cache):
    """A cache of `StaticLayer`s, one per language-model layer."""

    def __init__(self, layers: int, capacity: int) -> None:
        super().__init__(layers=[StaticLayer(capacity) for _ in range(layers)])

    @classmethod
    def of_layers(cls, layers: list[StaticLayer]) -> "StaticKVCache":
        cache = cls(0, 0)
        cache.layers = layers
        return cache

    @property
    def capacity(self) -> int:
        layer = self.layers[0]
        return layer.kbuf.shape[2] if layer.kbuf is not None else layer.capacity

    @property
    def free(self) -> int:
        return self.layers[0].free

    @property
    def grown(self) -> int:
        return sum(layer.grown for layer in self.layers)


def is_static(cache) -> bool:
    return isinstance(cache, StaticKVCache)


def new_cache(static: bool, config, capacity: int):
    """An empty cache for a prefill: static with room for `capacity` positions per row, or the library's dynamic."""
    if static:
        return StaticKVCache(config.num_hidden_layers, capacity)
    return DynamicCache(config=config)


def _like(cache, pairs: list[tuple[torch.Tensor, torch.Tensor]], capacity: int | None = None):
    """A new cache of `cache`'s kind holding `pairs` (keys, values) per layer; a static one keeps `capacity`
    positions per row (default: what `cache` has free after its written positions)."""
    if is_static(cache):
        if capacity is None:
            capacity = cache.free + pairs[0][0].shape[2]
        return StaticKVCache.of_layers([StaticLayer.holding(k, v, capacity) for k, v in pairs])
    out = DynamicCache()
    for i, (k, v) in enumerate(pairs):
        out.update(k, v, i)
    return out


def _set(cache, i: int, keys: torch.Tensor, values: torch.Tensor, capacity: int | None = None) -> None:
    if is_static(cache):
        free = cache.layers[i].free
        cache.layers[i] = StaticLayer.holding(keys, values, capacity if capacity is not None else
                                              keys.shape[2] + free)
    else:
        cache.layers[i].keys, cache.layers[i].values = keys, values


def reserve(cache, positions: int) -> None:
    """Make room for `positions` more positions per row in a static cache (one copy per layer when it has less);
    a dynamic cache is left alone. Called once per `decode` call (a band), so the cache holds, between bands, what
    the growing cache would hold: the memory plan's band-by-band estimate stays true."""
    if not is_static(cache):
        return
    for i, layer in enumerate(cache.layers):
        if layer.kbuf is not None and layer.free < positions:
            _set(cache, i, layer.keys, layer.values, layer.length + positions)


def gather_rows(cache, idx: torch.Tensor) -> None:
    """Re-index the cache's rows in place of the cache object (repeats copy, omissions drop); one copy per layer,
    layer by layer, so at most one layer's rows exist twice at a time."""
    for i, layer in enumerate(cache.layers):
        _set(cache, i, layer.keys[idx], layer.values[idx])


def take_rows(cache, idx: torch.Tensor):
    """A new cache (of the same kind and free room) holding copies of rows `idx`; `cache` is left untouched."""
    return _like(cache, [(layer.keys[idx], layer.values[idx]) for layer in cache.layers])


def clone(cache):
    """An independent copy (a fork for a rollout): decoding it leaves `cache` as it was. A static copy shares the
    buffers until it first writes (copy on write): the rollout's `reserve` then makes the one copy it needs, where
    a copy now and a larger one at the reservation would make two (and hold three caches at once)."""
    if is_static(cache) and all(layer.kbuf is not None for layer in cache.layers):
        return StaticKVCache.of_layers([StaticLayer.sharing(layer) for layer in cache.layers])
    return _like(cache, [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers])


def cat_rows(a, b) -> None:
    """Append `b`'s rows to `a`'s (in `a`), the shorter left-padded to the longer: cached keys already carry their
    rotary positions, so padding does not move them. A static result keeps the larger free room of the two."""
    ta, tb = a.get_seq_length(), b.get_seq_length()
    width = max(ta, tb)
    free = max(a.free, b.free) if is_static(a) and is_static(b) else None

    def pad(t: torch.Tensor, have: int) -> torch.Tensor:                   # (R, heads, T, d) -> left-padded
        return torch.nn.functional.pad(t, (0, 0, width - have, 0)) if have < width else t
    for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
        _set(a, i, torch.cat([pad(la.keys, ta), pad(lb.keys, tb)]), torch.cat([pad(la.values, ta), pad(lb.values, tb)]),
             None if free is None else width + free)


log = logging.getLogger("gridar.engine")

# The last CUDA-graph capture that failed (its error, one line), or None: decoding then went on uncaptured, and the
# GPU benchmark reports it.
LAST_CAPTURE_ERROR: str | None = None


class GraphStep:
    """One-token decoding steps of `lm` on a static cache, with fixed shapes and addresses (`lean.forward_static`):
    on CUDA captured once as a `torch.cuda.CUDAGraph` and replayed per token, which removes the per-kernel launch
    overhead that dominates a step of one token per row; `eager=True` runs the same function without capture (how
    CPU tests check its tokens). Valid while the cache keeps its buffers: `decode` builds one per call, after
    `reserve` has made room for the whole call."""

    def __init__(self, lm, cache: StaticKVCache, rows: int, eager: bool = False) -> None:
        self.lm = lm
        self.cache = cache
        self.keys = [layer.kbuf for layer in cache.layers]
        self.values = [layer.vbuf for layer in cache.layers]
        k = self.keys[0]
        self.capacity = k.shape[2]
        hidden = lm.norm.weight.shape[0]
        self.x = torch.zeros((rows, 1, hidden), dtype=lm.norm.weight.dtype, device=k.device)
        self.key_mask = torch.zeros((rows, self.capacity), dtype=torch.bool, device=k.device)
        self.positions = torch.zeros((rows, 1), dtype=torch.long, device=k.device)
        self.write_at = torch.zeros((1,), dtype=torch.long, device=k.device)
        self.eager = eager
        self.graph = None
        self.out: torch.Tensor | None = None
        self.replays = 0

    def fits(self, cache, rows: int, new: int) -> bool:
        """Whether this step can run `new` positions for `rows` rows on `cache` (same buffers, room left)."""
        return (cache is self.cache and new == 1 and rows == self.x.shape[0]
                and all(layer.kbuf is b for layer, b in zip(cache.layers, self.keys))
                and cache.get_seq_length() + 1 <= self.capacity)

    def _run(self) -> torch.Tensor:
        from .lean import forward_static
        return forward_static(self.lm, self.x, self.key_mask, self.positions, self.write_at, self.keys, self.values)

    def _capture(self) -> None:
        # warm-up on a side stream (the allocator and cuBLAS settle), then capture. Both run the real step on the
        # real inputs: it writes this position's keys/values, and writing them again on replay is the same write.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._run()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self._run()

    @torch.inference_mode()
    def __call__(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """embeds (R, 1, H), mask (R, T + 1) (the cached positions and this one), positions (R, 1) -> hidden
        (R, 1, H); the cache's layers then hold T + 1 positions."""
        T = self.cache.get_seq_length()
        self.x.copy_(embeds)
        self.positions.copy_(positions)
        self.key_mask.zero_()
        self.key_mask[:, :T + 1] = mask.bool()
        self.write_at.fill_(T)
        if self.eager:
            out = self._run()
        else:
            if self.graph is None:
                try:
                    self._capture()
                except Exception as e:  # noqa: BLE001 - a capture the device or an op refuses: go on uncaptured
                    global LAST_CAPTURE_ERROR
                    LAST_CAPTURE_ERROR = f"{e.__class__.__name__}: {str(e).strip().splitlines()[0][:200]}"
                    log.warning("CUDA graph capture failed, decoding without it: %s", LAST_CAPTURE_ERROR)
                    self.graph, self.eager = None, True
            if self.eager:
                out = self._run()
            else:
                self.graph.replay()
                out = self.out
        self.replays += 1
        for layer in self.cache.layers:
            layer.length = T + 1
            layer._views()
        return out.clone()            # the graph's output tensor is overwritten by the next replay
