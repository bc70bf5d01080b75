"""A lean forward for decoding steps of a Llama language model (Janus's): the same weights and the same arithmetic
as transformers' `LlamaModel.forward`, written out without output objects, hooks, mask builders or kwargs plumbing.

Why: a decoding step of the demo model feeds 2-3 rows of one token through 5 small layers; at that size the
library's per-call bookkeeping is a visible share of the time (measured: one demo image 0.32 s against 0.36 s
through the library, same process, interleaved, medians of 9; fusing q/k/v and gate/up into single products was
slower, 0.36 s, and was dropped). Prefill keeps the library's forward.
`tests/test_engine.py` checks that the two agree.

Shapes: x (R, L, H) for R cache rows and L new positions; the cache holds T = past + L positions per row after the
update; `mask` (R, T) is 1 for real positions and 0 for left padding (or None when nothing is padded).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .cancel import checkpoint


def supports(lm) -> bool:
    """Whether `lm` looks like the Llama layout this forward writes out."""
    try:
        layer = lm.layers[0]
        return (type(lm).__name__ == "LlamaModel" and hasattr(lm, "rotary_emb") and hasattr(lm, "norm") and
                all(hasattr(layer.self_attn, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim",
                                                          "scaling")))
    except (AttributeError, IndexError, TypeError):
        return False


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def _attend_inputs(layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """A layer's normalised input -> rotated queries and keys, and values, each (R, heads, L, d)."""
    R, L, _ = x.shape
    a = layer.self_attn
    h = layer.input_layernorm(x)
    q, k, v = a.q_proj(h), a.k_proj(h), a.v_proj(h)
    q = q.reshape(R, L, -1, a.head_dim).transpose(1, 2)                  # (R, heads, L, d)
    k = k.reshape(R, L, -1, a.head_dim).transpose(1, 2)                  # (R, kv heads, L, d)
    v = v.reshape(R, L, -1, a.head_dim).transpose(1, 2)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin, v


def _finish(layer, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask) -> torch.Tensor:
    """Attention over the cached keys/values, output projection and the MLP, with both residuals."""
    R, L, _ = x.shape
    a = layer.self_attn
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=a.scaling,
                                         enable_gqa=q.shape[1] != k.shape[1])
    x = x + a.o_proj(out.transpose(1, 2).reshape(R, L, -1))
    return x + layer.mlp(layer.post_attention_layernorm(x))


@torch.inference_mode()
def forward(lm, x: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor, cache) -> torch.Tensor:
    """(R, L, H) embeddings -> (R, L, H) final-norm hidden states, appending to `cache`."""
    R, L, _ = x.shape
    cos, sin = lm.rotary_emb(x, positions)                       # (R, L, d)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)                # (R, 1, L, d), broadcast over heads
    attn_mask = None
    past = cache.get_seq_length()
    T = past + L
    if mask is not None or L > 1:
        keys = torch.ones((R, T), dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        allowed = keys[:, None, None, :].expand(R, 1, L, T)      # padding is never attended to
        if L > 1:                                                # new positions see the past and earlier new ones
            causal = torch.ones((L, T), dtype=torch.bool, device=x.device).tril(diagonal=past)
            allowed = allowed & causal
        attn_mask = allowed
    for i, layer in enumerate(lm.layers):
        checkpoint()                            # the layer modules' own hooks do not run here
        q, k, v = _attend_inputs(layer, x, cos, sin)
        k, v = cache.update(k, v, i)                                          # (R, kv heads, T, d)
        x = _finish(layer, x, q, k, v, attn_mask)
    return lm.norm(x)


@torch.inference_mode()
def forward_static(lm, x: torch.Tensor, key_mask: torch.Tensor, positions: torch.Tensor, write_at: torch.Tensor,
                   keys: list[torch.Tensor], values: list[torch.Tensor]) -> torch.Tensor:
    """One decoding step with every shape and address fixed, so that it can be captured once as a CUDA graph and
    replayed per token (`static_cache.GraphStep`): x (R, 1, H); `key_mask` (R, capacity) bool, True for the cached
    positions a row attends to, this step's included; `write_at` (1,) long, the buffer position this step writes;
    `keys`/`values` the cache's whole buffers (R, kv heads, capacity, d), written in place. Attention reads the
    whole capacity behind the mask (a capture cannot follow a growing length). No cancel checkpoints: a replay
    is one launch, and the loop checks between tokens."""
    cos, sin = lm.rotary_emb(x, positions)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    allowed = key_mask[:, None, None, :]                                     # (R, 1, 1, capacity)
    for i, layer in enumerate(lm.layers):
        q, k, v = _attend_inputs(layer, x, cos, sin)
        keys[i].index_copy_(2, write_at, k)
        values[i].index_copy_(2, write_at, v)
        x = _finish(layer, x, q, keys[i], values[i], allowed)
    return lm.norm(x)
