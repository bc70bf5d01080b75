"""Guidance and sampling: small pure functions over logits of shape (n, V) (n candidates, V image codes).

Guidance scale `cfg` uses Janus's own convention, ``l_u + cfg * (l_c - l_u)`` (the library's
`ClassifierFreeGuidanceLogitsProcessor`; Janus-Pro's default is 5). In the paper's notation this is
``l_c + s * (l_c - l_u)`` with ``s = cfg - 1``, and three-way guidance is

    l = l_o + s * (l_o - l_u) + s_r * perp(l_r - l_u),
    perp(d_r) = d_r - <d_r, d_o> / |d_o|^2 * d_o,   d_o = l_o - l_u,

the layout direction with its component along the original direction removed, per candidate and step over the
vocabulary. The paper sets s_r = s; `layout_scale=None` does the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    cfg: float = 5.0                      # guidance scale, Janus convention
    layout_scale: float | None = None     # s_r of three-way guidance; None -> cfg - 1 (the paper's s_r = s_o)
    temperature: float = 1.0
    top_k: int = 0                        # 0: off
    top_p: float = 1.0                    # 1.0: off
    greedy: bool = False

    def __post_init__(self) -> None:
        if self.temperature <= 0 and not self.greedy:
            raise ValueError("temperature must be > 0 (use greedy=True for argmax decoding)")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")


def cfg_two_way(cond: torch.Tensor, uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    """(n, V), (n, V) -> (n, V): ordinary classifier-free guidance."""
    return uncond + cfg * (cond - uncond)


def orthogonal_part(d_r: torch.Tensor, d_o: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Component of each row of d_r orthogonal to the same row of d_o, over the last (vocabulary) axis."""
    coef = (d_r * d_o).sum(-1, keepdim=True) / (d_o * d_o).sum(-1, keepdim=True).clamp_min(eps)
    return d_r - coef * d_o


def cfg_three_way(orig: torch.Tensor, uncond: torch.Tensor, layout: torch.Tensor, cfg: float,
                  layout_scale: float | None = None) -> torch.Tensor:
    """(n, V) x 3 -> (n, V): l_o + s (l_o - l_u) + s_r perp(l_r - l_u), with s = cfg - 1."""
    s = cfg - 1.0
    s_r = s if layout_scale is None else layout_scale
    d_o = orig - uncond
    return orig + s * d_o + s_r * orthogonal_part(layout - uncond, d_o)


def warp(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus), as transformers orders its warpers."""
    logits = logits / p.temperature
    if p.top_k and p.top_k < logits.shape[-1]:
        kth = torch.topk(logits, p.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the top token always stays)
        drop_sorted = (probs.cumsum(-1) - probs) >= p.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(logits: torch.Tensor, p: SamplingParams, generator: torch.Generator | list[torch.Generator] | None,
           draw: torch.Tensor | None = None) -> torch.Tensor:
    """(n, V) guided logits -> (n,) token ids. A list of k generators splits the rows into k equal consecutive
    chunks (one per job of a batch), each drawn from its own generator, exactly as that job alone would draw.
    `draw` (n,) bool marks the rows that need a token; a job's chunk with no such row draws nothing (its ids are
    placeholders the caller replaces), as that job alone would not draw. A single generator draws every row."""
    if p.greedy:
        return logits.argmax(-1)
    if isinstance(generator, (list, tuple)):
        k = len(generator)
        wants = [None] * k if draw is None else draw.chunk(k)
        return torch.cat([torch.zeros(len(c), dtype=torch.long, device=c.device) if w is not None and not w.any()
                          else sample(c, p, g) for c, g, w in zip(logits.chunk(k), generator, wants)])
    probs = warp(logits.float(), p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
