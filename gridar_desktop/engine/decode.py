"""Our own decoding loop: a decoding state whose KV cache is carried across stages, and short named phases.

Rows. A state holds `n` candidates, each with one cache row per guidance *stream*: "cond" (the prompt the image
follows), "uncond" (Janus's unconditional row) and optionally "layout" (a reformulated prompt for three-way guidance).
Rows are stream-major: row ``s * n + b`` is candidate ``b`` of stream ``s``.

Phases:
- `prefill`  run prompt rows (and, optionally, image tokens already drawn) through the model once.
- `select`   re-index candidates: branch one prefix into many (``[0, 0, 0, 0]``), drop some, or refill a pruned
             slot with a copy of a survivor (``[0, 3, 2, 3]``). Cache rows are gathered, never recomputed.
- `merge_streams` / `drop_streams`  add a newly prefilled stream beside carried ones, or drop one.
- `fork`     an independent copy with its own cache, for a lookahead that must leave the state as it was.
- `step`     feed one image token per candidate to every stream.
- `decode`   sample tokens until a given count or token row, with guidance, events and cancel checks.

What is prefilled, and why: the prompt rows once per job, never again. A reformulated prompt is new conditioning:
its row must see (layout prompt, image tokens so far), which no carried row has seen, so `prefill` runs it with the
anchor tokens as a prefix. The "cond" and "uncond" rows of every candidate are carried from stage to stage; after
pruning they are copied (`select`), not recomputed. Rows of different lengths share one cache by left padding:
padding positions are masked out and each row keeps its own position counter.

The cache. By default a prefill builds a preallocated cache (`engine.static_cache`): each `decode` call makes room
once for the positions it will add (one copy per layer, per band), and every step then writes its keys and values
in place instead of rewriting the whole cache with `torch.cat`. Row gathers, merges, concatenations and forks copy
once per call, as before. On CUDA a `decode` call captures its one-token step once as a CUDA graph and replays it per
token (`static_cache.GraphStep`); elsewhere the step runs eagerly.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch
from transformers.cache_utils import Cache

from . import static_cache as kv
from .backend import JanusBackend
from .cancel import CancelToken
from .cost import CostRecord
from .sampling import SamplingParams, cfg_three_way, cfg_two_way, sample

STREAMS = ("cond", "uncond", "layout")

# Which KV cache a prefill builds: "static" (preallocated, in-place writes: `engine.static_cache`) or "dynamic"
# (transformers' DynamicCache, grown by torch.cat each step). Static is the default: tokens identical, less copying
# (`tests/test_static_cache.py`, `benchmarks/decode_speed.py`). GRIDAR_KV_CACHE=dynamic restores the old cache.
KV_CACHE = "dynamic" if os.environ.get("GRIDAR_KV_CACHE") == "dynamic" else "static"


# How a decoding step of one token per row runs on a static cache: "auto" (a captured CUDA graph on CUDA, the eager
# lean forward elsewhere), "off" (always the eager forward), "eager" (the graph's fixed-shape step run without
# capture, on any device: how CPU tests check what a capture would compute). GRIDAR_DECODE_GRAPH sets it.
DECODE_GRAPH = os.environ.get("GRIDAR_DECODE_GRAPH", "auto")
if DECODE_GRAPH not in ("auto", "off", "eager"):
    DECODE_GRAPH = "auto"


@contextmanager
def decode_graph(mode: str) -> Iterator[None]:
    """Decoding steps inside the block use `mode` ("auto" | "off" | "eager"; see DECODE_GRAPH)."""
    global DECODE_GRAPH
    if mode not in ("auto", "off", "eager"):
        raise ValueError(f"unknown decode graph mode '{mode}'; use auto, off or eager")
    old, DECODE_GRAPH = DECODE_GRAPH, mode
    try:
        yield
    finally:
        DECODE_GRAPH = old


def _graph_step(backend: JanusBackend, state: "DecodeState") -> kv.GraphStep | None:
    """The fixed-shape step for this `decode` call, or None where it does not apply (a dynamic cache, CPU under
    "auto", a language model the lean forward does not cover)."""
    if DECODE_GRAPH == "off" or not kv.is_static(state.cache) or state.cache.layers[0].kbuf is None:
        return None
    if DECODE_GRAPH == "auto" and (backend.device.type != "cuda" or kv.LAST_CAPTURE_ERROR is not None):
        return None                                        # (after a failed capture: the eager step, not again)
    from . import lean
    lm = backend.model.model.language_model
    if not lean.supports(lm):
        return None
    return kv.GraphStep(lm, state.cache, state.rows, eager=DECODE_GRAPH == "eager")


@contextmanager
def kv_cache_kind(kind: str) -> Iterator[None]:
    """Prefills inside the block build a `kind` ("static" | "dynamic") cache (tests and benchmarks compare them)."""
    global KV_CACHE
    if kind not in ("static", "dynamic"):
        raise ValueError(f"unknown KV cache kind '{kind}'; use static or dynamic")
    old, KV_CACHE = KV_CACHE, kind
    try:
        yield
    finally:
        KV_CACHE = old


@dataclass
class DecodeState:
    cache: Cache              # transformers' DynamicCache or our StaticKVCache (engine.static_cache)
    streams: tuple[str, ...]
    n: int
    mask: torch.Tensor        # (R, T) long: 1 for real cached positions, 0 for left padding
    pos: torch.Tensor         # (R,) long: position id of each row's next input
    hidden: torch.Tensor      # (R, H): last hidden state of each row (it predicts the next image token)
    tokens: torch.Tensor      # (n, k) long: image tokens drawn so far, per candidate

    @property
    def rows(self) -> int:
        return len(self.streams) * self.n

    @property
    def padded(self) -> bool:
        return bool((self.mask == 0).any())

    def stream_rows(self, name: str) -> slice:
        s = self.streams.index(name)
        return slice(s * self.n, (s + 1) * self.n)


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device | str = "cpu",
             extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows left-padded to a common width: ids (R, W) and attention mask (R, W + extra), where the `extra`
    trailing mask columns are 1 (positions appended after the text, e.g. image tokens)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width + extra), dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, device=device)
        mask[i, width - len(r):] = 1
    return ids, mask


@torch.inference_mode()
def prefill(backend: JanusBackend, prompts: dict[str, list[list[int]]], prefix: torch.Tensor | None = None,
            cost: CostRecord | None = None, features: torch.Tensor | None = None) -> DecodeState:
    """Prefill streams of prompt ids (each a list of n id lists, one per candidate), followed by `prefix` image
    tokens (n, k) for every stream. Prompts are left-padded to a common length. `features` (n, F, H): the image
    features an edit-conditioned row's placeholders take, per candidate (the same for every stream)."""
    streams = tuple(prompts)
    n = len(next(iter(prompts.values())))
    dev = backend.device
    if prefix is None:
        prefix = torch.zeros((n, 0), dtype=torch.long, device=dev)
    prefix = prefix.to(dev)
    k = prefix.shape[1]
    rows = [ids for s in streams for ids in prompts[s]]
    if any(len(prompts[s]) != n for s in streams):
        raise ValueError("every stream needs one prompt per candidate")
    ids, mask = left_pad(rows, backend.pad_id, dev, extra=k)
    if features is not None:
        features = features.repeat(len(streams), 1, 1)                          # (R, F, H), stream-major
    embeds = backend.embed_text(ids, features)                                 # (R, W, H)
    if k:
        img = backend.embed_image(prefix.repeat(len(streams), 1))              # (R, k, H)
        embeds = torch.cat([embeds, img.to(embeds.dtype)], 1)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    # a static cache holds what the prefill writes; `decode` makes room for each band (`static_cache.reserve`)
    cache = kv.new_cache(KV_CACHE == "static", backend.model.config.text_config, mask.shape[1])
    hidden = backend.forward(embeds, mask if (mask == 0).any() else None, positions, cache)
    if cost is not None:
        cost.add_prefill("generator", int(mask.sum()), backend.info.generator_params)
    return DecodeState(cache, streams, n, mask, mask.sum(-1), hidden[:, -1], prefix.clone())


