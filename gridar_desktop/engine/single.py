"""Plain generation: n independent images for one or more prompts through the same loop (no search)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .backend import JanusBackend
from .cancel import CancelToken
from .cost import CostRecord
from .decode import TokenCallback, decode, new_generator, prefill, select
from .sampling import SamplingParams


@dataclass
class Generated:
    tokens: torch.Tensor                 # (n, rows*cols)
    images: np.ndarray                   # uint8 (n, H, W, 3)
    cost: CostRecord = field(default_factory=CostRecord)


def generate_batch(backend: JanusBackend, prompts: list[str], n_per_prompt: int, params: SamplingParams,
                   seed: int, cancel: CancelToken | None = None, on_token: TokenCallback | None = None) -> Generated:
    """`n_per_prompt` images for each prompt, all in one batch; each prompt's rows are prefilled once and branched.
    Output rows are prompt-major: prompt i's images are rows i*n .. i*n+n-1."""
    cost = CostRecord().start()
    ids = [backend.prompt_ids(p) for p in prompts]
    state = prefill(backend, {"cond": ids, "uncond": [backend.uncond_ids(i) for i in ids]}, cost=cost)
    if n_per_prompt > 1:
        state = select(state, [i for i in range(len(prompts)) for _ in range(n_per_prompt)])
    total = backend.info.rows * backend.info.cols
    state = decode(backend, state, total, params, new_generator(seed, backend.device), cancel, cost, on_token)
    images = backend.decode_tokens(state.tokens)
    cost.vq_decodes += len(images)
    cost.stop()
    return Generated(state.tokens.cpu(), images, cost)
