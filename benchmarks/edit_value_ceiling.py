"""Do the first redrawn rows decide how an edit ends? (one JSON object; the judge measures, nothing is chosen by it)

    .venv/bin/python benchmarks/edit_value_ceiling.py [--n 120] [--set-seed 77] [--model demo]

For each edit (`shapes.edits.make_edit_set`, by default NOT the benchmark's set seed 31), GridAR with N = 16 draws
16 first bands; at the first verified band the policy keeps one anchor per group of 4 (two of the source's context,
two of the cleared one) and makes the other three slots copies of it, so every anchor is continued 4 times,
independently, nothing else pruned and no prompt rewritten. Every finished candidate is judged strictly on the target
prompt and scored by the model's own scorer.

Reported:
- `anchor_end_share`: how the anchors' 4 continuations end (all 4 correct, none, mixed). Mostly all or none: the
  anchor decides the end.
- `within_edit_variance` of the anchors' success rates against `noise_variance`, what 4-sample means of anchors with
  the same rate would show;
- `verifier_auroc_vs_end`: the roles' P at that band (the edit question's, or the value head's where the folder
  has one) against the continuations' ends;
- `simulated`: Best-of-N 4 (one continuation per anchor, the scorer's pick), the verifier's pruning at its
  threshold and pruning by an oracle that knows the anchor's end from its continuations 2 and 3 (a rejected
  anchor's slot continues a survivor: the survivor's next continuation, 1, then 2, then 3, so a third copy of one
  survivor reuses what the oracle read), and any-of-4.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edit_quality import edit_set_args, load_edit_bench  # noqa: E402

from gridar_desktop.engine.models import resolve_model  # noqa: E402
from gridar_desktop.engine.search import PruneDecision, Search, SearchRequest, Stage, pruning_threshold  # noqa: E402
from gridar_desktop.shapes.judge import judge  # noqa: E402
from gridar_desktop.training.edit_value import auroc  # noqa: E402


class CopyAnchors:
    """At the first verification: slot 4g + (g % 2) of each group g survives, the group's other slots copy it."""

    def __init__(self) -> None:
        self.p: list[float] | None = None

    def review_verdicts(self, review):
        n = len(review.p_possible)
        if self.p is not None:
            return PruneDecision([True] * n, list(range(n)))
        self.p = list(review.p_possible)
        anchors = [4 * g + (g % 2) for g in range(n // 4)]
        return PruneDecision([i in anchors for i in range(n)], [anchors[i // 4] for i in range(n)])

    def review_layouts(self, stage, proposals):
        return proposals


def simulate(edits: list[list[dict]], keep_fn, trials: int = 50, seed: int = 0) -> float:
    rng = random.Random(seed)
    wins = []
    for anchors in edits:
        for _ in range(trials):
            keep = keep_fn(anchors)
            if not any(keep):
                keep = [True] * len(anchors)
            survivors = [a for a in range(len(anchors)) if keep[a]]
            used = [0] * len(anchors)
            finals = []
            for a in range(len(anchors)):
                src = a if keep[a] else rng.choice(survivors)
                c = used[src]
                used[src] += 1
                finals.append((anchors[src]["score"][c], anchors[src]["ok"][c]))
            wins.append(max(finals)[1])
    return float(np.mean(wins))


def main() -> None:
    ap = argparse.ArgumentParser()
    edit_set_args(ap, 120)
    ap.set_defaults(set_seed=77)
    args = ap.parse_args()
    b, roles, cases, targets = load_edit_bench(args)
    threshold = pruning_threshold(roles, edit=True)
    sched = (Stage(0.25, True, False), Stage(0.5, True, False), Stage(1.0, False, False))
    edits = []
    for i, (c, e) in enumerate(zip(cases, targets)):
        pol = CopyAnchors()
        res = Search(b, roles, SearchRequest(prompt=c["target_prompt"], method="gridar", n=16, seed=1000 + i,
                                             edit=e, schedule=sched, reformulate=False, context=args.context),
                     policy=pol).run()
        if pol.p is None:           # a one-row span: nothing is verified
            continue
        ok = [bool(judge(im, c["target_prompt"]).strict) for im in res.images]
        edits.append([{"p": pol.p[4 * g + g % 2], "ok": ok[4 * g:4 * g + 4], "score": res.scores[4 * g:4 * g + 4],
                       "kind": c["kind"]} for g in range(4)])
    rates = np.array([[np.mean(a["ok"]) for a in anchors] for anchors in edits])          # (E, 4)
    y = [o for anchors in edits for a in anchors for o in a["ok"]]
    s = [a["p"] for anchors in edits for a in anchors for _ in a["ok"]]
    report = {
        "model": str(resolve_model(args.model)), "edits": len(edits), "set_seed": args.set_seed,
        "candidate_success": float(rates.mean()),
        "anchor_end_share": {"all_4_correct": float((rates == 1).mean()), "none": float((rates == 0).mean()),
                             "mixed": float(((rates > 0) & (rates < 1)).mean())},
        "within_edit_variance": float(rates.var(axis=1, ddof=1).mean()),
        "noise_variance": float((rates * (1 - rates)).mean() / 3),
        "verifier_threshold": threshold, "verifier_auroc_vs_end": auroc(y, s),
        "simulated": {
            "best_of_n_4": simulate(edits, lambda v: [True] * len(v)),
            "verifier_pruning": simulate(edits, lambda v: [a["p"] >= threshold for a in v]),
            "oracle_pruning": simulate(edits, lambda v: [sum(a["ok"][2:]) > 0 for a in v]),
            "any_of_4": float(np.mean([any(a["ok"][0] for a in v) for v in edits]))}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