def _gather_rows(state: DecodeState, idx: torch.Tensor) -> None:
    kv.gather_rows(state.cache, idx)


def select(state: DecodeState, keep: list[int] | torch.Tensor) -> DecodeState:
    """Candidates re-indexed by `keep` (repeats branch or copy, omissions drop). Consumes `state`'s cache."""
    keep = torch.as_tensor(keep, dtype=torch.long, device=state.mask.device)
    idx = torch.cat([s * state.n + keep for s in range(len(state.streams))])
    _gather_rows(state, idx)
    return DecodeState(state.cache, state.streams, len(keep), state.mask[idx], state.pos[idx], state.hidden[idx],
                       state.tokens[keep])


def fork(state: DecodeState) -> DecodeState:
    """A copy of `state` with its own cache: decoding the copy (a rollout) leaves `state` untouched. `select` cannot
    do this: it gathers rows into the same cache object."""
    return DecodeState(kv.clone(state.cache), state.streams, state.n, state.mask.clone(), state.pos.clone(),
                       state.hidden.clone(), state.tokens.clone())


def drop_streams(state: DecodeState, names: tuple[str, ...] | list[str]) -> DecodeState:
    kept = tuple(s for s in state.streams if s not in names)
    idx = torch.cat([torch.arange(state.stream_rows(s).start, state.stream_rows(s).stop) for s in kept])
    idx = idx.to(state.mask.device)
    _gather_rows(state, idx)
    return DecodeState(state.cache, kept, state.n, state.mask[idx], state.pos[idx], state.hidden[idx], state.tokens)


