"""Stage 3 of the demo model: teach its understanding path to verify, score and reformulate.

Data come from the scene sampler; labels come from the scene specification (what was drawn), never from the judge:
- describe: a scene (perturbed half of the time) -> what it holds, in the prompt grammar (`describe`); every word
          of the caption is a target, which gives the image features far more signal than one verdict.
- score:  a scene for the prompt; a share perturbed (an extra or a missing object, a wrong colour or shape, a
          relation swapped; in the fine-tuning mixes mostly a count off by one, as the generator errs), a share the
          scene of another prompt; "yes" when the scene satisfies the prompt.
- verify: the same scenes with only the top 2 or 4 of 8 token rows shown (the rest grey; in the fine-tuning mixes
          also any of 1-7 rows, where an edit's bands end); "impossible" when the visible part already contradicts
          the prompt (`shapes.partial.contradictions` over `seen_in_scene`: an object shows only with enough of it
          above the cut), else "possible".
- edit (EDIT_MIX): a partial edit, the whole canvas shown with only the redrawn patches not drawn yet grey;
          "impossible" by `shapes.edits.edit_contradictions` (`training.edit_views`).
- layout: unperturbed scenes, partly shown; the target clause places every visible group where its centre is and
          every group not visible yet at the bottom; nothing is appended when everything is already visible.
Partial views are read from the visible rows only: the vision encoder sees the whole canvas (hidden rows grey), but
only the image features of the drawn token rows enter the language model (2 or 4 of 8 rows: 1/4 or 1/2 of the
image positions), which is what makes verification cheap (`engine.janus_roles` does the same).
Half of the images go through the VQ (encode -> decode) so the roles learn on images that look generated; the
robust mix also blurs, specks and noises half of them (`imitate_generation`; nothing it adds is an object). The mixes
are `ExampleMix` values: FIRST_MIX (the first stages), FINE_TUNE_MIX and ROBUST_MIX (the shipped fine-tuning runs),
ENGINE_VIEW_MIX (partial views made by partial decodes, as the engine makes them; tried, see the model card) and
EDIT_MIX (a quarter of the examples partial edits asked the edit question, `training.edit_views`; the last shipped
run). The
visibility rule of the verify labels (`seen_in_scene`) holds for every mix since the fine-tuning runs.
Generation batches are replayed at every step so the shared language model keeps generating as before.
A training-only probe (`patch_probe`, not shipped) tags every image feature with the objects of its patch.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..shapes.grammar import (COLOURS, NUMBER_NAMES, SHAPES, Group, Placement, SceneSpec, format_base,
                              format_layout_clause, format_prompt)
from ..shapes.partial import contradictions, seen_in_scene
from ..shapes.promptsets import CATEGORIES, sample_spec
from ..shapes.scene import IMAGE_SIZE, SceneError, SceneObject, relation_holds, render_scene, sample_scene
from .demo_config import BOI, BOS, EOI, EOS, GRID, IMAGE, PAD, PATCH
from ..engine.decode import left_pad
from ..io.atomic import torch_save_atomic
from .gen import WORD_ID, generation_loss, make_batch, three_group_rows

log = logging.getLogger(__name__)
HIDDEN_FILL = 128
COLOURS_AND_SHAPES = [(c, s) for c in COLOURS for s in SHAPES]
TAG = {k: i + 1 for i, k in enumerate(COLOURS_AND_SHAPES)}      # the probe's classes; 0 = nothing
TASKS = ("describe", "score", "score", "verify", "verify", "layout")    # drawn uniformly: the task mix
ERRORS = ("extra", "missing", "colour", "shape", "swap")                 # perturb's kinds, drawn uniformly
# The score task's errors as the generator makes them: mostly a count off by one ("more": one more object of a kind
# the scene has; "missing"), less often a wrong colour, shape or kind, rarely places swapped.
SCORE_ERRORS = ("more", "more", "more", "missing", "missing", "missing", "extra", "colour", "shape", "swap")


@dataclass(frozen=True)
class ExampleMix:
    """How examples are drawn. Any task: a share `artifacts` of the images gets blur, specks and noise the way
    generated images have them (labels unchanged: none of it is an object). Score: a share `perturbed` (with errors
    of `errors`), a share paired with another prompt (an easy negative), the rest as drawn. Partial views (verify,
    layout): the top 2 or 4 of 8 token rows (GridAR's quarter and half), or with probability `any_rows` any of
    1-7 rows (an edit's bands are fractions of its redrawn rows, so they end at any row)."""
    perturbed: float = 1 / 3
    other_prompt: float = 1 / 3
    errors: tuple[str, ...] = ERRORS
    any_rows: float = 0.0
    artifacts: float = 0.0          # share of images given generation-like artifacts (`imitate_generation`)
    partial_decode: float = 0.0     # share of partial views made as the engine makes them (`partial_decode`)
    edit_views: float = 0.0         # share of examples that are partial edits (`training.edit_views`)
    cut_objects: float = 0.0        # share of verify views given an object across the cut (`across_cut`)


FIRST_MIX = ExampleMix()                                    # the shipped weights' first understanding stages
FINE_TUNE_MIX = ExampleMix(perturbed=0.45, other_prompt=0.2, errors=SCORE_ERRORS, any_rows=0.4)
ROBUST_MIX = ExampleMix(perturbed=0.45, other_prompt=0.2, errors=SCORE_ERRORS, any_rows=0.4, artifacts=0.5)
ENGINE_VIEW_MIX = replace(ROBUST_MIX, partial_decode=0.75)
# A quarter of the examples partial edits asked the edit question (the shipped run). `cut_objects` (objects started
# just above the cut, the views the measured misses at the half were made of) was tried at 0.5 and not shipped: it
# made the generation verifier worse on generated candidates (model card).
EDIT_MIX = replace(ROBUST_MIX, partial_decode=0.3, edit_views=0.25)
SPECK_RADIUS = (1.2, 2.4)           # px: discs of 5-18 px, below the judge's 33 px minimum object


def imitate_generation(img: np.ndarray, rng: random.Random) -> np.ndarray:
    """uint8 (H, W, 3) -> the same scene as a small generator might draw it: soft edges (Gaussian blur), specks
    (small discs of a palette colour, smaller than any object; the judge does not count them either) and pixel
    noise, each half of the time. Nothing added is an object, so every label of the scene stays true."""
    from scipy import ndimage

    from ..shapes.scene import PALETTE
    a = img.astype(np.float32)
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, 0.9)
        a = np.stack([ndimage.gaussian_filter(a[..., c], sigma) for c in range(3)], -1)
    if rng.random() < 0.5:
        h, w = a.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        for _ in range(rng.choice([1, 2])):
            r = rng.uniform(*SPECK_RADIUS)
            cy, cx = rng.uniform(2, h - 2), rng.uniform(2, w - 2)
            alpha = np.clip(r + 0.5 - np.hypot(yy - cy, xx - cx), 0, 1)[..., None] * rng.uniform(0.5, 1.0)
            a = a * (1 - alpha) + np.array(PALETTE[rng.choice(list(PALETTE))], np.float32) * alpha
    if rng.random() < 0.5:
        a = a + np.random.default_rng(rng.randrange(2 ** 31)).normal(0, rng.uniform(2, 6), a.shape)
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)



