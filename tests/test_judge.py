"""The judge on ground-truth renders, wrong prompts and degraded images."""
import random

import numpy as np
import pytest
from PIL import Image, ImageFilter

from gridar_desktop.shapes.grammar import COLOURS, SHAPES, Group, Relation, SceneSpec, format_prompt, parse_prompt
from gridar_desktop.shapes.judge import detect_objects, judge
from gridar_desktop.shapes.promptsets import CATEGORIES, make_prompt_set
from gridar_desktop.shapes.scene import make_scene

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def one_change(spec: SceneSpec, rng: random.Random) -> list[SceneSpec]:
    """Prompts that differ from `spec` in exactly one count, colour, shape or relation."""
    out = []
    used = {g.key for g in spec.groups}
    i = rng.randrange(len(spec.groups))
    g = spec.groups[i]

    def with_group(ng):
        gs = list(spec.groups)
        gs[i] = ng
        return SceneSpec(tuple(gs), spec.relation, ())
    if spec.relation is None:
        for n in (g.count - 1, g.count + 1):
            if 1 <= n <= 4 and spec.n_objects - g.count + n <= 6:
                out.append(with_group(Group(n, g.colour, g.shape)))
    colour = rng.choice([c for c in COLOURS if (c, g.shape) not in used])
    out.append(with_group(Group(g.count, colour, g.shape)))
    shape = rng.choice([s for s in SHAPES if (g.colour, s) not in used])
    out.append(with_group(Group(g.count, g.colour, shape)))
    if spec.relation is not None:
        r = spec.relation
        out.append(SceneSpec(spec.groups, Relation(r.a, OPPOSITE[r.relation], r.b)))
    return out


@pytest.fixture(scope="module")
def renders():
    rows = make_prompt_set(1000, 11)
    return [(r["prompt"], r["category"], make_scene(r["prompt"], seed)[0]) for seed, r in enumerate(rows)]


def test_strict_on_ground_truth_renders(renders):
    ok = [judge(img, p).strict for p, _, img in renders]
    assert len(ok) == 1000 and {c for _, c, _ in renders} == set(CATEGORIES)
    assert sum(ok) / len(ok) >= 0.995


def test_rejects_prompts_that_differ_in_one_thing(renders):
    rng = random.Random(0)
    checked = 0
    for p, _, img in renders[:300]:
        for wrong in one_change(parse_prompt(p), rng):
            j = judge(img, wrong)
            assert j.strict == 0, (p, format_prompt(wrong))
            assert j.partial < 1.0
            checked += 1
    assert checked > 600


def test_layout_clauses_are_scored():
    img, _ = make_scene("a red circle and a blue square, with the red circle at the top and the blue square at "
                        "the bottom", 5)
    assert judge(img, "a red circle and a blue square, with the red circle at the top").strict == 1
    j = judge(img, "a red circle and a blue square, with the red circle at the bottom")
    assert j.strict == 0 and j.partial == pytest.approx(3 / 4)


def degrade(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(img, np.float32)
    if kind == "noise":
        a = a + rng.normal(0, 12, a.shape)
    elif kind == "colour shift":
        a = a + rng.uniform(-18, 18, (1, 1, 3))
    elif kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(0.8))
    elif kind == "specks":      # isolated stray pixels of palette colours, like sampling noise in a VQ decode
        ys, xs = rng.integers(0, a.shape[0], 25), rng.integers(0, a.shape[1], 25)
        a[ys, xs] = rng.choice([[214, 39, 40], [31, 90, 220], [240, 200, 20]], 25)
    elif kind == "jpeg-ish":    # blur then noise
        return degrade(degrade(img, "blur", rng), "noise", rng)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("kind", ["noise", "colour shift", "blur", "specks", "jpeg-ish"])
def test_robust_to_degradations(renders, kind):
    rng = np.random.default_rng(0)
    sample = renders[:200]
    ok = [judge(degrade(img, kind, rng), p).strict for p, _, img in sample]
    assert sum(ok) / len(ok) >= 0.97, kind


def test_torn_object_is_still_one_object():
    img, _ = make_scene("a green square", 2)
    a = np.asarray(img).copy()
    (o,) = detect_objects(a)
    x = int(o.centroid[0])
    a[:, x] = (235, 233, 226)       # a one-pixel background line through the square
    assert [d.shape for d in detect_objects(a)] == ["square"]


def test_detects_attributes_and_geometry():
    img, objs = make_scene("a purple triangle to the left of an orange circle", 4)
    found = detect_objects(img)
    assert sorted((o.colour, o.shape) for o in found) == [("orange", "circle"), ("purple", "triangle")]
    for o in objs:
        d = next(f for f in found if f.colour == o.colour)
        assert abs(d.centroid[0] - o.cx) < 1.5 and abs(d.centroid[1] - o.cy) < 3   # triangle centroid sits low
        assert abs((d.bbox[2] - d.bbox[0]) - o.size) <= 1


def test_blank_canvas_has_no_objects():
    img = Image.new("RGB", (64, 64), (235, 233, 226))
    j = judge(img, "a red circle")
    assert j.objects == [] and j.strict == 0 and j.partial == pytest.approx(0.5)
