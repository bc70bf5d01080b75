"""Edits in the shapes world: the edit sampler (one source scene, one change, a box mask) and what a partial edit
already rules out.

The sampler serves the editing benchmark (`benchmarks/edit_quality.py`, its own seeds) and the verifier's training
data for edits (`training.edit_views`, its own random stream). An edit changes one object of a sampled scene:
- colour: the object gets another colour;      - shape: the object gets another shape;
- remove: the object is taken away;            - add: a new object is placed in an empty region.
The mask is the affected object's box (for add: the new object's box) grown by 2 px; the target prompt describes
the whole edited scene (counts only: an edit may break a source relation, so target prompts carry none).

A partial edit (`edit_contradictions`): the source is shown everywhere outside the redrawn tokens, the redrawn tokens
are drawn down to some row and not drawn below it. Visibility is per pixel, not per row: an object is fully visible
when none of its pixels lies where nothing is drawn yet, partly visible when part of it does (its colour is known,
its shape is not), and not seen when less than the judge's minimum area of it is visible. The generation rules 1-3
of `shapes.partial` apply, rule 4 only as "both fully visible and the relation fails" (raster order says nothing
about where an undrawn object of an edit will be), and one rule more, which is what a partial edit shows that a
partial generation rarely does (the rest of the scene is already there):

5. a partly visible object whose colour's groups are all complete among the fully visible objects (it can only
   become an object too many).
"""
from __future__ import annotations

import random

import numpy as np

from .grammar import COLOURS, SHAPES, Group, SceneSpec, format_prompt
from .partial import MIN_VISIBLE_AREA_FRACTION, Seen, contradictions
from .promptsets import CATEGORIES, sample_spec
from .scene import IMAGE_SIZE, SceneError, SceneObject, _place_one, render_scene, sample_scene

KINDS = ("colour", "shape", "remove", "add")
MAX_OBJECTS, MAX_COUNT, MAX_GROUPS = 6, 4, 3


def spec_of(objs: list[SceneObject]) -> SceneSpec | None:
    """The prompt (counts only) that a list of objects satisfies, or None when the grammar cannot say it."""
    counts: dict[tuple[str, str], int] = {}
    for o in objs:
        counts[(o.colour, o.shape)] = counts.get((o.colour, o.shape), 0) + 1
    if not counts or len(counts) > MAX_GROUPS or max(counts.values()) > MAX_COUNT or len(objs) > MAX_OBJECTS:
        return None
    return SceneSpec(tuple(Group(n, c, s) for (c, s), n in counts.items()))


def box_mask(o: SceneObject, grow: int = 2, size: int = IMAGE_SIZE) -> np.ndarray:
    """bool (size, size): the object's bounding box grown by `grow` px."""
    m = np.zeros((size, size), bool)
    x0, y0, x1, y1 = o.bbox
    m[max(0, int(y0) - grow):min(size, int(np.ceil(y1)) + grow),
      max(0, int(x0) - grow):min(size, int(np.ceil(x1)) + grow)] = True
    return m


def sample_edit(kind: str, rng: random.Random) -> dict | None:
    """One edit case, or None when this draw does not allow the edit (the caller draws again). Keys: kind,
    source (PIL image), mask (bool (64, 64)), target_prompt, kept (colour, shape, cx, cy of the source objects the
    edit must not touch), objects (the source's), edited (the edited scene's objects), changed (the object the
    edit affects: the old one, or the new one for add)."""
    try:
        spec = sample_spec(rng.choice(CATEGORIES), rng)
        objs = sample_scene(spec, rng)
    except SceneError:
        return None
    i = rng.randrange(len(objs))
    o = objs[i]
    new = list(objs)
    if kind == "colour":
        c = rng.choice([c for c in COLOURS if c != o.colour])
        new[i] = SceneObject(c, o.shape, o.cx, o.cy, o.size)
        changed = o
    elif kind == "shape":
        s = rng.choice([s for s in SHAPES if s != o.shape])
        new[i] = SceneObject(o.colour, s, o.cx, o.cy, o.size)
        changed = o
    elif kind == "remove":
        if len(objs) < 2:
            return None
        new.pop(i)
        changed = o
    else:
        c, s = rng.choice(COLOURS), rng.choice(SHAPES)
        placed = _place_one(c, s, None, objs, rng, IMAGE_SIZE / 16, IMAGE_SIZE, 4)
        if placed is None:
            return None
        new.append(placed)
        changed = placed
    target = spec_of(new)
    if target is None:
        return None
    mask = box_mask(changed)
    kept = [x for x in objs if x is not o or kind == "add"]
    kept = [x for x in kept if not (box_mask(x, 0) & mask).any()]      # objects the edit must not touch
    return {"kind": kind, "source": render_scene(objs), "mask": mask, "target_prompt": format_prompt(target),
            "kept": [(x.colour, x.shape, x.cx, x.cy) for x in kept], "objects": objs, "edited": new,
            "changed": changed, "target": target}


