"""Seeded scene sampling and rendering for the shapes world.

A scene is a list of `SceneObject`s (colour, shape, centre, size) drawn as flat-coloured, non-overlapping shapes on a
light background. Positions and sizes lie on a lattice of `size // 16` pixels (4 px at the default 64 px): objects
still vary in size and place, and the lattice keeps the set of distinct 8x8-pixel patches small, which lets the demo
model's small VQ tokenizer reconstruct corners and edges exactly.

Rendering draws at 4x and box-filters down, so edges are anti-aliased like a real image; the judge copes with that.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .grammar import Placement, SceneSpec, parse_prompt

IMAGE_SIZE = 64
BACKGROUND: tuple[int, int, int] = (235, 233, 226)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 90, 220),
    "yellow": (240, 200, 20),
    "purple": (140, 70, 190),
    "orange": (250, 128, 14),
}
SUPERSAMPLE = 4

# Sizes in lattice units (x 4 px at 64 px): 12, 16 or 20 px objects.
SIZE_UNITS = (3, 4, 5)
GAP_UNITS = 1            # at least one lattice unit of background between objects
RELATION_MARGIN = 0.05   # judge: a relation needs the centres apart by > 5% of the image along its axis


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    cx: float      # centre in pixels
    cy: float
    size: float    # side of the bounding box in pixels

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        h = self.size / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)

    def covers(self, x, y):
        """Whether the drawn shape covers point(s) (x, y) in pixels: floats, or numpy arrays (element-wise).
        Triangles point up (apex at the top centre), as `render_scene` draws them."""
        x0, y0, x1, y1 = self.bbox
        inside = (x0 <= x) & (x < x1) & (y0 <= y) & (y < y1)
        if self.shape == "circle":
            return inside & ((x - self.cx) ** 2 + (y - self.cy) ** 2 <= (self.size / 2) ** 2)
        if self.shape == "triangle":
            return inside & (abs(x - self.cx) <= (y - y0) / 2)
        return inside


class SceneError(RuntimeError):
    """No scene satisfying the prompt could be sampled (too crowded for the requested layout)."""


# ------------------------------------------------------------------------------------------------------------
# Regions: shared by the sampler (where to put things) and the judge (whether they are there).

def in_region(cx: float, cy: float, region: str, size: int = IMAGE_SIZE) -> bool:
    """Whether a centre lies in a layout region. top/bottom/left/right split the image in halves; center is the
    middle 40% square; corners are the intersections of two halves."""
    x, y = cx / size, cy / size
    tests = {
        "top": y < 0.5, "bottom": y > 0.5, "left": x < 0.5, "right": x > 0.5,
        "center": abs(x - 0.5) < 0.2 and abs(y - 0.5) < 0.2,
    }
    return all(tests[part] for part in region.split())


def relation_holds(a: tuple[float, float], b: tuple[float, float], relation: str, size: int = IMAGE_SIZE) -> bool:
    """Whether centre `a` stands in `relation` to centre `b` (image y grows downwards)."""
    m = RELATION_MARGIN * size
    dx, dy = b[0] - a[0], b[1] - a[1]
    return {"left of": dx > m, "right of": -dx > m, "above": dy > m, "below": -dy > m}[relation]


# ------------------------------------------------------------------------------------------------------------
# Sampling

def sample_scene(spec: SceneSpec, rng: random.Random, size: int = IMAGE_SIZE, max_tries: int = 400) -> list[SceneObject]:
    """Draw one random scene that satisfies `spec` (counts, relation and layout clause)."""
    unit = size / 16
    items = _object_requests(spec)
    for attempt in range(max_tries):
        # Crowded scenes get smaller objects after a few failed attempts.
        max_units = SIZE_UNITS[-1] - (1 if attempt > max_tries // 3 or len(items) >= 5 else 0)
        placed: list[SceneObject] = []
        ok = True
        for colour, shape, region in items:
            obj = _place_one(colour, shape, region, placed, rng, unit, size, max_units)
            if obj is None:
                ok = False
                break
            placed.append(obj)
        if ok and _relation_ok(spec, placed, size):
            rng.shuffle(placed)
            return placed
    raise SceneError(f"could not place the objects of '{spec}' after {max_tries} attempts")


def _object_requests(spec: SceneSpec) -> list[tuple[str, str, str | None]]:
    """(colour, shape, region or None) for every object, layout placements first (they are the hardest)."""
    remaining = {g.key: g.count for g in spec.groups}
    requests: list[tuple[str, str, str | None]] = []
    for p in spec.layout:
        n = remaining[p.key] if p.count is None else p.count
        requests += [(p.colour, p.shape, p.region)] * n
        remaining[p.key] -= n
    for g in spec.groups:
        requests += [(g.colour, g.shape, None)] * remaining[g.key]
    return requests


def _place_one(colour: str, shape: str, region: str | None, placed: list[SceneObject], rng: random.Random,
               unit: float, size: int, max_units: int) -> SceneObject | None:
    n_units = int(round(size / unit))
    for _ in range(60):
        s = rng.choice([u for u in SIZE_UNITS if u <= max_units])
        x0 = rng.randint(1, n_units - s - 1)
        y0 = rng.randint(1, n_units - s - 1)
        cand = SceneObject(colour, shape, (x0 + s / 2) * unit, (y0 + s / 2) * unit, s * unit)
        if region is not None and not _in_region_clearly(cand, region, size):
            continue
        if all(_apart(cand, o, GAP_UNITS * unit) for o in placed):
            return cand
    return None


def _in_region_clearly(o: SceneObject, region: str, size: int) -> bool:
    # Sampled scenes keep a few pixels of margin so that the judge's region test is never borderline.
    m = 0.04 * size
    return all(in_region(o.cx + dx, o.cy + dy, region, size) for dx in (-m, m) for dy in (-m, m))


def _apart(a: SceneObject, b: SceneObject, gap: float) -> bool:
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    return ax1 + gap <= bx0 or bx1 + gap <= ax0 or ay1 + gap <= by0 or by1 + gap <= ay0


def _relation_ok(spec: SceneSpec, objs: list[SceneObject], size: int) -> bool:
    r = spec.relation
    if r is None:
        return True
    ga, gb = spec.groups[r.a], spec.groups[r.b]
    a = next(o for o in objs if (o.colour, o.shape) == ga.key)
    b = next(o for o in objs if (o.colour, o.shape) == gb.key)
    # Sampled relations are clear: twice the judge's margin along the axis, and the axis dominates.
    dx, dy = b.cx - a.cx, b.cy - a.cy
    along, across = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[r.relation]
    return along > 2 * RELATION_MARGIN * size and along >= abs(across) and relation_holds(
        (a.cx, a.cy), (b.cx, b.cy), r.relation, size)


# ------------------------------------------------------------------------------------------------------------
# Rendering

def render_scene(objects: list[SceneObject], size: int = IMAGE_SIZE) -> Image.Image:
    """Render objects to an RGB image of `size` x `size` with anti-aliased edges."""
    big = size * SUPERSAMPLE
    img = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(img)
    k = SUPERSAMPLE
    for o in objects:
        x0, y0, x1, y1 = (v * k for v in o.bbox)
        fill = PALETTE[o.colour]
        if o.shape == "square":
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
        elif o.shape == "circle":
            draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=fill)
        elif o.shape == "triangle":
            draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)], fill=fill)
        else:
            raise ValueError(f"unknown shape {o.shape!r}")
    return img.reduce(SUPERSAMPLE)


def make_scene(prompt: str | SceneSpec, seed: int, size: int = IMAGE_SIZE) -> tuple[Image.Image, list[SceneObject]]:
    """Render a ground-truth scene for a prompt (text or parsed spec), deterministically for a seed."""
    spec = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    objs = sample_scene(spec, random.Random(seed), size)
    return render_scene(objs, size), objs


def image_array(img: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3) array of an image in RGB."""
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def layout_of(objects: list[SceneObject], spec: SceneSpec, size: int = IMAGE_SIZE) -> tuple[Placement, ...]:
    """Describe where each group of `spec` lies in a scene, as layout placements (used to make reformulation
    targets for training: the label comes from the scene specification, never from the judge)."""
    out: list[Placement] = []
    for g in spec.groups:
        members = [o for o in objects if (o.colour, o.shape) == g.key]
        if not members:
            continue
        regions = [_coarse_region(o, size) for o in members]
        if len(set(regions)) == 1:
            out.append(Placement(g.colour, g.shape, None, regions[0]))
        else:
            for r in dict.fromkeys(regions):
                out.append(Placement(g.colour, g.shape, regions.count(r), r))
    return tuple(out)


def _coarse_region(o: SceneObject, size: int) -> str:
    return "top" if o.cy < size / 2 else "bottom"


