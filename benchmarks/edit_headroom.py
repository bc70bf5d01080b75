"""How much could pruning partial edits gain at all? (one JSON object; the judge measures, nothing is pruned)

    .venv/bin/python benchmarks/edit_headroom.py [--n 120] [--context mixed] [--model demo]

Best-of-N 4 edits of the editing set (`edit_quality.py`), every candidate judged twice: finished, on the target
prompt, and after each redrawn token row of its span as a partial edit (`shapes.edits.judge_partial_edit`: a visible
contradiction, the reading a perfect verifier would give). Reported per kind of edit and overall:
- `candidate_success`, `any_of_4` (an oracle choosing among the 4), `scorer_pick` (what Best-of-N gets);
- `doomed_after_rows[k]`: the share of candidates that show a contradiction after k redrawn rows (what pruning
  could reject there), with `hopeless_share`: how many of those belong to an edit none of whose 4 candidates
  succeeds, where no refill from the group can help.
A pruning method can only beat Best-of-N where candidates are visibly doomed early and their edit has a candidate
worth copying; these numbers bound that.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edit_quality import KINDS, edit_set_args, load_edit_bench  # noqa: E402

from gridar_desktop.engine.edit import pixel_mask  # noqa: E402
from gridar_desktop.engine.models import resolve_model  # noqa: E402
from gridar_desktop.engine.search import Search, SearchRequest  # noqa: E402
from gridar_desktop.shapes.edits import judge_partial_edit  # noqa: E402
from gridar_desktop.shapes.judge import judge  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    edit_set_args(ap, 120)
    args = ap.parse_args()
    b, roles, cases, targets = load_edit_bench(args)
    rows, cols, size = b.info.rows, b.info.cols, b.info.image_size
    recs = []
    for i, (c, e) in enumerate(zip(cases, targets)):
        res = Search(b, roles, SearchRequest(prompt=c["target_prompt"], method="best-of-n", n=4, seed=i, edit=e,
                                             context=args.context)).run()
        first, end = e.first // cols, -(-(e.last + 1) // cols)
        redraw = torch.tensor(e.redraw)
        ok = [judge(im, c["target_prompt"]).strict for im in res.images]
        doomed: list[int | None] = [None] * 4
        for r in range(first + 1, end):              # the partial edits after r - first redrawn rows
            hidden = redraw.clone()[None].repeat(4, 1)
            hidden[:, :r * cols] = False
            views = b.decode_partial_edit(res.tokens, hidden, r * cols)
            undrawn = pixel_mask(hidden[0].numpy(), rows, cols, size)
            for k in range(4):
                if doomed[k] is None and judge_partial_edit(views[k], c["target_prompt"], undrawn):
                    doomed[k] = r - first
        recs += [{"edit": i, "kind": c["kind"], "ok": ok[k], "picked": k == res.best, "any": any(ok),
                  "doomed": doomed[k]} for k in range(4)]

    def summary(rs: list[dict]) -> dict:
        edits = {r["edit"] for r in rs}
        out = {"edits": len(edits), "candidate_success": float(np.mean([r["ok"] for r in rs])),
               "any_of_4": float(np.mean([next(r["any"] for r in rs if r["edit"] == e) for e in edits])),
               "scorer_pick": float(np.mean([r["ok"] for r in rs if r["picked"]])), "doomed_after_rows": {}}
        for k in (1, 2, 3):
            d = [r for r in rs if r["doomed"] is not None and r["doomed"] <= k]
            out["doomed_after_rows"][str(k)] = {
                "share": len(d) / len(rs), "final_success": float(np.mean([r["ok"] for r in d])) if d else None,
                "hopeless_share": float(np.mean([not r["any"] for r in d])) if d else None}
        return out
    report = {"model": str(resolve_model(args.model)), "context": args.context, **summary(recs),
              "per_kind": {k: summary([r for r in recs if r["kind"] == k]) for k in KINDS}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