def counts_of(objs: list[SceneObject]) -> dict[tuple[str, str], int]:
    """How many objects of each (colour, shape) a scene holds."""
    counts: dict[tuple[str, str], int] = {}
    for o in objs:
        counts[(o.colour, o.shape)] = counts.get((o.colour, o.shape), 0) + 1
    return counts


def satisfies(objs: list[SceneObject], spec: SceneSpec) -> bool:
    """Whether a scene's objects meet the prompt: exact counts, nothing else, the relation."""
    if counts_of(objs) != {g.key: g.count for g in spec.groups}:
        return False
    r = spec.relation
    if r is None:
        return True
    a = next(o for o in objs if (o.colour, o.shape) == spec.groups[r.a].key)
    b = next(o for o in objs if (o.colour, o.shape) == spec.groups[r.b].key)
    return relation_holds((a.cx, a.cy), (b.cx, b.cy), r.relation, IMAGE_SIZE)


def perturb(objs: list[SceneObject], rng: random.Random, kinds: tuple[str, ...] = ERRORS) -> list[SceneObject]:
    """One random change that imitates a generation error, of a kind drawn from `kinds`: "extra" adds an object
    (half the time of a kind the scene has), "more" always of a kind the scene has, "missing" removes one."""
    from ..shapes.scene import _place_one
    objs = list(objs)
    kind = rng.choice(kinds)
    i = rng.randrange(len(objs))
    o = objs[i]
    if kind in ("extra", "more"):
        c, s = rng.choice(COLOURS_AND_SHAPES) if kind == "extra" and rng.random() < 0.5 else (o.colour, o.shape)
        new = _place_one(c, s, None, objs, rng, IMAGE_SIZE / 16, IMAGE_SIZE, 4)
        if new is not None:
            objs.append(new)
    elif kind == "missing" and len(objs) > 1:
        objs.pop(i)
    elif kind == "colour":
        objs[i] = SceneObject(rng.choice([c for c, _ in COLOURS_AND_SHAPES if c != o.colour]), o.shape, o.cx, o.cy,
                              o.size)
    elif kind == "shape":
        objs[i] = SceneObject(o.colour, rng.choice([s for s in ("circle", "square", "triangle") if s != o.shape]),
                              o.cx, o.cy, o.size)
    elif kind == "swap" and len(objs) > 1:
        j = rng.choice([k for k in range(len(objs)) if k != i])
        a, b = objs[i], objs[j]
        objs[i] = SceneObject(a.colour, a.shape, b.cx, b.cy, a.size)
        objs[j] = SceneObject(b.colour, b.shape, a.cx, a.cy, b.size)
    return objs


