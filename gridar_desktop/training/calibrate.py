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
- threshold: the P(possible) below which `REJECT_FEASIBLE` (5%) of the feasible views fall. The acceptance budget
  for false rejections on generated candidates is 10%; clean renders are easier to read than generated images, so
  half of it is spent here.

The scenes come from their own random stream (`CALIBRATION_SEED`), not the training stream. The result is stored in
the model folder's gridar.json under "verify_threshold" and `JanusRoles` reads it.

    python -m gridar_desktop.training.calibrate MODEL_FOLDER [--views 800] [--write]
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
REJECT_FEASIBLE = 0.05
VERIFY_ROWS = (2, 4)                 # the default schedule verifies after 1/4 and 1/2 of 8 token rows


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


def engine_p_possible(backend, roles, views: list[CalibrationView], batch: int = 64) -> np.ndarray:
    """P(possible) of each view, shown as the engine shows a partial candidate."""
    from ..engine.cost import CostRecord
    from ..engine.roles import PartialView
    cols, total = backend.info.cols, backend.info.rows
    out = np.zeros(len(views))
    for s in range(0, len(views), batch):
        chunk = views[s:s + batch]
        codes = backend.encode_images(np.stack([v.image for v in chunk]))          # (b, rows*cols)
        shown: list[PartialView | None] = [None] * len(chunk)
        for r in {v.rows for v in chunk}:                  # one decode per cut: views of a cut share a length
            idx = [i for i, v in enumerate(chunk) if v.rows == r]
            for i, img in zip(idx, backend.decode_tokens(codes[idx, :r * cols])):
                shown[i] = PartialView(img, r, total)
        out[s:s + len(chunk)] = roles.verify([v.prompt for v in chunk], shown, CostRecord())
    return out


def threshold_for(p_feasible: np.ndarray, reject: float = REJECT_FEASIBLE) -> float:
    """The P(possible) below which a share `reject` of the feasible views fall (rejection is P < threshold)."""
    p = np.sort(np.asarray(p_feasible, dtype=np.float64))
    if not len(p):
        raise ValueError("no feasible view to calibrate on: draw more views")
    k = int(np.floor(reject * len(p)))
    return float(p[min(k, len(p) - 1)])


def calibrate(folder: str | Path, views: int = 800, seed: int = 0, reject: float = REJECT_FEASIBLE) -> dict:
    """Measure the verifier of the model in `folder` on held-out views and return the threshold record."""
    from ..engine.backend import JanusBackend
    from ..engine.janus_roles import JanusRoles
    backend = JanusBackend.load(folder, device="cpu", dtype="float32")
    if backend.info.prompt_format != "plain" or backend.info.image_size != IMAGE_SIZE:
        raise ValueError(f"'{folder}' is not a shapes-world model (plain prompts, {IMAGE_SIZE} px): its verifier "
                         "cannot be calibrated on shapes-world views; pass a threshold with the request instead")
    roles = JanusRoles(backend)
    vs = calibration_views(views, seed)
    p = engine_p_possible(backend, roles, vs)
    feas = np.array([v.feasible for v in vs])
    t = threshold_for(p[feas], reject)
    per_rows = {}
    for r in VERIFY_ROWS:
        at = np.array([v.rows == r for v in vs])
        per_rows[str(r)] = {"feasible": int((at & feas).sum()), "impossible": int((at & ~feas).sum()),
                            "false_reject": round(float((p[at & feas] < t).mean()), 3) if (at & feas).any() else None,
                            "true_reject": round(float((p[at & ~feas] < t).mean()), 3) if (at & ~feas).any() else None}
    return {"value": round(t, 4), "rule": f"P(possible) below which {reject:.0%} of feasible held-out views fall",
            "views": views, "seed": seed, "calibration_seed": CALIBRATION_SEED, "held_out": per_rows}


def write_threshold(folder: str | Path, record: dict) -> None:
    """Store the record in the folder's gridar.json (atomically: the folder is the shipped model)."""
    from ..io.atomic import atomic_write_text
    path = Path(folder) / "gridar.json"
    meta = json.loads(path.read_text()) if path.exists() else {}
    meta["verify_threshold"] = record
    atomic_write_text(path, json.dumps(meta, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="a Janus model folder with a plain-format (demo) understanding path")
    ap.add_argument("--views", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reject", type=float, default=REJECT_FEASIBLE, help="share of feasible views rejected")
    ap.add_argument("--write", action="store_true", help="store the threshold in the folder's gridar.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    rec = calibrate(args.model, args.views, args.seed, args.reject)
    if args.write:
        write_threshold(args.model, rec)
    json.dump(rec, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
