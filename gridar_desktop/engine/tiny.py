"""Tiny random Janus models built in-process, for tests and benchmarks (no downloads, no training)."""
from __future__ import annotations

import torch

from ..training.demo_config import build_processor, janus_config, set_generation_config
from .backend import JanusBackend

DEMO_META = {"prompt_format": "plain", "canvas_colour": [235, 233, 226]}


def tiny_janus(seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4):
    """(model, processor): the demo model's architecture at a toy size, random weights."""
    from transformers import JanusForConditionalGeneration
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(janus_config(hidden=hidden, layers=layers, heads=heads)).eval()
    set_generation_config(model)
    return model, build_processor()


def tiny_backend(seed: int = 0, **kw) -> JanusBackend:
    model, processor = tiny_janus(seed, **kw)
    return JanusBackend(model, processor, "cpu", meta=dict(DEMO_META))