def across_cut(objs: list[SceneObject], spec: SceneSpec, cut: int, wrong: bool, rng: random.Random
               ) -> list[SceneObject]:
    """One more object whose top the generator has just drawn: it starts above the cut and runs past it (or, a
    quarter of the time, ends just above it). `wrong`: mostly of a colour the prompt does not have (a visible
    contradiction once enough of it shows), else of a kind the prompt has. Where no free place is found the scene
    is returned unchanged. The label is the caller's to compute (`contradictions`)."""
    from ..shapes.scene import GAP_UNITS, SIZE_UNITS, _apart
    unit = IMAGE_SIZE / 16
    keys = [g.key for g in spec.groups]
    if wrong and rng.random() < 0.8:
        colour = rng.choice([c for c in COLOURS if c not in {k[0] for k in keys}])
        shape = rng.choice(SHAPES)
    elif wrong:
        colour, shape = rng.choice([k for k in COLOURS_AND_SHAPES if k not in keys])
    else:
        colour, shape = rng.choice(keys)
    for _ in range(30):
        size = rng.choice(SIZE_UNITS) * unit
        if rng.random() < 0.25:
            top = cut - size - rng.uniform(0, unit)                           # ends just above the cut
        else:
            top = cut - rng.uniform(1.0, 0.8 * size)                          # runs past it
        cx = rng.uniform(size / 2 + 1, IMAGE_SIZE - size / 2 - 1)
        new = SceneObject(colour, shape, cx, top + size / 2, size)
        if top >= 1 and all(_apart(new, o, GAP_UNITS * unit) for o in objs):
            return objs + [new]
    return objs


def describe(objs: list[SceneObject]) -> str:
    """What a scene holds, in the prompt grammar, groups in a fixed order (colour, then shape): the caption the
    understanding path learns to write. Every word of it is a target, where a verdict gives one bit per image."""
    counts = counts_of(objs)
    order = sorted(counts, key=lambda k: (COLOURS.index(k[0]), SHAPES.index(k[1])))
    return format_base(SceneSpec(tuple(Group(counts[k], *k) for k in order)))


