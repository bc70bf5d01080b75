"""Does the GENERATOR's own state know how an edit will end? (one JSON object; the judge measures, a probe learns)

    .venv/bin/python benchmarks/edit_generator_value.py [--n 1200] [--set-seed 424243] [--work build/edit_genvalue]

The edit value head (`training.edit_value`) reads a partial edit through the understanding path: the decoded
pixels, through the edit question. The VQ decoder is not local, so the pixels of the rows drawn first change once
the rows below them are drawn; the generator itself reads tokens, not pixels. This asks whether its hidden state
says more than the head does.

For each edit (`shapes.edits.make_edit_set`, by default the value head's own stream, never the benchmark's 31),
GridAR N = 4 runs with nothing pruned (verdicts are 1, prompt replacement, mixed context). At each verified band
it records, per candidate: the generator's last hidden state of its cond row (`h_cond`, H) and of its
unconditional row (`h_uncond`), the mean of the cond row's hidden states over the redrawn tokens drawn so far
(`h_mean`), and the guided log-probabilities of those tokens (sum, min, mean: `logprob`). Every finished
candidate is judged strictly on the target prompt and scored by the model's own scorer.

Reported per feature set and band: the out-of-fold AUROC (4 folds grouped by edit) of an L2 logistic probe (the
penalty with the best AUROC of a small grid), the scorer's AUROC on the finished candidates for scale, and the
simulated success of GridAR's pick when it prunes at the probe's best threshold (`training.edit_value.
simulated_success`, where a copy of a survivor ends like it; no pruning at threshold 0). Batches are saved under
--work and read back on a rerun (resumable).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edit_quality import edit_set_args, load_edit_bench  # noqa: E402

from gridar_desktop.engine.decode import decode_to_row, guided_logits  # noqa: E402
from gridar_desktop.engine.search import Search, SearchRequest  # noqa: E402
from gridar_desktop.shapes.judge import judge  # noqa: E402
from gridar_desktop.training.edit_value import (VALUE_SEED, auroc, choose_threshold, fit_logistic,  # noqa: E402
                                                 logits)

FEATURE_SETS = ("logprob", "h_cond", "h_cond+h_uncond", "h_mean", "h_cond+h_uncond+h_mean+logprob")
PENALTIES = (0.01, 0.1, 1.0)


class KeepAll:
    """Roles that verify nothing away (P = 1) and score and reformulate with the model's own roles."""

    def __init__(self, roles) -> None:
        self.roles = roles

    def verify(self, prompt, views, cost):
        return [1.0] * len(views)

    def score(self, prompt, images, cost):
        return self.roles.score(prompt, images, cost)

    def reformulate(self, prompt, views, cost):
        return self.roles.reformulate(prompt, views, cost)


