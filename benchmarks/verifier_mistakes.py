"""The verifier's false rejections, to look at, and what its verdicts say about the outcome (prints one JSON object).

    .venv/bin/python benchmarks/verifier_mistakes.py [--rows 2] [--prompts 150] [--model demo] [--sheet build/fr.png]

Same candidates as `verifier_quality.py` (its `candidate_sets`: prompt set 4242, seeds 7 + i, 4 per prompt,
guidance 2). For the top
`rows` of 8 token rows it lists every candidate the verifier rejects (P(possible) < the pruning threshold) that the
judge's partial mode calls feasible, with what the judge's detector reads in the visible band, and writes a contact
sheet: per case the partial view (black line: the cut) beside the finished image. It also reports the share of
rejected and of accepted candidates whose finished image is strict-correct: how much a verdict at this band says
about the outcome. The judge measures here; nothing it says reaches the roles.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gridar_desktop.engine.backend import JanusBackend
from gridar_desktop.engine.cost import CostRecord
from gridar_desktop.engine.janus_roles import JanusRoles
from gridar_desktop.engine.models import resolve_model
from gridar_desktop.engine.roles import PartialView
from gridar_desktop.engine.search import pruning_threshold
from gridar_desktop.io.atomic import atomic_open
from gridar_desktop.shapes.judge import detect_objects, judge
from gridar_desktop.shapes.partial import judge_partial
from gridar_desktop.shapes.scene import BACKGROUND

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verifier_quality import candidate_sets  # noqa: E402


def contact_sheet(pairs: list[tuple[np.ndarray, np.ndarray]], cut: int, per_row: int = 4,
                  scale: int = 3) -> Image.Image:
    """(partial view, finished image) pairs of uint8 (H, W, 3), side by side, `per_row` pairs a row."""
    tiles = []
    for view, full in pairs:
        t = np.concatenate([view, full], 1)
        t[cut, :view.shape[1]] = 0                            # the cut, on the partial view
        tiles.append(t)
    blank = np.zeros_like(tiles[0])
    rows = [np.concatenate(tiles[r:r + per_row] + [blank] * (per_row - len(tiles[r:r + per_row])), 1)
            for r in range(0, len(tiles), per_row)]
    sheet = np.concatenate(rows, 0)
    return Image.fromarray(sheet).resize((sheet.shape[1] * scale, sheet.shape[0] * scale), Image.NEAREST)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=150)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--cfg", type=float, default=2.0)
    ap.add_argument("--sheet", default="build/verifier_mistakes.png")
    ap.add_argument("--max-cases", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    backend = JanusBackend.load(resolve_model(args.model), device="cpu", dtype="float32")
    roles, cost = JanusRoles(backend), CostRecord()
    threshold = pruning_threshold(roles, rows=args.rows)
    total, k = backend.info.rows, args.rows
    cut = backend.info.image_size * k // total
    cases, outcome = [], {"rejected": [], "accepted": []}
    for p, gen in candidate_sets(backend, args.prompts, 4, args.cfg, 7):
        part = backend.decode_tokens(gen.tokens[:, :k * backend.info.cols])
        probs = roles.verify(p, [PartialView(im, k, total) for im in part], cost)
        for view, full, pr in zip(part, gen.images, probs):
            rejected = pr < threshold
            outcome["rejected" if rejected else "accepted"].append(judge(full, p).strict)
            if rejected and not judge_partial(view, p, k, total):
                band = np.array(view)
                band[cut:] = BACKGROUND
                cases.append({"prompt": p, "p_possible": round(pr, 4), "final_strict": judge(full, p).strict,
                              "judge_reads": [f"{o.colour} {o.shape} {[round(v) for v in o.bbox]}"
                                              for o in detect_objects(band)], "_images": (np.array(view), full)})
    shown = cases[:args.max_cases]
    if shown:
        sheet = contact_sheet([c.pop("_images") for c in shown], cut)
        with atomic_open(args.sheet, "wb") as f:
            sheet.save(f, format=Image.registered_extensions().get(Path(args.sheet).suffix.lower(), "PNG"))
    for c in cases:
        c.pop("_images", None)
    print(json.dumps({
        "model": str(resolve_model(args.model)), "rows": k, "threshold": threshold,
        "false_rejections": len(cases), "sheet": args.sheet if shown else None,
        "final_strict_of_rejected": float(np.mean(outcome["rejected"])) if outcome["rejected"] else None,
        "final_strict_of_accepted": float(np.mean(outcome["accepted"])) if outcome["accepted"] else None,
        "rejected": len(outcome["rejected"]), "accepted": len(outcome["accepted"]), "cases": shown}))


if __name__ == "__main__":
    main()
