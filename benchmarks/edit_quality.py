"""Masked editing on the shapes world: edit success, preservation outside the mask, unedited objects (one JSON object).

    .venv/bin/python benchmarks/edit_quality.py [--n 200] [--methods single:1,best-of-n:4,gridar:4,...] [--seeds 0]

`gridar:4` is the paper's recipe (verdicts from partial views, rejected slots refilled with copies);
`gridar-rollout-redraw:4` is what the app runs for an edit by default (`engine/defaults.py`, reported under
"edit_defaults"): verdicts from one completion of each candidate, rejected slots redrawn. The default method list
measures both.

The edit set (`shapes.edits.make_edit_set`, seed `--set-seed`): a source scene is rendered; one edit is applied to
its objects (colour, shape, remove, add); the mask is the affected object's box grown by 2 px; the target prompt
describes the whole edited scene (counts only). Every method redraws the masked tokens
conditioned on the target prompt and pastes the result back over the source.

Measured per method: edit success (judge strict on the target prompt), PSNR and SSIM outside the mask (paste-back
makes them exact unless something leaks; PSNR of identical regions is reported as 100 dB; SSIM over pixels at least
5 px from the mask, so its window does not see the edit), and "unedited kept":
the share of source objects away from the mask that the judge still finds at the same place with the same colour
and shape. The judge measures only; each method chooses with its own scorer. `paired_vs_best-of-n:N` gives each
method's success minus Best-of-N's over the same (seed, edit) pairs, with its standard error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridar_desktop.engine.backend import JanusBackend  # noqa: E402
from gridar_desktop.bench import parse_methods  # noqa: E402
from gridar_desktop.engine.cost import CostRecord  # noqa: E402
from gridar_desktop.engine.defaults import GRIDAR_DEFAULTS  # noqa: E402
from gridar_desktop.engine.edit import CONTEXTS, prepare_edit  # noqa: E402
from gridar_desktop.engine.janus_roles import JanusRoles  # noqa: E402
from gridar_desktop.engine.models import resolve_model  # noqa: E402
from gridar_desktop.engine.search import Search  # noqa: E402
from gridar_desktop.shapes.edits import KINDS, make_edit_set  # noqa: E402
from gridar_desktop.shapes.judge import detect_objects, judge  # noqa: E402


def edit_targets(backend, cases: list[dict]) -> list:
    """Each case's `EditTarget` (source fitted, mask turned into redrawn tokens) for `backend`."""
    return [prepare_edit(backend, c["source"], Image.fromarray(c["mask"].astype(np.uint8) * 255)) for c in cases]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) if a.size else 0.0
    return 100.0 if mse == 0 else min(100.0, 10 * np.log10(255.0 ** 2 / mse))


def ssim_outside(a: np.ndarray, b: np.ndarray, outside: np.ndarray) -> float:
    """Mean SSIM (Gaussian window, sigma 1.5, on the grey level) over the pixels outside the mask."""
    x, y = (np.asarray(Image.fromarray(v).convert("L"), np.float64) for v in (a, b))
    g = lambda z: ndimage.gaussian_filter(z, 1.5)  # noqa: E731
    mx, my = g(x), g(y)
    vx, vy, cxy = g(x * x) - mx * mx, g(y * y) - my * my, g(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[outside].mean())


def unedited_kept(image: np.ndarray, kept: list[tuple]) -> float | None:
    if not kept:
        return None
    found = detect_objects(image)
    ok = 0
    for colour, shape, cx, cy in kept:
        ok += any(f.colour == colour and f.shape == shape and abs(f.centroid[0] - cx) <= 3
                  and abs(f.centroid[1] - cy) <= 3
                  for f in found)
    return ok / len(kept)


def edit_set_args(ap: argparse.ArgumentParser, n: int) -> None:
    """The arguments every editing benchmark takes: the edit set's size and seed, the model, the context, threads."""
    ap.add_argument("--n", type=int, default=n)
    ap.add_argument("--set-seed", type=int, default=31)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--context", default="mixed", choices=CONTEXTS,
                    help="what the kept codes around the mask say (engine.edit.CONTEXTS)")
    ap.add_argument("--threads", type=int, default=0)


