"""What a partial view (only the top rows drawn) already rules out: the "visible contradiction".

A candidate is truly impossible when what is visible contradicts the prompt whatever the hidden rows hold. Objects
are fully visible when their bounding box ends above the cut, partly visible when they start above it and run past
it (their shape is not known yet, their colour is). An object shows at all only when at least
`MIN_VISIBLE_AREA_FRACTION` of the image (the judge's own speck threshold, about 33 px at 64 px) of it lies above the
cut: a triangle's apex or a circle's cap a few pixels high is not yet an object anyone could see, and the judge's
detector ignores it. The rules:

1. a fully visible object of a (colour, shape) the prompt does not mention;
2. a partly visible object of a colour no group of the prompt has;
3. more fully visible objects of a group than the prompt's count;
4. a relation between two single objects that already fails: both fully visible and the relation does not hold; or,
   for "A above B", B fully visible while nothing of A's colour has started (A would have to start lower, so its
   centre would end up below B's); likewise for "A below B" with A fully visible and B not started.

The same rules serve two users, fed differently: the judge's partial-view mode (`judge_partial`, for measuring a
verifier against truth on generated images) and the labels of the verifier's training data (from the scene
specification, see training). Layout clauses are not checked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .grammar import SceneSpec, parse_prompt
from .judge import MIN_AREA_FRACTION, detect_objects
from .scene import BACKGROUND, SceneObject, relation_holds

MIN_VISIBLE_AREA_FRACTION = MIN_AREA_FRACTION


@dataclass(frozen=True)
class Seen:
    colour: str
    shape: str
    centre: tuple[float, float]
    top: float
    bottom: float


def contradictions(objects: list[Seen], spec: SceneSpec, cut: float, size: int) -> list[str]:
    """Visible contradictions of `spec` among objects, with only pixel rows above `cut` drawn."""
    full = [o for o in objects if o.bottom <= cut]
    part = [o for o in objects if o.top < cut < o.bottom]
    keys = {g.key for g in spec.groups}
    colours = {g.colour for g in spec.groups}
    out = [f"a {o.colour} {o.shape} is not in the prompt" for o in full if (o.colour, o.shape) not in keys]
    out += [f"nothing {o.colour} is in the prompt" for o in part if o.colour not in colours]
    for g in spec.groups:
        n = sum((o.colour, o.shape) == g.key for o in full)
        if n > g.count:
            out.append(f"{n} {g.colour} {g.shape}s visible, the prompt asks for {g.count}")
    r = spec.relation
    if r is not None:
        ga, gb = spec.groups[r.a], spec.groups[r.b]
        fa = [o for o in full if (o.colour, o.shape) == ga.key]
        fb = [o for o in full if (o.colour, o.shape) == gb.key]
        started = {o.colour for o in full + part}
        if fa and fb and not any(relation_holds(a.centre, b.centre, r.relation, size) for a in fa for b in fb):
            out.append(f"the {ga.colour} {ga.shape} is not {r.relation} the {gb.colour} {gb.shape}")
        elif r.relation == "above" and fb and ga.colour not in started:
            out.append(f"the {ga.colour} {ga.shape} can no longer be above the {gb.colour} {gb.shape}")
        elif r.relation == "below" and fa and gb.colour not in started:
            out.append(f"the {gb.colour} {gb.shape} can no longer be above the {ga.colour} {ga.shape}")
    return out


def visible_area(o: SceneObject, cut: float) -> float:
    """Pixels of a drawn object (pixel centres it covers) above the cut."""
    x0, y0, x1, y1 = o.bbox
    ys = np.arange(np.floor(max(y0, 0.0)), min(np.ceil(y1), cut)) + 0.5
    xs = np.arange(np.floor(max(x0, 0.0)), np.ceil(x1)) + 0.5
    if len(ys) == 0 or len(xs) == 0:
        return 0.0
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return float(o.covers(xx, yy).sum())


def seen_in_scene(objects: list[SceneObject], cut: float, size: int) -> list[Seen]:
    """A scene specification's objects as a partial view shows them: objects with less than the minimum visible
    area above the cut are not seen at all (the labels of the verifier's training data)."""
    min_area = MIN_VISIBLE_AREA_FRACTION * size * size
    return [Seen(o.colour, o.shape, (o.cx, o.cy), o.bbox[1], o.bbox[3]) for o in objects
            if o.bbox[3] <= cut or visible_area(o, cut) >= min_area]


def judge_partial(image: Image.Image | np.ndarray, prompt: str | SceneSpec, rows: int, total_rows: int) -> list[str]:
    """Visible contradictions in a generated image of which only the top `rows` of `total_rows` token rows count.
    Hidden rows are blanked before detection; a detected object touching the cut is partly visible."""
    spec = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    a = np.array(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    size = a.shape[0]
    cut = size * rows / total_rows
    a[int(cut):] = BACKGROUND
    seen = []
    for o in detect_objects(a):
        x0, y0, x1, y1 = o.bbox
        seen.append(Seen(o.colour, o.shape, o.centroid, y0, y1 + (1.0 if y1 >= cut - 1 else 0.0)))
    return contradictions(seen, spec, cut, size)