def layout_target(objs: list[SceneObject], spec: SceneSpec, cut: float) -> str:
    """The clause a reformulator should append for a partial view (see module docstring)."""
    if all(o.bbox[1] < cut for o in objs):
        return ""
    places: list[Placement] = []
    for g in spec.groups:
        regions = ["top" if o.cy < IMAGE_SIZE / 2 and o.bbox[1] < cut else "bottom"
                   for o in objs if (o.colour, o.shape) == g.key]
        if len(set(regions)) == 1:
            places.append(Placement(g.colour, g.shape, None, regions[0]))
        else:
            places += [Placement(g.colour, g.shape, regions.count(r), r) for r in ("top", "bottom")]
    return format_layout_clause(places)


def _scene(rng: random.Random) -> tuple[SceneSpec, list[SceneObject]]:
    while True:
        spec = sample_spec(rng.choice(CATEGORIES), rng)
        try:
            return spec, sample_scene(spec, rng)
        except SceneError:
            continue


def make_example(rng: random.Random, mix: ExampleMix = FIRST_MIX
                 ) -> tuple[str, np.ndarray, int, list[int], list[int], list[SceneObject], np.ndarray | None]:
    """(task, image uint8 (64, 64, 3), pixel rows shown (64 = all), question word ids, answer word ids, the objects
    drawn, for an edit view the pixels not drawn yet (bool (64, 64)) else None). The caller greys the hidden rows
    or pixels (after an optional VQ round trip)."""
    hidden = None
    if mix.edit_views and rng.random() < mix.edit_views:
        from .edit_views import make_edit_view
        img, hidden, prompt, bad, objs = make_edit_view(rng)
        from ..shapes.grammar import parse_prompt
        task, cut, q = "edit", IMAGE_SIZE, _question("edit", parse_prompt(prompt), "?")
        a = [WORD_ID["impossible" if bad else "possible"]]
    else:
        task, img, cut, q, a, objs = _example(rng, mix)
    if mix.artifacts and rng.random() < mix.artifacts:
        img = imitate_generation(img, rng)
    return task, img, cut, q, a, objs, hidden


def _example(rng: random.Random, mix: ExampleMix) -> tuple[str, np.ndarray, int, list[int], list[int],
                                                             list[SceneObject]]:
    task = rng.choice(TASKS)
    if task == "describe":
        spec, objs = _scene(rng)
        if rng.random() < 0.5:
            changed = perturb(objs, rng)
            objs = changed if max(counts_of(changed).values()) <= max(NUMBER_NAMES) else objs   # a count it can say
        words = describe(objs).replace(",", " ,").split()
        return (task, np.array(render_scene(objs)), IMAGE_SIZE, [WORD_ID["describe"], WORD_ID[":"]],
                [WORD_ID[w] for w in words] + [EOS], objs)
    if task == "score":
        spec, objs = _scene(rng)
        u = rng.random()
        if u < mix.perturbed:
            objs = perturb(objs, rng, mix.errors)
        elif u < mix.perturbed + mix.other_prompt:
            # an easy negative: the scene of another prompt (teaches reading prompt and image)
            spec = _scene(rng)[0]
        answer = "yes" if satisfies(objs, spec) else "no"
        return task, np.array(render_scene(objs)), IMAGE_SIZE, _question(task, spec, "?"), [WORD_ID[answer]], objs
    rows = rng.randint(1, GRID - 1) if rng.random() < mix.any_rows else rng.choice([2, 4])
    cut = IMAGE_SIZE * rows // GRID
    if task == "verify":
        # Most errors lie below a quarter, so visible contradictions are rare among random perturbations; drawing
        # the label first and sampling until it matches keeps the two answers balanced (40% impossible).
        want = rng.random() < 0.4
        for _ in range(50):
            spec, objs = _scene(rng)
            if mix.cut_objects and rng.random() < mix.cut_objects:
                objs = across_cut(objs, spec, cut, want, rng)
            elif want:
                for _ in range(rng.choice([1, 2])):
                    objs = perturb(objs, rng)
            bad = bool(contradictions(seen_in_scene(objs, cut, IMAGE_SIZE), spec, cut, IMAGE_SIZE))
            if bad == want:
                break
        answer = "impossible" if bad else "possible"
        return task, np.array(render_scene(objs)), cut, _question(task, spec, "?"), [WORD_ID[answer]], objs
    spec, objs = _scene(rng)
    words = layout_target(objs, spec, cut).replace(",", " ,").split()[1:]   # the question ends with the comma
    return (task, np.array(render_scene(objs)), cut, _question(task, spec, ","), [WORD_ID[w] for w in words] + [EOS],
            objs)


