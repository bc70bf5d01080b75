"""How well the judging roles work, on candidates the demo generator really produced (prints one JSON object).

    .venv/bin/python benchmarks/verifier_quality.py [--prompts 150] [--per-prompt 4] [--model demo]

- Partial-view verification at 1/4 and 1/2 of the token rows, against the judge's truth: a candidate is truly
  impossible when the judge's partial-view mode finds a visible contradiction (`shapes/partial.py` says what counts).
  A candidate is called impossible when P(possible) < the threshold GridAR prunes that band with: the one calibrated
  for these weights and that row (`training.calibrate`, stored in the model's gridar.json; never read off this
  benchmark), else `search.DEFAULT_THRESHOLD`; `by_threshold` shows the trade-off at others.
  false_reject_rate = share of truly feasible candidates the verifier calls impossible (target <= 0.10);
  true_reject_rate  = share of truly impossible candidates it calls impossible (target >= 0.50).
  `finished_image_truth` gives the same rates against the judge's partial mode on the FINISHED image's top rows:
  the drawn tokens are the same, but the partial decode's rows next to the cut are tinted by the empty-canvas codes
  below (the VQ decoder is not local), and the judge counts such a tint as a drawn colour.
- Final scorer: AUROC of P(yes) against the judge's strict score on the finished images (target >= 0.85).
- Reformulation: share of outputs that are valid (start with the prompt, parse, same objects) and carry a clause, and
  share of clauses consistent with the objects visible in the partial view.
The judge measures here; it does not influence anything the roles see.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from gridar_desktop.engine.backend import JanusBackend
from gridar_desktop.engine.cost import CostRecord
from gridar_desktop.engine.janus_roles import JanusRoles
from gridar_desktop.engine.models import resolve_model
from gridar_desktop.engine.roles import PartialView
from gridar_desktop.engine.sampling import SamplingParams
from gridar_desktop.engine.search import pruning_threshold
from gridar_desktop.engine.single import generate_batch
from gridar_desktop.shapes.grammar import PromptError, parse_prompt
from gridar_desktop.shapes.judge import detect_objects, judge
from gridar_desktop.shapes.partial import judge_partial
from gridar_desktop.shapes.promptsets import make_prompt_set
from gridar_desktop.shapes.scene import BACKGROUND


def auroc(scores: list[float], labels: list[int]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def clause_consistent(proposal: str, prompt: str, view: np.ndarray, rows: int, total: int) -> bool:
    """Groups placed at the top have visible objects there; groups placed wholly at the bottom have none visible
    in the top half."""
    spec = parse_prompt(proposal)
    a = np.array(view)
    cut = a.shape[0] * rows / total
    a[int(cut):] = BACKGROUND
    objs = detect_objects(a)
    half = a.shape[0] / 2
    for p in spec.layout:
        g = spec.group_for(p.key)
        top = sum((o.colour, o.shape) == p.key and o.centroid[1] < half for o in objs)
        want = g.count if p.count is None else p.count
        if p.region == "top" and top < min(want, 1):
            return False
        if p.region == "bottom" and p.count is None and top > 0:
            return False
    return True


def candidate_sets(backend: JanusBackend, n_prompts: int, per_prompt: int, cfg: float, seed: int):
    """The benchmark's candidates: per prompt of the set (seed 4242, all categories) `per_prompt` images the
    generator draws under seed `seed + i`; yields (prompt, the generation)."""
    for i, row in enumerate(make_prompt_set(n_prompts, 4242)):
        yield row["prompt"], generate_batch(backend, [row["prompt"]], per_prompt, SamplingParams(cfg=cfg), seed + i)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=150)
    ap.add_argument("--per-prompt", type=int, default=4)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--cfg", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    t0 = time.perf_counter()
    backend = JanusBackend.load(resolve_model(args.model), device="cpu", dtype="float32")
    roles = JanusRoles(backend)
    rows_total = backend.info.rows
    verify = {f"rows_{k}": {"p": [], "truth": [], "finished": []} for k in (rows_total // 4, rows_total // 2)}
    scores, strict = [], []
    ref_valid, ref_clause, ref_consistent, ref_n = 0, 0, 0, 0
    cost = CostRecord()
    for p, gen in candidate_sets(backend, args.prompts, args.per_prompt, args.cfg, args.seed):
        for k in (rows_total // 4, rows_total // 2):
            part = backend.decode_tokens(gen.tokens[:, :k * backend.info.cols])
            views = [PartialView(im, k, rows_total) for im in part]
            probs = roles.verify(p, views, cost)
            v = verify[f"rows_{k}"]
            v["p"] += probs
            v["truth"] += [int(bool(judge_partial(im, p, k, rows_total))) for im in part]
            v["finished"] += [int(bool(judge_partial(im, p, k, rows_total))) for im in gen.images]
            for prop, im in zip(roles.reformulate(p, views, cost), part):
                ref_n += 1
                if prop == p:
                    ref_valid += 1
                    continue
                try:
                    ok = parse_prompt(prop).without_layout() == parse_prompt(p).without_layout()
                except PromptError:
                    ok = False
                ref_valid += ok
                ref_clause += ok
                ref_consistent += ok and clause_consistent(prop, p, im, k, rows_total)
        scores += roles.score(p, list(gen.images), cost)
        strict += [judge(im, p).strict for im in gen.images]
    out: dict = {"model": str(resolve_model(args.model)), "prompts": args.prompts, "per_prompt": args.per_prompt}
    for name, v in verify.items():
        pv, tv = np.array(v["p"]), np.array(v["truth"])
        feasible, impossible = tv == 0, tv == 1
        threshold = pruning_threshold(roles, rows=int(name.split("_")[1]))

        def rates(threshold: float) -> dict:
            said_impossible = pv < threshold
            return {"false_reject_rate": float(said_impossible[feasible].mean()) if feasible.any() else None,
                    "true_reject_rate": float(said_impossible[impossible].mean()) if impossible.any() else None}
        out[f"verify_{name}"] = {
            "candidates": int(len(tv)), "truly_impossible": int(impossible.sum()),
            "threshold": threshold, **rates(threshold),
            "auroc_possible": auroc(list(pv), list(1 - tv)),
            "by_threshold": {str(t): rates(t) for t in (0.1, 0.25, 0.5)},
        }
        # The same rows read from the finished image: the drawn tokens are fixed, only their decode differs (the
        # partial decode's rows next to the cut are tinted by the empty-canvas codes below).
        fv = np.array(v["finished"])
        out[f"verify_{name}"]["finished_image_truth"] = {
            "truly_impossible": int(fv.sum()),
            "false_reject_rate": float((pv < threshold)[fv == 0].mean()) if (fv == 0).any() else None,
            "true_reject_rate": float((pv < threshold)[fv == 1].mean()) if fv.any() else None,
            "auroc_possible": auroc(list(pv), list(1 - fv)),
            "agree_with_partial_truth": float((fv == tv).mean())}
    out["scorer"] = {"images": len(strict), "judge_strict_rate": float(np.mean(strict)),
                     "auroc": auroc(scores, strict)}
    out["reformulation"] = {"outputs": ref_n, "valid_share": ref_valid / max(ref_n, 1),
                            "with_clause_share": ref_clause / max(ref_n, 1),
                            "consistent_share_of_clauses": ref_consistent / max(ref_clause, 1)}
    out["cost"] = cost.to_json()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
