"""Quality checks of the demo model's stages, measured with the judge (measurement only, never training labels)."""
from __future__ import annotations


import numpy as np
import torch

from ..shapes.judge import judge
from ..shapes.promptsets import make_prompt_set
from ..shapes.scene import make_scene
from .data import to_tensor


@torch.no_grad()
def vq_read_rate(vq, n: int = 300, seed: int = 123) -> dict:
    """Share of ground-truth renders the judge still reads correctly after an encode -> decode round trip."""
    from .vq import quantize
    rows = make_prompt_set(n, seed)
    ok, per_cat = [], {}
    for i in range(0, n, 50):
        chunk = rows[i:i + 50]
        imgs = [make_scene(r["prompt"], seed + i + j)[0] for j, r in enumerate(chunk)]
        zq, _, _ = quantize(vq.eval(), to_tensor(imgs))
        rec = vq.decoder(vq.post_quant_conv(zq))
        rec = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        for r, im in zip(chunk, rec):
            s = judge(im, r["prompt"]).strict
            ok.append(s)
            per_cat.setdefault(r["category"], []).append(s)
    return {"read_rate": float(np.mean(ok)), **{c: float(np.mean(v)) for c, v in per_cat.items()}}