def blank_code(vq) -> int:
    """The code of an empty canvas patch, by the rule `engine.backend.JanusBackend.blank_token` uses."""
    from ..shapes.scene import BACKGROUND
    from .vq import quantize
    canvas = torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1) / 127.5 - 1
    _, idx, _ = quantize(vq, canvas.expand(1, 3, IMAGE_SIZE, IMAGE_SIZE).contiguous())
    return int(torch.mode(idx.flatten()).values)


def partial_decode(vq, px: torch.Tensor, rows: list[int], blank: int) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> the view the engine shows the verifier of a candidate with only the top `rows[i]`
    token rows drawn: encode, replace the codes below by the engine's rule (`engine.backend.partial_codes`),
    decode. The rows below the cut are the caller's to grey. The first two engine-view runs of the shipped weights
    were trained with the earlier rule (every code below the cut the empty-canvas code, whose decode tints the drawn
    rows next to the cut), the last one with this one."""
    from ..engine.backend import partial_codes
    from .vq import quantize
    _, idx, _ = quantize(vq, px)                                       # (B, 64)
    codes = torch.cat([partial_codes(idx[i:i + 1, :r * GRID], idx.shape[1], GRID, blank) for i, r in enumerate(rows)])
    return vq.decode(codes).clamp(-1, 1)


def edit_decode(vq, px: torch.Tensor, undrawn: list[np.ndarray], blank: int) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> the engine's view of partial edits (`engine.search.Search._partial_edit_previews`):
    encode, replace the codes of the undrawn patches (from `undrawn`, bool (H, W) each) by the engine's rule
    (`engine.backend.partial_edit_codes`), decode. The undrawn pixels are the caller's to grey."""
    from ..engine.backend import partial_edit_codes
    from ..engine.edit import token_mask
    from .vq import quantize
    _, idx, _ = quantize(vq, px)                                                        # (B, 64)
    hidden = torch.from_numpy(np.stack([token_mask(u, GRID, GRID).reshape(-1) for u in undrawn]))   # (B, 64)
    first = hidden.float().argmax(-1) // GRID * GRID                    # the first undrawn row's first position
    codes = torch.cat([partial_edit_codes(idx[i:i + 1], hidden[i:i + 1], int(first[i]), GRID, blank)
                       for i in range(len(undrawn))])
    return vq.decode(codes).clamp(-1, 1)