def load_edit_bench(args: argparse.Namespace) -> tuple[JanusBackend, JanusRoles, list[dict], list]:
    """(backend, roles, cases, edit targets): torch threads set, the model on CPU in float32, the edit set."""
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = JanusBackend.load(resolve_model(args.model), device="cpu", dtype="float32")
    cases = make_edit_set(args.n, args.set_seed)
    return backend, JanusRoles(backend), cases, edit_targets(backend, cases)


def main() -> None:
    ap = argparse.ArgumentParser()
    edit_set_args(ap, 200)
    ap.add_argument("--methods", default="single:1,best-of-n:4,gridar:4,gridar-rollout-redraw:4")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--strategy", default="replace", choices=["replace", "three-way"])
    args = ap.parse_args()
    backend, roles, cases, targets = load_edit_bench(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    report: dict = {"edits": len(cases), "kinds": {k: sum(c["kind"] == k for c in cases) for k in KINDS},
                    "seeds": seeds, "model": args.model, "strategy": args.strategy,
                    "context": args.context, "edit_defaults": GRIDAR_DEFAULTS["edit"],
                    "redrawn_tokens_mean": float(np.mean([t.redrawn_tokens for t in targets])), "methods": {}}
    outcomes: dict[str, np.ndarray] = {}        # per method: success per (seed, edit), in the same order for all
    for label, template in parse_methods(args.methods):
        template = replace(template, strategy=args.strategy, context=args.context)
        rows, cost, t0 = [], CostRecord(), time.perf_counter()
        # Batches group edits of the same redrawn rows: a batch runs from its earliest first redrawn token to its
        # latest last one for every job, so mixing spans would also charge each edit for its neighbours' rows.
        # GridAR's bands are fractions of the redrawn rows, so a batch holds edits of the same rows only.
        cols = backend.info.cols
        groups: dict[tuple[int, int], list[int]] = {}
        for i in range(len(cases)):
            groups.setdefault((targets[i].first // cols, targets[i].last // cols), []).append(i)
        chunks = [g[at:at + args.batch] for _, g in sorted(groups.items()) for at in range(0, len(g), args.batch)]
        for seed in seeds:
            for chunk in chunks:
                reqs = [replace(template, prompt=cases[i]["target_prompt"], seed=seed * 100_003 + i, edit=targets[i])
                        for i in chunk]
                results = Search(backend, roles, reqs).run_all()
                cost.merge(results[0].cost)
                for i, res in zip(chunk, results):
                    img, c = res.images[res.best], cases[i]
                    src, out = targets[i].source, ~targets[i].mask
                    far = ~ndimage.binary_dilation(targets[i].mask, iterations=5)   # SSIM windows clear of it
                    rows.append({"kind": c["kind"], "success": judge(img, c["target_prompt"]).strict,
                                 "psnr": psnr(img[out], src[out]), "ssim": ssim_outside(img, src, far),
                                 "kept": unedited_kept(img, c["kept"])})
        per_kind = {k: float(np.mean([r["success"] for r in rows if r["kind"] == k])) for k in KINDS}
        kept = [r["kept"] for r in rows if r["kept"] is not None]
        cj = cost.to_json()
        report["methods"][label] = {
            "success": float(np.mean([r["success"] for r in rows])), "success_per_kind": per_kind,
            "psnr_outside_min": min(r["psnr"] for r in rows), "psnr_outside_mean": float(np.mean([r["psnr"] for r in rows])),
            "ssim_outside_mean": float(np.mean([r["ssim"] for r in rows])),
            "unedited_kept": float(np.mean(kept)) if kept else None,
            "generator_flops_per_edit": cj["roles"]["generator"]["flops"] / len(rows),
            "total_flops_per_edit": cj["total_flops"] / len(rows),
            "seconds_per_edit": (time.perf_counter() - t0) / len(rows), "cost": cj}
        outcomes[label] = np.array([r["success"] for r in rows], np.float64)
        print(f"{label}: success {report['methods'][label]['success']:.3f}", file=sys.stderr)
    # Every method edits the same (seed, edit) pairs: a paired difference to Best-of-N has a far smaller error than
    # the two success rates' own errors suggest.
    ref = next((m for m in outcomes if m.startswith("best-of-n")), None)
    if ref is not None:
        report["paired_vs_" + ref] = {
            m: {"difference": float(d.mean()),
                "standard_error": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None}
            for m in outcomes if m != ref for d in [outcomes[m] - outcomes[ref]]}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
