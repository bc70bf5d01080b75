"""The judge: an exact, programmatic reader of shapes-world images. It measures; it never chooses.

What counts as an object
------------------------
Every pixel is modelled as a mix of the background and at most one palette colour, ``p = bg + a * (c - bg)``
(this is what anti-aliasing and soft generated edges produce). For each palette colour ``c`` the judge computes the
coverage ``a`` (projection of ``p - bg`` on ``c - bg``) and the residual off that mixing line; a pixel belongs to the
colour with the smallest residual among those with coverage above 0.35, if that residual is small enough, so colour
drift of a few tens of levels and noise are tolerated while a truly different colour is not.
Per colour, stray pixels with fewer than two same-colour neighbours are dropped, then pixels are joined into 8-connected blobs after closing gaps of one or two pixels (a generated object torn
by a stray line is still one object). A blob is an object when its summed coverage is at least
``MIN_AREA_FRACTION`` of the image (about 33 px at 64 px, where the smallest drawn object has 72 px) and it has a
solid core of at least ``MIN_CORE_FRACTION`` (pixels with coverage >= 0.6): specks, thin edge rings and faint smudges
are not objects.
Its shape comes from three scale-free features of its coverage map: fill (area / bounding-box area: square 1.0,
circle 0.79, triangle 0.5), the share of its mass in the top half of the box (triangles, drawn point up: 0.25) and
the mean coverage of the four corner cells of the box (square about 1, circle about 0.3); the nearest prototype wins.
The centroid is coverage-weighted; the bounding box spans the rows and columns whose coverage reaches one half.

Scores
------
Atomic constraints of a prompt: one per group (its count is exact), one for "nothing unmentioned is present", one per
relation (some object of group a stands in the relation to some object of group b), one per layout placement (the
placed objects' centroids lie in the region). ``strict`` is 1 when all hold, ``partial`` is the fraction that holds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from .grammar import SceneSpec, parse_prompt
from .scene import BACKGROUND, PALETTE, in_region, relation_holds

MIN_AREA_FRACTION = 0.008
MIN_CORE_FRACTION = 0.004
_COLOURS = list(PALETTE)
_BG = np.array(BACKGROUND, np.float32)
_DIRS = np.stack([np.array(PALETTE[c], np.float32) - _BG for c in _COLOURS])       # (6, 3)
_DIRS_NORM2 = (_DIRS ** 2).sum(-1)                                                    # (6,)
_PROTOTYPES = {"square": (1.0, 0.5, 1.0), "circle": (0.785, 0.5, 0.3), "triangle": (0.5, 0.25, 0.15)}
_FEATURE_SCALE = np.array([0.12, 0.08, 0.25], np.float32)
_CLOSE = np.ones((3, 3), bool)
_EIGHT = np.ones((3, 3), int)


@dataclass
class DetectedObject:
    colour: str
    shape: str
    centroid: tuple[float, float]                  # (x, y) in pixels
    bbox: tuple[float, float, float, float]        # (x0, y0, x1, y1) in pixels
    area: float                                    # coverage-weighted pixels

    def to_json(self) -> dict:
        d = asdict(self)
        d["centroid"] = [round(v, 2) for v in self.centroid]
        d["bbox"] = [round(v, 2) for v in self.bbox]
        d["area"] = round(self.area, 1)
        return d


@dataclass
class Judgement:
    strict: int
    partial: float
    objects: list[DetectedObject]
    constraints: list[tuple[str, bool]]

    def to_json(self) -> dict:
        return {"strict": self.strict, "partial": round(self.partial, 4),
                "objects": [o.to_json() for o in self.objects],
                "constraints": [{"constraint": n, "met": m} for n, m in self.constraints]}


def _as_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    return np.asarray(image, np.float32)[..., :3]


def coverage_maps(image: Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel colour label (-1 = background / unreadable) and coverage of that colour, both (H, W)."""
    d = _as_array(image) - _BG                                            # (H, W, 3)
    alpha = np.einsum("hwc,kc->khw", d, _DIRS) / _DIRS_NORM2[:, None, None]  # (6, H, W)
    resid = np.linalg.norm(d[None] - alpha[..., None] * _DIRS[:, None, None, :], axis=-1)
    # Residual tolerance grows with coverage: a strong colour may drift more than a faint edge pixel.
    ok = (alpha > 0.35) & (resid < 28 + 40 * np.clip(alpha, 0, 1))
    resid = np.where(ok, resid, np.inf)
    label = resid.argmin(0)
    label = np.where(np.isfinite(resid.min(0)), label, -1)
    cov = np.take_along_axis(alpha, np.maximum(label, 0)[None], 0)[0]
    return label, np.where(label >= 0, np.clip(cov, 0, 1), 0.0)