class RecordingSearch(Search):
    """GridAR that records the generator's state of every candidate at each verified band (nothing is pruned, so
    slots keep their candidates)."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.records: list[dict[str, np.ndarray]] = []
        self.acc: dict[str, torch.Tensor] | None = None

    def _decode(self, state, stage, to_row):
        if to_row == self.end_row:                    # the last band: nothing is verified after it
            return super()._decode(state, stage, to_row)
        n = state.n
        if self.acc is None:
            self.acc = {"h": torch.zeros(n, state.hidden.shape[1]), "n": torch.zeros(n), "lp_sum": torch.zeros(n),
                        "lp_min": torch.zeros(n)}
        acc, prev = self.acc, {"state": state}

        def on_token(st):
            pos = st.tokens.shape[1] - 1
            drawn = ~self.forced_mask[:, pos]          # (n,) this position was sampled, not forced
            if drawn.any():
                if prev["state"].tokens.shape[1] == pos:
                    lp = torch.log_softmax(guided_logits(self.b, prev["state"], self.req.params).float(), -1)
                    lp = lp.gather(1, st.tokens[:, pos:pos + 1]).squeeze(1)
                    acc["lp_sum"] += lp * drawn
                    acc["lp_min"] = torch.where(drawn, torch.minimum(acc["lp_min"], lp), acc["lp_min"])
                acc["h"] += st.hidden[st.stream_rows("cond")].float() * drawn[:, None]
                acc["n"] += drawn
            prev["state"] = st
        return decode_to_row(self.b, state, to_row, self.req.params, generator=self.gen, cancel=self.cancel,
                             cost=self.cost, on_token=on_token, **self._forced_kw())

    def _prune(self, state, previews, views, i, nodes):
        a = self.acc
        self.records.append({
            "h_cond": state.hidden[state.stream_rows("cond")].float().numpy().copy(),
            "h_uncond": state.hidden[state.stream_rows("uncond")].float().numpy().copy(),
            "h_mean": (a["h"] / a["n"].clamp_min(1)[:, None]).numpy().copy(),
            "logprob": torch.stack([a["lp_sum"], a["lp_min"], a["lp_sum"] / a["n"].clamp_min(1)], 1).numpy().copy(),
            "tokens": state.tokens.cpu().numpy().copy(),      # (n, k) drawn so far: for probes that read codes
        })
        return super()._prune(state, previews, views, i, nodes)


def collect(backend, roles, cases, targets, work: Path, batch: int = 16) -> list[dict]:
    cols = backend.info.cols
    groups: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(targets):                   # a GridAR batch must redraw the same token rows
        groups.setdefault((t.first // cols, t.last // cols), []).append(i)
    chunks = [g[a:a + batch] for _, g in sorted(groups.items()) for a in range(0, len(g), batch)]
    work.mkdir(parents=True, exist_ok=True)
    parts, t0 = [], time.time()
    for c, chunk in enumerate(chunks):
        path = work / f"batch_{c:04d}.npz"
        if not path.exists():
            reqs = [SearchRequest(prompt=cases[i]["target_prompt"], method="gridar", n=4, seed=i, edit=targets[i],
                                  strategy="replace", context="mixed") for i in chunk]
            s = RecordingSearch(backend, KeepAll(roles), reqs)
            with torch.inference_mode():
                results = s.run_all()
            part = {"edit": np.repeat(np.array(chunk), 4),
                    "ok": np.array([judge(im, cases[i]["target_prompt"]).strict for i, r in zip(chunk, results)
                                    for im in r.images], bool),
                    "score": np.array([x for r in results for x in r.scores], np.float32),
                    "bands": np.array(len(s.records))}
            for b, rec in enumerate(s.records):
                part.update({f"{k}_{b}": v for k, v in rec.items()})
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **part)
            tmp.replace(path)
            print(f"batch {c + 1}/{len(chunks)} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        with np.load(path) as z:
            parts.append({k: z[k] for k in z.files})
    return parts


def out_of_fold(x: np.ndarray, y: np.ndarray, groups: np.ndarray, penalty: float, folds: int = 4) -> np.ndarray:
    edits = np.unique(groups)
    fold_of = {e: k % folds for k, e in enumerate(np.random.default_rng(0).permutation(edits))}
    f = np.array([fold_of[e] for e in groups])
    p = np.zeros(len(y))
    for k in range(folds):
        w, b = fit_logistic(x[f != k], y[f != k], penalty)
        p[f == k] = 1 / (1 + np.exp(-logits(x[f == k], w, b)))
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    edit_set_args(ap, 1200)
    ap.set_defaults(set_seed=VALUE_SEED)
    ap.add_argument("--work", default="build/edit_genvalue")
    args = ap.parse_args()
    backend, roles, cases, targets = load_edit_bench(args)
    parts = [p for p in collect(backend, roles, cases, targets, Path(args.work) / f"set{args.set_seed}_n{args.n}")
             if int(p["bands"]) == 2]               # spans of 3+ rows: verified after the first and second band
    cat = lambda k: np.concatenate([p[k] for p in parts])  # noqa: E731
    ok, score, edit = cat("ok"), cat("score"), cat("edit")
    report: dict = {"edits": int(len(np.unique(edit))), "candidates": int(len(ok)), "set_seed": args.set_seed,
                    "candidate_success": float(ok.mean()), "scorer_auroc_finished": auroc(ok, score),
                    "probes": {}}
    for name in FEATURE_SETS:
        row: dict = {}
        for band in (0, 1):
            x = np.concatenate([cat(f"{k}_{band}") for k in name.split("+")], 1)
            best = max(((auroc(ok, p), pen, p) for pen in PENALTIES
                        for p in [out_of_fold(x, ok, edit, pen)]), key=lambda r: r[0])
            data = {"edit": edit, "band": np.zeros(len(ok), int), "ok": ok, "score": score}
            t, sim = choose_threshold(data, best[2])
            row[f"band_{band}"] = {"auroc": round(best[0], 4), "penalty": best[1], "best_threshold": t,
                                   "simulated_no_pruning": sim["no_pruning"],
                                   "simulated_at_best_threshold": sim["at_threshold"]}
        report["probes"][name] = row
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
