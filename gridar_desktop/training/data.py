"""Training data for the demo model, sampled on the fly from the shapes world (never labelled by the judge)."""
from __future__ import annotations

import random

import numpy as np
import torch

from ..shapes.grammar import SceneSpec, format_prompt
from ..shapes.promptsets import CATEGORIES, sample_spec
from ..shapes.scene import IMAGE_SIZE, SceneError, SceneObject, layout_of, render_scene, sample_scene


def random_scene(rng: random.Random, layout_p: float = 0.0) -> tuple[SceneSpec, list[SceneObject], str]:
    """A random base spec, one scene for it, and its prompt; with probability `layout_p` the prompt carries the
    layout clause that describes where the sampled scene put each group (top / bottom)."""
    while True:
        spec = sample_spec(rng.choice(CATEGORIES), rng)
        try:
            objs = sample_scene(spec, rng)
        except SceneError:
            continue
        if rng.random() < layout_p:
            full = SceneSpec(spec.groups, spec.relation, layout_of(objs, spec))
            return full, objs, format_prompt(full)
        return spec, objs, format_prompt(spec)


def to_tensor(images: list) -> torch.Tensor:
    """PIL images -> float (B, 3, H, W) in [-1, 1]."""
    arr = np.stack([np.asarray(im, np.float32) for im in images])          # (B, H, W, 3)
    return torch.from_numpy(arr).permute(0, 3, 1, 2) / 127.5 - 1.0


def image_batch(rng: random.Random, n: int) -> torch.Tensor:
    return to_tensor([render_scene(random_scene(rng, 0.3)[1], IMAGE_SIZE) for _ in range(n)])