def detect_objects(image: Image.Image | np.ndarray) -> list[DetectedObject]:
    """Find the objects in an image, top to bottom."""
    label, cov = coverage_maps(image)
    h, w = label.shape
    min_area, min_core = MIN_AREA_FRACTION * h * w, MIN_CORE_FRACTION * h * w
    found: list[DetectedObject] = []
    for k, colour in enumerate(_COLOURS):
        mask = label == k
        if not mask.any():
            continue
        # Stray pixels (fewer than two same-colour neighbours) are dropped first, so that a speck can neither bridge
        # two objects through the closing below nor stretch an object's bounding box.
        mask &= ndimage.convolve(mask.astype(np.uint8), _EIGHT.astype(np.uint8), mode="constant") >= 3
        closed = ndimage.binary_closing(mask, _CLOSE) | mask
        blobs, n = ndimage.label(closed, _EIGHT)
        if n == 0:
            continue
        covk = np.where(mask, cov, 0.0)
        areas = ndimage.sum_labels(covk, blobs, np.arange(1, n + 1))
        cores = ndimage.sum_labels(covk >= 0.6, blobs, np.arange(1, n + 1))
        boxes = ndimage.find_objects(blobs)
        for i in range(n):
            if areas[i] < min_area or cores[i] < min_core:
                continue
            sl = boxes[i]
            sub = np.where(blobs[sl] == i + 1, covk[sl], 0.0)
            found.append(_describe(colour, sub, sl[1].start, sl[0].start))
    found.sort(key=lambda o: (o.centroid[1], o.centroid[0]))
    return found


def _describe(colour: str, sub: np.ndarray, x_off: int, y_off: int) -> DetectedObject:
    area = float(sub.sum())
    ys, xs = np.nonzero(sub >= 0.5)
    if len(xs) == 0:
        ys, xs = np.nonzero(sub > 0)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    box = sub[y0:y1, x0:x1]
    bw = float(box.max(0).sum())       # sub-pixel width: coverage of each column's fullest pixel
    bh = float(box.max(1).sum())
    fill = area / max(bw * bh, 1.0)
    rows = box.sum(1)
    mid = box.shape[0] / 2
    r = np.arange(box.shape[0]) + 0.5
    top_frac = float(rows[r < mid].sum() + 0.5 * rows[r == mid].sum()) / max(float(rows.sum()), 1e-6)
    ch, cw = max(1, round(box.shape[0] * 0.2)), max(1, round(box.shape[1] * 0.2))
    corners = np.mean([box[:ch, :cw].mean(), box[:ch, -cw:].mean(), box[-ch:, :cw].mean(), box[-ch:, -cw:].mean()])
    feats = np.array([fill, top_frac, corners], np.float32)
    shape = min(_PROTOTYPES, key=lambda s: float((((feats - _PROTOTYPES[s]) / _FEATURE_SCALE) ** 2).sum()))
    yy, xx = np.mgrid[0:sub.shape[0], 0:sub.shape[1]]
    cx = float((sub * (xx + 0.5)).sum() / area) + x_off
    cy = float((sub * (yy + 0.5)).sum() / area) + y_off
    return DetectedObject(colour, shape, (cx, cy), (float(x0 + x_off), float(y0 + y_off), float(x1 + x_off),
                                                  float(y1 + y_off)), area)


def score(objects: list[DetectedObject], spec: SceneSpec, size: int) -> tuple[int, float, list[tuple[str, bool]]]:
    """Strict and partial scores of detected objects against a parsed prompt, with each constraint's outcome."""
    by_key: dict[tuple[str, str], list[DetectedObject]] = {}
    for o in objects:
        by_key.setdefault((o.colour, o.shape), []).append(o)
    cons: list[tuple[str, bool]] = []
    for g in spec.groups:
        n = len(by_key.get(g.key, []))
        cons.append((f"count {g.colour} {g.shape} == {g.count} (found {n})", n == g.count))
    mentioned = {g.key for g in spec.groups}
    extra = [f"{c} {s}" for (c, s), objs in by_key.items() if (c, s) not in mentioned for _ in objs]
    cons.append(("nothing unmentioned" + (f" (found {', '.join(extra)})" if extra else ""), not extra))
    if spec.relation is not None:
        r = spec.relation
        ga, gb = spec.groups[r.a], spec.groups[r.b]
        ok = any(relation_holds(a.centroid, b.centroid, r.relation, size)
                 for a in by_key.get(ga.key, []) for b in by_key.get(gb.key, []))
        cons.append((f"{ga.colour} {ga.shape} {r.relation} {gb.colour} {gb.shape}", ok))
    for p in spec.layout:
        objs = by_key.get(p.key, [])
        inside = sum(in_region(*o.centroid, p.region, size) for o in objs)
        ok = (inside == len(objs) and inside > 0) if p.count is None else inside >= p.count
        want = "all" if p.count is None else str(p.count)
        cons.append((f"{want} {p.colour} {p.shape} in {p.region} (found {inside} of {len(objs)})", ok))
    met = sum(m for _, m in cons)
    return int(met == len(cons)), met / len(cons), cons


def judge(image: Image.Image | np.ndarray, prompt: str | SceneSpec) -> Judgement:
    """Judge an image against a prompt of the shapes grammar (text or parsed)."""
    spec = parse_prompt(prompt) if isinstance(prompt, str) else prompt
    arr = _as_array(image)
    objects = detect_objects(arr)
    strict, partial, cons = score(objects, spec, arr.shape[1])
    return Judgement(strict, partial, objects, cons)
