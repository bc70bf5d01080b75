"""Choose a verifier's pruning threshold from held-out training-distribution views, never from a benchmark.

GridAR rejects a partial candidate when P(possible) < a threshold. Where that threshold should sit depends on how the
verifier was trained (its share of impossible examples, the views it learned on), so a fixed number cannot serve
every set of weights: the demo model's fine-tuning on engine-made partial views moved its P(possible) upwards for
every view. The rule here:

- views: scenes from the scene sampler, half of them with one or two generation-like errors (`understand.perturb`),
  half of the images blurred, specked and noised (`understand.imitate_generation`), cut at the generation schedule's
  verification rows (2 and 4 of 8), and shown exactly as the engine shows a partial candidate: VQ-encoded, the
  codes above the cut decoded by the engine's partial rule (`JanusBackend.decode_tokens`, `partial_codes`), through
  the engine's own roles (`JanusRoles.verify`);
- labels: from the scene specification (`shapes.partial.contradictions` over `seen_in_scene`, as in training), never
  from the judge;
- threshold: the P(possible) below which `REJECT_FEASIBLE` (10%) of the feasible views fall, once per verification
  row of the default schedule (`by_rows`: each band's pruning is a decision of its own, and the issue's budget for
  false rejections, 10%, is per band) and once pooled over them (`value`: for bands at other rows). An earlier rule
  spent half the budget (5%, pooled), on the premise that clean renders are easier to read than generated
  candidates; measured, feasible generated candidates were rejected about as often as or less often than feasible
  held-out views at the same threshold (`benchmarks/verifier_quality.py`: 0.030 / 0.036 against 0.067 / 0.030 at 2
  / 4 rows for the weights calibrated at 0.124), and the pooled threshold spent the budget unevenly between the
  bands.

The scenes come from their own random stream (`CALIBRATION_SEED`), not the training stream. The result is stored in
the model folder's gridar.json under "verify_threshold" and `JanusRoles` reads it.

Weights trained on the edit question (gridar.json "edit_verify") get a second threshold by the same rule on partial
edits ("verify_threshold_edit"): views from `training.edit_views` (their own stream, `CALIBRATION_SEED + 1`), half of
the images blurred, specked and noised, shown as the engine shows a partial edit (encoded, the undrawn redrawn
codes replaced by the engine's rule, decoded, undrawn patches painted as the canvas) through `JanusRoles.verify`.

Any Janus-format folder (Janus-Pro, an imported one, the demo) given a prompt set (`calibrate_prompts`): there is
no scene specification of its images to label partial views with, so the labels come from how each view ENDS:

- the model draws `--samples` images per prompt of the set (JSONL as `gridar prompts` writes it, one
  {"prompt": ...} per line) with its own defaults (guidance, temperature; `engine.models.model_defaults`);
- each image is cut at the default schedule's verification rows (a quarter and a half of its token rows: 6 and 12
  of Janus-Pro's 24) and shown to the verifier exactly as the engine shows a partial candidate (codes above the cut,
  `decode_tokens`, through `JanusRoles.verify`);
- a view is feasible when its FINISHED image is accepted: by the shapes judge (strict) when every prompt is a
  shapes-world prompt and the model draws shapes-world images, else by the model's own scorer (it answers yes
  rather than no, `JanusRoles.score_answers`). A view whose image ends accepted could not have been ruled out;
  rejecting it is a false rejection, the error the threshold bounds;
- the threshold is the same rule: the P(possible) below which `REJECT_FEASIBLE` (10%) of the feasible views fall,
  per verification row where a row has `MIN_FEASIBLE_PER_ROW` feasible views, and pooled. The record also says how
  often views of images that ended NOT accepted are rejected at it (what the pruning buys), and names the weights
  (`janus_roles.weights_fingerprint`): `JanusRoles` uses it only for those weights.

It is the model judging its own partial views against its own verdict on the finished ones: sound as a bound on
how often pruning throws away what the scorer would have picked, not a measure of the images' quality. The prompt
set should be like the prompts the model will be used with; a few hundred views make the 10% quantile stable
(tens of prompts x 4 samples x 2 rows).

    python -m gridar_desktop.training.calibrate MODEL_FOLDER [--views 800] [--write]
    python -m gridar_desktop.training.calibrate MODEL_FOLDER --prompts PROMPTS.jsonl [--samples 4] [--write]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..shapes.grammar import format_prompt
from ..shapes.partial import contradictions, seen_in_scene
from ..shapes.scene import IMAGE_SIZE, render_scene

CALIBRATION_SEED = 90_001           # a stream of its own: training draws from Random(seed + 17)
REJECT_FEASIBLE = 0.10
VERIFY_ROWS = (2, 4)                 # the default schedule verifies after 1/4 and 1/2 of 8 token rows
MIN_FEASIBLE_PER_ROW = 100           # fewer feasible views than this at a row: that row uses the pooled threshold


@dataclass(frozen=True)
class CalibrationView:
    prompt: str
    image: np.ndarray                # uint8 (64, 64, 3): the finished render (the engine view is made later)
    rows: int                        # token rows drawn
    feasible: bool                   # no visible contradiction, by the scene specification


def calibration_views(n: int, seed: int = 0) -> list[CalibrationView]:
    """n held-out views (prompt, render, rows drawn, label), reproducible from `seed`."""
    from .demo_config import GRID
    from .understand import _scene, imitate_generation, perturb
    rng = random.Random(CALIBRATION_SEED + seed)
    out = []
    for _ in range(n):
        spec, objs = _scene(rng)
        if rng.random() < 0.5:
            for _ in range(rng.choice([1, 2])):
                objs = perturb(objs, rng)
        rows = rng.choice(VERIFY_ROWS)
        cut = IMAGE_SIZE * rows // GRID
        img = np.array(render_scene(objs))
        if rng.random() < 0.5:
            img = imitate_generation(img, rng)
        feasible = not contradictions(seen_in_scene(objs, cut, IMAGE_SIZE), spec, cut, IMAGE_SIZE)
        out.append(CalibrationView(format_prompt(spec), img, rows, feasible))
    return out


@dataclass(frozen=True)
class EditCalibrationView:
    prompt: str
    image: np.ndarray                # uint8 (64, 64, 3): the finished candidate (the engine view is made later)
    undrawn: np.ndarray              # bool (64, 64): redrawn pixels not drawn yet
    feasible: bool


def edit_calibration_views(n: int, seed: int = 0) -> list[EditCalibrationView]:
    """n held-out partial edits (target prompt, candidate, undrawn pixels, label), reproducible from `seed`."""
    from .edit_views import make_edit_view
    from .understand import imitate_generation
    rng = random.Random(CALIBRATION_SEED + 1 + seed)
    out = []
    for _ in range(n):
        img, undrawn, prompt, bad, _ = make_edit_view(rng)
        if rng.random() < 0.5:
            img = imitate_generation(img, rng)
        out.append(EditCalibrationView(prompt, img, undrawn, not bad))
    return out


def _verify_chunks(backend, roles, views: list, show, batch: int) -> np.ndarray:
    """P(possible) of each view through the engine's verify call, `batch` views a call: each chunk's images are
    VQ-encoded and `show(chunk, codes)` turns them into the `PartialView`s the engine would show."""
    from ..engine.cost import CostRecord
    out = np.zeros(len(views))
    for s in range(0, len(views), batch):
        chunk = views[s:s + batch]
        codes = backend.encode_images(np.stack([v.image for v in chunk])).to(backend.device)   # (b, rows*cols)
        out[s:s + len(chunk)] = roles.verify([v.prompt for v in chunk], show(chunk, codes), CostRecord())
    return out


def engine_edit_p_possible(backend, roles, views: list[EditCalibrationView], batch: int = 64) -> np.ndarray:
    """P(possible) of each partial edit, shown as `engine.search.Search` shows one (`_partial_edit_previews`)."""
    import torch

    from ..engine.edit import token_mask
    from ..engine.roles import PartialView
    rows, cols = backend.info.rows, backend.info.cols

    def show(chunk, codes):
        hidden = torch.from_numpy(np.stack([token_mask(v.undrawn, rows, cols).reshape(-1) for v in chunk]))
        drawn = [int(h.float().argmax()) // cols for h in hidden]               # each view's first undrawn row
        images = np.zeros((len(chunk), backend.info.image_size, backend.info.image_size, 3), np.uint8)
        for r in set(drawn):                                                    # one decode per cut
            at = [i for i, d in enumerate(drawn) if d == r]
            images[at] = backend.decode_partial_edit(codes[at], hidden[at], r * cols)
        return [PartialView(im, r, rows, v.undrawn) for im, r, v in zip(images, drawn, chunk)]
    return _verify_chunks(backend, roles, views, show, batch)


def engine_p_possible(backend, roles, views: list[CalibrationView], batch: int = 64) -> np.ndarray:
    """P(possible) of each view, shown as the engine shows a partial candidate."""
    from ..engine.roles import PartialView
    cols, total = backend.info.cols, backend.info.rows

    def show(chunk, codes):
        shown: list[PartialView | None] = [None] * len(chunk)
        for r in {v.rows for v in chunk}:                  # one decode per cut: views of a cut share a length
            idx = [i for i, v in enumerate(chunk) if v.rows == r]
            for i, img in zip(idx, backend.decode_tokens(codes[idx, :r * cols])):
                shown[i] = PartialView(img, r, total)
        return shown
    return _verify_chunks(backend, roles, views, show, batch)


def threshold_for(p_feasible: np.ndarray, reject: float = REJECT_FEASIBLE) -> float:
    """The P(possible) below which a share `reject` of the feasible views fall (rejection is P < threshold)."""
    p = np.sort(np.asarray(p_feasible, dtype=np.float64))
    if not len(p):
        raise ValueError("no feasible view to calibrate on: draw more views")
    k = int(np.floor(reject * len(p)))
    return float(p[min(k, len(p) - 1)])


def calibrate(folder: str | Path, views: int = 1600, seed: int = 0, reject: float = REJECT_FEASIBLE) -> dict:
    """Measure the verifier of the model in `folder` on held-out views and return the threshold record."""
    from ..engine.backend import JanusBackend
    from ..engine.janus_roles import JanusRoles, weights_fingerprint
    backend = JanusBackend.load(folder, device="cpu", dtype="float32")
    if backend.info.prompt_format != "plain" or backend.info.image_size != IMAGE_SIZE:
        raise ValueError(f"'{folder}' is not a shapes-world model (plain prompts, {IMAGE_SIZE} px): its verifier "
                         "cannot be calibrated on shapes-world views; calibrate it on a prompt set instead "
                         "(--prompts FILE, one {\"prompt\": ...} per line, e.g. from gridar prompts)")
    roles = JanusRoles(backend)
    vs = calibration_views(views, seed)
    p = engine_p_possible(backend, roles, vs)
    feas = np.array([v.feasible for v in vs])
    t = threshold_for(p[feas], reject)
    per_rows, by_rows = {}, {}
    for r in VERIFY_ROWS:
        at = np.array([v.rows == r for v in vs])
        if (at & feas).sum() >= MIN_FEASIBLE_PER_ROW:
            by_rows[str(r)] = round(threshold_for(p[at & feas], reject), 4)
        tr = by_rows.get(str(r), t)
        per_rows[str(r)] = {"feasible": int((at & feas).sum()), "impossible": int((at & ~feas).sum()),
                            "false_reject": round(float((p[at & feas] < tr).mean()), 3) if (at & feas).any() else None,
                            "true_reject": round(float((p[at & ~feas] < tr).mean()), 3) if (at & ~feas).any() else None,
                            "false_reject_pooled": round(float((p[at & feas] < t).mean()), 3) if (at & feas).any()
                            else None}
    return {"value": round(t, 4), "by_rows": by_rows,
            "rule": f"P(possible) below which {reject:.0%} of feasible held-out views fall, per verification row "
                    "(by_rows) and pooled over them (value, for other rows)",
            "views": views, "seed": seed, "calibration_seed": CALIBRATION_SEED, "held_out": per_rows,
            **_weights(folder, weights_fingerprint)}


def _weights(folder, fingerprint) -> dict:
    fp = fingerprint(folder)
    return {"weights": fp} if fp else {}


def verify_rows(rows: int) -> list[int]:
    """The token rows after which the default schedule verifies, for an image of `rows` token rows."""
    from ..engine.search import DEFAULT_SCHEDULE
    return sorted({max(1, round(st.until * rows)) for st in DEFAULT_SCHEDULE if st.verify and st.until < 1.0})


def _shapes_judge(backend, prompts: list[str]):
    """The shapes judge as a labeller when every prompt is a shapes-world prompt and the model draws shapes-world
    images (the demo's size); else None."""
    from ..shapes.grammar import PromptError, parse_prompt
    if backend.info.image_size != IMAGE_SIZE:
        return None
    try:
        specs = [parse_prompt(p) for p in prompts]
    except PromptError:
        return None
    from ..shapes.judge import judge
    return lambda images, at: [bool(judge(im, specs[i]).strict) for im, i in zip(images, at)]


def calibrate_prompts(folder: str | Path, prompts_file: str | Path, samples: int = 4, seed: int = 0,
                      reject: float = REJECT_FEASIBLE, device: str = "cpu", dtype: str = "float32",
                      batch: int = 8) -> dict:
    """The threshold record of any Janus-format folder from the model's own images of a prompt set (module
    docstring): `samples` images per prompt, `batch` images generated at a time."""
    import torch

    from ..bench import read_bench_prompts
    from ..engine.backend import JanusBackend
    from ..engine.cost import CostRecord
    from ..engine.janus_roles import JanusRoles, weights_fingerprint
    from ..engine.roles import PartialView
    from ..engine.sampling import SamplingParams
    from ..engine.single import generate_batch
    if samples < 1:
        raise ValueError(f"--samples must be at least 1, got {samples}")
    read_bench_prompts(prompts_file)                        # a bad file is refused before the weights load
    backend = JanusBackend.load(folder, device=device, dtype=dtype)
    prompts = [r["prompt"] for r in read_bench_prompts(prompts_file, backend.check_prompt)]
    if not prompts:
        raise ValueError(f"{prompts_file} holds no prompt; give one {{\"prompt\": ...}} per line")
    roles = JanusRoles(backend)
    d = backend.defaults
    params = SamplingParams(cfg=float(d["guidance"]), temperature=float(d["temperature"]),
                            top_k=int(d.get("top_k", 0)), top_p=float(d.get("top_p", 1.0)))
    rows, cols = backend.info.rows, backend.info.cols
    cuts = verify_rows(rows)
    judge = _shapes_judge(backend, prompts)
    per = max(1, batch // samples)                          # prompts per generated batch
    p = {r: [] for r in cuts}
    accepted: list[bool] = []
    for s in range(0, len(prompts), per):
        chunk = prompts[s:s + per]
        at = [s + i for i in range(len(chunk)) for _ in range(samples)]       # prompt index of each image
        asked = [prompts[i] for i in at]
        g = generate_batch(backend, chunk, samples, params, seed + s)
        if judge is not None:
            accepted += judge(g.images, at)
        else:
            accepted += [yes > no for yes, no in roles.score_answers(asked, list(g.images), CostRecord())]
        tokens = g.tokens.to(backend.device)
        for r in cuts:
            views = [PartialView(im, r, rows) for im in backend.decode_tokens(tokens[:, :r * cols])]
            p[r] += [float(x) for x in roles.verify(asked, views, CostRecord())]
            roles.release()
        if backend.device.type == "cuda":
            torch.cuda.empty_cache()
    ok = np.array(accepted)
    by = "the shapes judge" if judge is not None else "its own scorer"
    if not ok.any():
        raise ValueError(f"none of the {len(ok)} images the model drew for the {len(prompts)} prompts was accepted "
                         f"by {by}, so no partial view is known to be feasible: use more prompts or --samples, or "
                         "prompts the model draws well")
    pooled = np.concatenate([np.array(p[r])[ok] for r in cuts])
    t = threshold_for(pooled, reject)
    by_rows, held = {}, {}
    for r in cuts:
        pr = np.array(p[r])
        if ok.sum() >= MIN_FEASIBLE_PER_ROW:
            by_rows[str(r)] = round(threshold_for(pr[ok], reject), 4)
        tr = by_rows.get(str(r), t)
        held[str(r)] = {"accepted": int(ok.sum()), "not_accepted": int((~ok).sum()),
                        "false_reject": round(float((pr[ok] < tr).mean()), 3),
                        "reject_not_accepted": round(float((pr[~ok] < tr).mean()), 3) if (~ok).any() else None}
    import hashlib
    return {"value": round(t, 4), "by_rows": by_rows,
            "rule": f"P(possible) below which {reject:.0%} of partial views of the model's own images that "
                    f"{by} accepted when finished fall, per verification row (by_rows) and pooled (value)",
            "method": "own images", "accepted_by": "shapes judge" if judge is not None else "scorer",
            "prompts": len(prompts), "prompts_file": Path(prompts_file).name,
            "prompts_sha256": hashlib.sha256(Path(prompts_file).read_bytes()).hexdigest(),
            "samples": samples, "seed": seed, "batch": batch, "guidance": params.cfg,
            "temperature": params.temperature, "rows": cuts, "held_out": held,
            **_weights(folder, weights_fingerprint)}


def calibrate_edit(folder: str | Path, views: int = 1600, seed: int = 0, reject: float = REJECT_FEASIBLE) -> dict:
    """The threshold record for partial edits (module docstring) of a model trained on the edit question."""
    from ..engine.backend import JanusBackend
    from ..engine.janus_roles import JanusRoles
    backend = JanusBackend.load(folder, device="cpu", dtype="float32")
    roles = JanusRoles(backend)
    if not roles.edit_verify:
        raise ValueError(f"'{folder}' was not trained on the edit question (no \"edit_verify\" in its gridar.json): "
                         "its partial edits are verified with the generation question and threshold")
    vs = edit_calibration_views(views, seed)
    p = engine_edit_p_possible(backend, roles, vs)
    feas = np.array([v.feasible for v in vs])
    t = threshold_for(p[feas], reject)
    return {"value": round(t, 4), "rule": f"P(possible) below which {reject:.0%} of feasible held-out edit views fall",
            "views": views, "seed": seed, "calibration_seed": CALIBRATION_SEED + 1,
            "held_out": {"feasible": int(feas.sum()), "impossible": int((~feas).sum()),
                         "true_reject": round(float((p[~feas] < t).mean()), 3) if (~feas).any() else None}}


def write_threshold(folder: str | Path, record: dict, key: str = "verify_threshold") -> None:
    """Store the record in the folder's gridar.json, every other field kept (atomically: the folder is the shipped
    model). A gridar.json that is not a valid one is refused rather than overwritten."""
    from ..engine.models import read_model_meta
    from ..io.atomic import atomic_write_text
    path = Path(folder) / "gridar.json"
    meta = dict(read_model_meta(folder))
    meta[key] = record
    atomic_write_text(path, json.dumps(meta, indent=1, ensure_ascii=False))


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("model", help="a Janus model folder (with --prompts any Janus format; without it the demo's "
                                  "shapes-world format)")
    ap.add_argument("--prompts", help="JSONL, one {\"prompt\": ...} per line (gridar prompts writes one): "
                                      "calibrate on the model's own images of these prompts")
    ap.add_argument("--samples", type=int, default=4, help="images per prompt with --prompts (default 4)")
    ap.add_argument("--views", type=int, default=1600, help="held-out shapes-world views without --prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reject", type=float, default=REJECT_FEASIBLE, help="share of feasible views rejected")
    ap.add_argument("--write", action="store_true", help="store the threshold in the folder's gridar.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="with --prompts: auto, cpu, cuda, ... (default cpu)")
    ap.add_argument("--dtype", default="float32", help="with --prompts: auto, float32, bfloat16, float16")
    args = ap.parse_args(argv)
    if not 0 < args.reject < 1:
        ap.error(f"--reject must be between 0 and 1, got {args.reject}")
    import torch

    from ..engine.errors import ModelLoadError
    torch.set_num_threads(args.threads)
    try:
        if args.prompts:
            rec = calibrate_prompts(args.model, args.prompts, args.samples, args.seed, args.reject, args.device,
                                    args.dtype)
            if args.write:
                write_threshold(args.model, rec)
        else:
            rec = calibrate(args.model, args.views, args.seed, args.reject)
            if args.write:
                write_threshold(args.model, rec)
            if (json.loads((Path(args.model) / "gridar.json").read_text()) or {}).get("edit_verify"):
                rec = {"verify_threshold": rec,
                       "verify_threshold_edit": calibrate_edit(args.model, args.views, args.seed, args.reject)}
                if args.write:
                    write_threshold(args.model, rec["verify_threshold_edit"], "verify_threshold_edit")
    except (ValueError, ModelLoadError, OSError) as e:
        print(f"{prog or 'calibrate'}: {str(e).splitlines()[0] if str(e) else e.__class__.__name__}", file=sys.stderr)
        return 2
    json.dump(rec, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