def order_streams(state: DecodeState, names: tuple[str, ...]) -> DecodeState:
    """The same rows with the streams in the order `names` (a permutation of state.streams; consumes the cache)."""
    if sorted(names) != sorted(state.streams):
        raise ValueError(f"cannot order streams {state.streams} as {names}")
    if tuple(names) == state.streams:
        return state
    idx = torch.cat([torch.arange(state.stream_rows(s).start, state.stream_rows(s).stop) for s in names])
    idx = idx.to(state.mask.device)
    _gather_rows(state, idx)
    return DecodeState(state.cache, tuple(names), state.n, state.mask[idx], state.pos[idx], state.hidden[idx],
                       state.tokens)


def _cat_rows(a: DecodeState, b: DecodeState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Append `b`'s cache rows to `a`'s cache (in place); the shorter cache is left-padded. Cached keys already carry
    their rotary positions, so padding does not move them. Returns the joined (mask, pos, hidden)."""
    ta, tb = a.mask.shape[1], b.mask.shape[1]
    width = max(ta, tb)
    kv.cat_rows(a.cache, b.cache)
    mask = torch.cat([torch.nn.functional.pad(a.mask, (width - ta, 0)), torch.nn.functional.pad(b.mask, (width - tb, 0))])
    return mask, torch.cat([a.pos, b.pos]), torch.cat([a.hidden, b.hidden])


def merge_streams(a: DecodeState, b: DecodeState) -> DecodeState:
    """Streams of `a` followed by those of `b` (same candidates, same image tokens), in `a`'s cache."""
    if a.n != b.n or not torch.equal(a.tokens, b.tokens):
        raise ValueError("merge_streams needs the same candidates with the same image tokens")
    mask, pos, hidden = _cat_rows(a, b)
    return DecodeState(a.cache, a.streams + b.streams, a.n, mask, pos, hidden, a.tokens)


def copy_stream(state: DecodeState, stream: str, candidates: list[int], as_name: str) -> DecodeState:
    """A new one-stream state holding copies of `stream`'s rows for `candidates` (state is left untouched)."""
    idx = torch.as_tensor(candidates, dtype=torch.long, device=state.mask.device) + state.stream_rows(stream).start
    return DecodeState(kv.take_rows(state.cache, idx), (as_name,), len(candidates), state.mask[idx],
                       state.pos[idx], state.hidden[idx], state.tokens[candidates])


def concat_candidates(a: DecodeState, b: DecodeState) -> DecodeState:
    """Candidates of `a` followed by those of `b`, for states of the same streams (in `a`'s cache, consumed)."""
    if a.streams != b.streams:
        raise ValueError("concat_candidates joins states of the same streams")
    if a.tokens.shape[1] != b.tokens.shape[1]:
        raise ValueError("concat_candidates joins candidates with the same number of image tokens")
    mask, pos, hidden = _cat_rows(a, b)                    # rows: all of a's, then all of b's
    if len(a.streams) == 1:
        return DecodeState(a.cache, a.streams, a.n + b.n, mask, pos, hidden, torch.cat([a.tokens, b.tokens]))
    # back to stream-major: for each stream, a's rows of it, then b's
    idx = torch.cat([torch.cat([torch.arange(s * a.n, (s + 1) * a.n),
                                a.rows + torch.arange(s * b.n, (s + 1) * b.n)]) for s in range(len(a.streams))])
    idx = idx.to(mask.device)
    state = DecodeState(a.cache, a.streams, a.n + b.n, mask[idx], pos[idx], hidden[idx],
                        torch.cat([a.tokens, b.tokens]))
    _gather_rows(state, idx)
    return state


@torch.inference_mode()
def step(backend: JanusBackend, state: DecodeState, next_tokens: torch.Tensor,
         cost: CostRecord | None = None, graph: kv.GraphStep | None = None) -> DecodeState:
    """Feed image tokens to every stream: one per candidate (n,), or a run of m known tokens (n, m) in one forward
    (the forced tokens of an edit). `graph`: the fixed-shape step of this decode call, used when it fits."""
    run = next_tokens if next_tokens.dim() == 2 else next_tokens.unsqueeze(1)   # (n, m)
    m = run.shape[1]
    embeds = backend.embed_image(run.repeat(len(state.streams), 1))           # (R, m, H)
    mask = torch.cat([state.mask, state.mask.new_ones(state.rows, m)], 1)
    positions = state.pos.unsqueeze(1) + torch.arange(m, device=state.pos.device)
    if graph is not None and graph.fits(state.cache, state.rows, m):
        hidden = graph(embeds, mask, positions)
    else:
        hidden = backend.step_forward(embeds, mask if state.padded else None, positions, state.cache)
    if cost is not None:
        cost.add_decode("generator", state.rows * m, backend.info.generator_params)
    return DecodeState(state.cache, state.streams, state.n, mask, state.pos + m, hidden[:, -1],
                       torch.cat([state.tokens, run], 1))


@torch.inference_mode()
def guided_logits(backend: JanusBackend, state: DecodeState, params: SamplingParams) -> torch.Tensor:
    """(n, V) logits after guidance: 2-way with (cond, uncond), 3-way when a layout stream is present."""
    logits = backend.image_logits(state.hidden)                               # (R, V)
    part = {s: logits[state.stream_rows(s)] for s in state.streams}
    if "uncond" not in part:
        return part["cond"]
    if "layout" in part:
        return cfg_three_way(part["cond"], part["uncond"], part["layout"], params.cfg, params.layout_scale)
    return cfg_two_way(part["cond"], part["uncond"], params.cfg)


TokenCallback = Callable[[DecodeState], None]


@torch.inference_mode()
def decode(backend: JanusBackend, state: DecodeState, n_tokens: int, params: SamplingParams,
           generator: torch.Generator | list[torch.Generator] | None = None, cancel: CancelToken | None = None,
           cost: CostRecord | None = None, on_token: TokenCallback | None = None,
           forced: torch.Tensor | None = None, forced_mask: torch.Tensor | None = None,
           feed_last: bool = True) -> DecodeState:
    """Draw `n_tokens` more tokens per candidate. The last token of a finished image is not fed back (nothing
    would read its hidden state). `forced` (n, rows*cols) with `forced_mask` (rows*cols,) or (n, rows*cols) bool
    teacher-forces positions instead of sampling them (masked editing): a run of positions forced for every
    candidate is fed in one forward (cut at the end of each token row, so `on_token` still sees every row
    boundary), and forced tokens are not counted as generated. `feed_last=False`: the tokens that complete this
    call are appended without a forward (nobody will read their hidden state, e.g. after an edit's last redrawn
    token)."""
    total = backend.info.rows * backend.info.cols
    cols = backend.info.cols
    end = state.tokens.shape[1] + n_tokens
    fm = None
    if forced is not None and forced_mask is not None:
        fm = forced_mask.to(state.tokens.device)
        fm = fm.expand(state.n, total) if fm.dim() == 1 else fm                   # (n, total) bool
        forced = forced.to(state.tokens.device)
    kv.reserve(state.cache, n_tokens)                      # the band's positions, allocated once (static cache)
    graph = _graph_step(backend, state) if n_tokens > 1 else None
    while state.tokens.shape[1] < end:
        if cancel is not None:
            cancel.check()
        k = state.tokens.shape[1]
        here = fm[:, k] if fm is not None else None
        if here is not None and bool(here.all()):
            stop = k + 1
            limit = min(end, (k // cols + 1) * cols)
            while stop < limit and bool(fm[:, stop].all()):
                stop += 1
            nxt = forced[:, k:stop]                                                # (n, m)
        else:
            # in a batch of edits, a job whose tokens are all forced here draws nothing, as it would alone
            nxt = sample(guided_logits(backend, state, params), params, generator,
                         None if here is None else ~here)
            if here is not None:
                nxt = torch.where(here, forced[:, k], nxt)
            if cost is not None:
                cost.image_tokens += state.n - (int(here.sum()) if here is not None else 0)
            nxt = nxt.unsqueeze(1)
        if k + nxt.shape[1] == total or (not feed_last and k + nxt.shape[1] == end):
            state = replace(state, tokens=torch.cat([state.tokens, nxt], 1))
        else:
            state = step(backend, state, nxt, cost, graph)
        if on_token is not None:
            on_token(state)
    return state


def decode_to_row(backend: JanusBackend, state: DecodeState, row: int, params: SamplingParams,
                  **kw) -> DecodeState:
    """Decode until the first `row` token rows are complete (a band boundary)."""
    target = row * backend.info.cols
    if target < state.tokens.shape[1]:
        raise ValueError(f"already past token row {row}")
    return decode(backend, state, target - state.tokens.shape[1], params, **kw)


def start(backend: JanusBackend, prompt: str, n: int = 1, cost: CostRecord | None = None,
          prefix: torch.Tensor | None = None) -> DecodeState:
    """Prefill (cond, uncond) for one prompt once, then branch into `n` candidates (optionally from a shared
    image-token prefix (1, k))."""
    ids = backend.prompt_ids(prompt)
    state = prefill(backend, {"cond": [ids], "uncond": [backend.uncond_ids(ids)]}, prefix, cost)
    return select(state, [0] * n) if n != 1 else state


def new_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """One generator per job: the same seed reproduces an image exactly on the same device."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