def patch_labels(objs: list[SceneObject], cut: int, hidden: np.ndarray | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch targets of the auxiliary probe, read from the scene specification: (centre (64,), cover (64,)),
    0 = nothing, 1 + index into COLOURS_AND_SHAPES otherwise. `centre` marks the patch holding an object's centre
    (what counting needs: one mark per object, whatever its size); `cover` the object drawn at the patch's centre
    pixel (the last drawn wins, as in the render). Rows from `cut` down are grey, so they hold nothing; so are the
    pixels of `hidden` (bool (H, W), an edit view's undrawn patches)."""
    centre, cover = torch.zeros(GRID * GRID, dtype=torch.long), torch.zeros(GRID * GRID, dtype=torch.long)
    for o in objs:
        r, c = min(int(o.cy // PATCH), GRID - 1), min(int(o.cx // PATCH), GRID - 1)
        if o.cy < cut and (hidden is None or not hidden[int(o.cy), int(o.cx)]):
            centre[r * GRID + c] = TAG[o.colour, o.shape]
    for r in range(GRID):
        for c in range(GRID):
            y, x = r * PATCH + PATCH / 2, c * PATCH + PATCH / 2
            if y >= cut or (hidden is not None and hidden[int(y), int(x)]):
                continue
            for o in objs:
                if o.covers(x, y):
                    cover[r * GRID + c] = TAG[o.colour, o.shape]
    return centre, cover


def _question(task: str, spec: SceneSpec, end: str) -> list[int]:
    return [WORD_ID[w] for w in f"{task} : {format_prompt(spec)}".replace(",", " ,").split()] + [WORD_ID[end]]


def understanding_loss(model, rows: list[tuple[list[int], list[int]]], images: torch.Tensor,
                       visible_rows: list[int] | None = None, probe: torch.nn.Module | None = None,
                       patch_targets: tuple[torch.Tensor, torch.Tensor] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cross-entropy on answer tokens of [BOS, BOI, IMAGE*(8*visible rows), EOI, question, answer], and, with a
    probe, the auxiliary patch-tagging loss on the image features (None without)."""
    vis = visible_rows or [GRID] * len(rows)
    seqs = [[BOS, BOI] + [IMAGE] * GRID * v + [EOI] + q + a for (q, a), v in zip(rows, vis)]
    ids, mask = left_pad(seqs, PAD)
    width = ids.shape[1]
    target = torch.full_like(ids, -100)
    for i, (_, a) in enumerate(rows):
        target[i, width - len(a) - 1:width - 1] = torch.tensor(a)    # position t predicts token t+1
    embeds = model.get_input_embeddings()(ids)
    feats = model.model.get_image_features(images, return_dict=True).pooler_output       # (B, 64, H)
    shown = torch.arange(GRID * GRID).unsqueeze(0) < torch.tensor(vis).unsqueeze(1) * GRID   # (B, 64) top rows
    aux = None
    if probe is not None:
        centre, cover = patch_targets                                    # (B, 64) each
        logits = probe(feats[shown]).float().view(-1, 2, len(TAG) + 1)             # (N, 2, 19)
        aux = F.cross_entropy(logits[:, 0], centre[shown]) + F.cross_entropy(logits[:, 1], cover[shown])
    embeds = embeds.masked_scatter((ids == IMAGE).unsqueeze(-1), feats[shown])
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    h = model.model.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos).last_hidden_state
    sel = target != -100
    # Each example weighs the same, however many answer tokens it has: a layout clause has ~10 tokens, a verdict
    # one, and a per-token mean let the clauses drown the verdicts (the first run learned only the priors of
    # yes / possible).
    tok_loss = F.cross_entropy(model.lm_head(h[sel]).float(), target[sel], reduction="none")
    row = sel.nonzero()[:, 0]
    per_row = torch.zeros(len(rows)).index_add_(0, row, tok_loss) / sel.sum(-1).clamp_min(1)
    return per_row.mean(), aux


def patch_probe(hidden: int) -> torch.nn.Module:
    """The auxiliary head that tags each image feature with the object centred in / covering its patch. It exists
    only during training (it is not part of the shipped model): without it the yes/no answers are the only signal
    the vision encoder gets, and in four attempts (up to 1,500 steps) the encoder never left the answers' prior.
    Tagging gives every patch a target, so the features learn colour, shape and where objects are first, and the
    language model then only has to learn to compare them with the prompt."""
    return torch.nn.Linear(hidden, 2 * (len(TAG) + 1))


def example_pixels(vq, ex: list, mix: ExampleMix, blank: int, vq_roundtrip: float = 0.5) -> torch.Tensor:
    """Examples (`make_example`) -> their images (B, 3, H, W) in [-1, 1] as the roles are shown them: a share
    `vq_roundtrip` through the VQ (generated images are VQ decodes), partial views and edit views as the engine
    decodes them (by the mix), the hidden rows and undrawn edit patches grey."""
    from .vq import quantize
    batch = len(ex)
    px = torch.from_numpy(np.stack([e[1] for e in ex])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        sel = torch.rand(batch) < vq_roundtrip
        if mix.partial_decode:    # partial views as the engine makes them (see `partial_decode`)
            part = (torch.rand(batch) < mix.partial_decode) & torch.tensor([e[2] < IMAGE_SIZE for e in ex])
            if part.any():
                px[part] = partial_decode(vq, px[part], [e[2] * GRID // IMAGE_SIZE for e, p in zip(ex, part) if p],
                                          blank)
            sel &= ~part
        edit = torch.tensor([e[6] is not None for e in ex])
        if edit.any():           # edit views as the engine shows a partial edit
            px[edit] = edit_decode(vq, px[edit], [e[6] for e in ex if e[6] is not None], blank)
            sel &= ~edit
        if sel.any():            # generated images are VQ decodes: learn on such images too
            zq, _, _ = quantize(vq, px[sel])
            px[sel] = vq.decoder(vq.post_quant_conv(zq)).clamp(-1, 1)
        for i, e in enumerate(ex):
            px[i, :, e[2]:] = HIDDEN_FILL / 127.5 - 1
            if e[6] is not None:          # an edit view: its undrawn patches
                px[i, :, torch.from_numpy(e[6])] = HIDDEN_FILL / 127.5 - 1
    return px


def train_understanding(model, gen_data: dict, work: str | Path, steps: int = 2500, batch: int = 48,
                        lr: float = 1e-3, seed: int = 0, vq_roundtrip: float = 0.5, ckpt_every: int = 200,
                        shared_lr: float = 0.6, warmup: int = 200, mix: ExampleMix = FIRST_MIX,
                        replay: int = 24, replay_three_groups: float = 0.0, gen_weight: float = 0.5) -> None:
    """Train the understanding path in place (resumable through work/und_ckpt.pt). Per step: `batch` examples of
    the tasks, `replay` generation rows (a share `replay_three_groups` of them with three-group prompts, the form
    the generator gets wrong most; their loss weighted `gen_weight`), a linear warm-up over `warmup` steps, then a
    cosine to 5%."""
    work = Path(work)
    ckpt = work / "und_ckpt.pt"
    m = model.model
    probe = patch_probe(model.config.text_config.hidden_size)    # the aligner projects into the LM width
    heads = list(m.vision_model.parameters()) + list(m.aligner.parameters()) + list(probe.parameters())
    shared = list(m.language_model.parameters()) + list(m.generation_head.parameters()) + list(
        m.generation_aligner.parameters()) + list(m.generation_embeddings.parameters())
    opt = torch.optim.AdamW([{"params": heads, "lr": lr}, {"params": shared, "lr": lr * shared_lr}],
                            betas=(0.9, 0.95), weight_decay=0.01)
    rng, step = random.Random(seed + 17), 0
    favour = three_group_rows(gen_data) if replay_three_groups else None
    blank = blank_code(m.vqmodel) if mix.partial_decode or mix.edit_views else 0
    if ckpt.exists():
        ck = torch.load(ckpt, weights_only=True)
        model.load_state_dict(ck["model"])
        probe.load_state_dict(ck["probe"])
        opt.load_state_dict(ck["opt"])
        step, _ = ck["step"], rng.setstate(ck["rng"])
        log.info("resumed understanding training at step %d", step)
    model.train()
    m.vqmodel.eval()
    t0 = time.time()
    while step < steps:
        scale = min(1.0, (step + 1) / max(warmup, 1)) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for g, base in zip(opt.param_groups, (lr, lr * shared_lr)):
            g["lr"] = base * scale
        ex = [make_example(rng, mix) for _ in range(batch)]
        px = example_pixels(m.vqmodel, ex, mix, blank, vq_roundtrip)
        labels = [patch_labels(e[5], e[2], e[6]) for e in ex]
        targets = (torch.stack([c for c, _ in labels]), torch.stack([v for _, v in labels]))
        loss_u, loss_p = understanding_loss(model, [(e[3], e[4]) for e in ex], px,
                                            [e[2] * GRID // IMAGE_SIZE for e in ex], probe, targets)
        ids, mask, tokens = make_batch(gen_data, rng, replay, favour, replay_three_groups)
        loss_g = generation_loss(model, ids, mask, tokens)
        loss = loss_u + 0.5 * loss_p + gen_weight * loss_g
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            log.info("und step %d loss %.4f (probe %.4f, gen %.4f) %.1fs/step", step, loss_u.item(), loss_p.item(),
                     loss_g.item(), (time.time() - t0) / 25)
            t0 = time.time()
        if step % ckpt_every == 0 or step == steps:
            torch_save_atomic({"model": model.state_dict(), "probe": probe.state_dict(), "opt": opt.state_dict(),
                               "step": step, "rng": rng.getstate()}, ckpt)
