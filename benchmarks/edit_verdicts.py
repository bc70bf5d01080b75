"""Do the verifier's verdicts on partial edits say anything about how the edit ends? (one JSON object)

    .venv/bin/python benchmarks/edit_verdicts.py [--n 120] [--model demo]

GridAR can only beat Best-of-N at the same N when its pruning removes candidates that would have failed. This runs
GridAR edits (the editing set of `edit_quality.py`) with nothing pruned (threshold 0: every verdict is recorded,
every candidate survives), then judges every finished candidate on the target prompt and reports:
- `auroc_verdict_vs_final`: AUROC of the first band's P(possible) against the candidate's final success
  (0.5 = the verdict carries no information about the outcome); `auroc_second_verdict_vs_final` for the second
  band (the half of the redrawn rows), where there is one;
- `auroc_score_vs_final`: the same for the final scorer's P(yes), for comparison;
- per threshold: the share of candidates that would be rejected and the final success of rejected vs accepted ones;
- per kind of edit: the verdict's AUROC and the candidates' success;
- `against_partial_truth`: the first band's verdicts against the judge's reading of the partial edit the verifier
  saw (`shapes.edits.judge_partial_edit`: a visible contradiction of the target prompt, with the source shown
  outside the redrawn tokens), false and true rejection rates at the threshold GridAR prunes edits with.
Weights trained on the edit question are asked it (`engine.janus_roles`); others get the generation question.
`--context` as in `edit_quality.py` (default mixed, the app's).
The judge measures only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edit_quality import KINDS, edit_set_args, load_edit_bench  # noqa: E402
from verifier_quality import auroc  # noqa: E402

from gridar_desktop.engine.models import resolve_model  # noqa: E402
from gridar_desktop.engine import events as ev  # noqa: E402
from gridar_desktop.engine.edit import pixel_mask  # noqa: E402
from gridar_desktop.engine.search import Search, SearchRequest, pruning_threshold  # noqa: E402
from gridar_desktop.shapes.edits import judge_partial_edit  # noqa: E402
from gridar_desktop.shapes.judge import judge  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    edit_set_args(ap, 120)
    args = ap.parse_args()
    backend, roles, cases, targets = load_edit_bench(args)
    p_first, success, scores, kinds, p_second, s_second, truth = [], [], [], [], [], [], []
    for i, (c, e) in enumerate(zip(cases, targets)):
        req = SearchRequest(prompt=c["target_prompt"], method="gridar", n=4, seed=i, edit=e, strategy="replace",
                            threshold=0.0, context=args.context)
        bands: list = []
        res = Search(backend, roles, req, emit=lambda x: bands.append(x) if isinstance(x, ev.BandCandidates)
                     else None).run()
        if not res.tree or "p_possible" not in res.tree[0]:
            continue                               # a one-row span: nothing is verified
        p_first += res.tree[0]["p_possible"]
        rows, cols, size = backend.info.rows, backend.info.cols, backend.info.image_size
        undrawn = pixel_mask(np.array(e.redraw), rows, cols, size)
        undrawn[:bands[0].rows * size // rows] = False
        truth += [int(bool(judge_partial_edit(im, c["target_prompt"], undrawn))) for im in bands[0].previews]
        ok = [judge(im, c["target_prompt"]).strict for im in res.images]
        success += ok
        if len(res.tree) > 1 and "p_possible" in res.tree[1]:
            p_second += res.tree[1]["p_possible"]
            s_second += ok
        scores += res.scores
        kinds += [c["kind"]] * len(res.images)
    p, s, k = np.array(p_first), np.array(success), np.array(kinds)
    used = pruning_threshold(roles, edit=True)
    out: dict = {"model": str(resolve_model(args.model)), "edit_question": roles.edit_verify, "context": args.context, "edits": args.n, "candidates": int(len(p)),
                 "success": float(s.mean()), "auroc_verdict_vs_final": auroc(list(p), list(s)),
                 "auroc_second_verdict_vs_final": auroc(p_second, s_second) if p_second else None,
                 "second_verdicts": len(p_second), "auroc_score_vs_final": auroc(scores, list(s)), "threshold_used_by_gridar": used, "by_threshold": {}}
    for t in sorted({used, 0.25, 0.5, 0.75}):
        rej = p < t
        out["by_threshold"][str(round(t, 4))] = {
            "rejected_share": float(rej.mean()),
            "success_of_rejected": float(s[rej].mean()) if rej.any() else None,
            "success_of_accepted": float(s[~rej].mean()) if (~rej).any() else None}
    tv = np.array(truth)
    out["against_partial_truth"] = {
        "truly_impossible": int(tv.sum()),
        "false_reject_rate": float((p < used)[tv == 0].mean()) if (tv == 0).any() else None,
        "true_reject_rate": float((p < used)[tv == 1].mean()) if tv.any() else None,
        "auroc_possible": auroc(list(p), list(1 - tv)),
        "success_of_truly_impossible": float(s[tv == 1].mean()) if tv.any() else None}
    out["per_kind"] = {x: {"candidates": int((k == x).sum()), "success": float(s[k == x].mean()),
                           "auroc_verdict_vs_final": auroc(list(p[k == x]), list(s[k == x]))} for x in KINDS}
    print(json.dumps(out, indent=1).replace("NaN", "null"))     # an AUROC with one class present is undefined


if __name__ == "__main__":
    main()