def make_edit_set(n: int, seed: int) -> list[dict]:
    """n edits, the kinds in turn, reproducible from `seed`."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        case = sample_edit(KINDS[len(out) % len(KINDS)], rng)
        if case is not None:
            out.append(case)
    return out


def covered(o: SceneObject, size: int = IMAGE_SIZE) -> np.ndarray:
    """bool (size, size): the pixels (by their centres) an object covers."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return np.asarray(o.covers(xx, yy), bool)


def seen_in_edit(objects: list[SceneObject], undrawn: np.ndarray, size: int = IMAGE_SIZE
                 ) -> tuple[list[Seen], list[Seen]]:
    """(fully visible, partly visible) objects of a scene when the pixels of `undrawn` (bool (H, W)) show nothing
    yet. An object with less than the minimum visible area is not seen."""
    min_area = MIN_VISIBLE_AREA_FRACTION * size * size
    full, part = [], []
    for o in objects:
        px = covered(o, size)
        hidden, shown = int((px & undrawn).sum()), int((px & ~undrawn).sum())
        s = Seen(o.colour, o.shape, (o.cx, o.cy), o.bbox[1], o.bbox[3])
        if hidden == 0:
            full.append(s)
        elif shown >= min_area:
            part.append(s)
    return full, part


def edit_contradictions(full: list[Seen], part: list[Seen], spec: SceneSpec, size: int = IMAGE_SIZE) -> list[str]:
    """Visible contradictions of a partial edit (module docstring: rules 1-3, 4 without raster order, 5)."""
    # The generation rules with every fully visible object above a cut at the bottom and every partly visible one
    # across it: rules 1-3 and 4's "both fully visible" are about objects, not rows.
    cut = float(size)
    shown = [Seen(o.colour, o.shape, o.centre, 0.0, 0.0) for o in full]
    shown += [Seen(o.colour, o.shape, o.centre, 0.0, cut + 1.0) for o in part]
    out = [c for c in contradictions(shown, spec, cut, size) if "can no longer" not in c]
    done = {g.key for g in spec.groups if sum((o.colour, o.shape) == g.key for o in full) >= g.count}
    for o in part:
        mine = [g.key for g in spec.groups if g.colour == o.colour]
        if mine and all(k in done for k in mine):
            out.append(f"a partly drawn {o.colour} object, but every {o.colour} group is complete")
    return out


def judge_partial_edit(image, prompt, undrawn: np.ndarray) -> list[str]:
    """The judge's reading of a partial edit: visible contradictions in a (preview) image whose pixels in `undrawn`
    (bool (H, W)) are not drawn yet. Those pixels are blanked before detection; a detected object whose box (grown
    by 1 px) reaches them is partly visible. For measuring verifiers only."""
    from PIL import Image

    from .grammar import parse_prompt
    from .judge import detect_objects
    from .scene import BACKGROUND
    spec = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    a = np.array(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    a[undrawn] = BACKGROUND
    h, w = undrawn.shape
    full, part = [], []
    for o in detect_objects(a):
        x0, y0, x1, y1 = o.bbox
        box = undrawn[max(0, int(y0) - 1):min(h, int(np.ceil(y1)) + 2), max(0, int(x0) - 1):min(w, int(np.ceil(x1)) + 2)]
        (part if box.any() else full).append(Seen(o.colour, o.shape, o.centroid, y0, y1))
    return edit_contradictions(full, part, spec, a.shape[0])
