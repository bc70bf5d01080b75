"""Training views for verifying partial edits (the "edit" question of the demo model's understanding path).

An edit's candidate is verified while its redrawn tokens are drawn only down to some row. The generation question
("verify") shows the top rows and nothing below them, which for an edit hides most of the scene the target prompt
describes: the objects outside the mask are already final. The edit question shows the whole canvas with only the
redrawn patches not drawn yet in grey, so the verifier can see that a half-drawn object has a colour whose groups
are already complete elsewhere (the commonest visible edit failure), besides the generation rules.

Views come from the edit sampler (`shapes.edits.sample_edit`, a random stream of the training's own); the candidate
draws, inside the mask, the edit's intended object or an error a generator makes: the colour of another group of the
target prompt ("elsewhere"), another colour, another shape, the old object kept, or nothing. The cut is a token row
inside the redrawn span (at least one redrawn row drawn, at least one not). Labels come from the scene specification
(`shapes.edits.seen_in_edit` + `edit_contradictions`), never from the judge.
"""
from __future__ import annotations

import random

import numpy as np

from ..engine.edit import pixel_mask, token_mask
from ..shapes.edits import KINDS, edit_contradictions, sample_edit, seen_in_edit
from ..shapes.grammar import COLOURS, SHAPES
from ..shapes.scene import IMAGE_SIZE, SceneObject, render_scene
from .demo_config import GRID

EDIT_ERRORS = ("elsewhere", "elsewhere", "colour", "shape", "old", "missing")
IMPOSSIBLE_SHARE = 0.4            # labels drawn first, as for the generation views


def undrawn_pixels(mask: np.ndarray, drawn_rows: int) -> np.ndarray:
    """bool (H, W): the pixels of redrawn patches (`engine.edit.token_mask`'s rule) in token rows `drawn_rows` and
    below."""
    tm = token_mask(mask, GRID, GRID)                                        # (rows, cols)
    tm[:drawn_rows] = False
    return pixel_mask(tm.reshape(-1), GRID, GRID, mask.shape[0])


def redrawn_rows(mask: np.ndarray) -> tuple[int, int]:
    """(first, end) token rows holding redrawn patches."""
    rows = np.flatnonzero(token_mask(mask, GRID, GRID).any(axis=1))
    return int(rows[0]), int(rows[-1]) + 1


def _drawn(case: dict, error: str | None, rng: random.Random) -> list[SceneObject]:
    """What the candidate draws inside the mask: the intended object (None error) or one generation error."""
    c = case["changed"]
    intended = [] if case["kind"] == "remove" else [c if case["kind"] == "add" else
                                                    next(o for o in case["edited"] if (o.cx, o.cy) == (c.cx, c.cy))]
    if error is None:
        return intended
    if error == "missing":
        return []
    if error == "old":
        return [] if case["kind"] == "add" else [c]
    base = intended[0] if intended else c
    if error == "elsewhere":
        others = sorted({g.colour for g in case["target"].groups} - {base.colour})
        colour = rng.choice(others) if others else rng.choice([x for x in COLOURS if x != base.colour])
        return [SceneObject(colour, base.shape, base.cx, base.cy, base.size)]
    if error == "colour":
        return [SceneObject(rng.choice([x for x in COLOURS if x != base.colour]), base.shape, base.cx, base.cy,
                            base.size)]
    return [SceneObject(base.colour, rng.choice([s for s in SHAPES if s != base.shape]), base.cx, base.cy, base.size)]


def make_edit_view(rng: random.Random) -> tuple[np.ndarray, np.ndarray, str, bool, list[SceneObject]]:
    """(image uint8 (64, 64, 3) of the candidate, undrawn pixels bool (64, 64), target prompt, impossible?, the
    objects shown). The caller greys the undrawn pixels (after an optional VQ round trip)."""
    want = rng.random() < IMPOSSIBLE_SHARE
    for _ in range(50):
        case = None
        while case is None:
            case = sample_edit(rng.choice(KINDS), rng)
        first, end = redrawn_rows(case["mask"])
        if end - first < 2:
            continue                          # a one-row span is never verified
        error = rng.choice(EDIT_ERRORS) if want or rng.random() < 0.3 else None
        drawn = _drawn(case, error, rng)
        changed = case["changed"]
        rest = [o for o in case["edited"] if (o.cx, o.cy) != (changed.cx, changed.cy)]
        objs = rest + drawn
        undrawn = undrawn_pixels(case["mask"], rng.randint(first + 1, end - 1))
        full, part = seen_in_edit(objs, undrawn, IMAGE_SIZE)
        bad = bool(edit_contradictions(full, part, case["target"], IMAGE_SIZE))
        if bad == want:
            break
    return np.array(render_scene(objs)), undrawn, case["target_prompt"], bad, objs
