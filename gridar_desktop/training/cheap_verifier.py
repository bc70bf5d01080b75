"""Train and measure the cheap verdict head (`gridar_desktop.engine.cheap_verifier`): a logistic head per verified
band on the generator's own last hidden state, predicting whether the finished candidate will be strictly correct.

    .venv/bin/python -m gridar_desktop.training.cheap_verifier [--train-n 400] [--test-n 150] \
        [--work build/cheap] [--out build/cheap/cheap_head.safetensors]

Data. Prompts from `shapes.promptsets.make_prompt_set` on streams of their own (`TRAIN_SEED`, `TEST_SEED`: never
the benchmark's 7 or 99), each run as GridAR N = 4 on the default schedule with nothing pruned: a recording
verifier asks the model's own verifier (for comparison only), keeps every candidate, and the search records the
generator's cond-row hidden state of every candidate at every verified band. Labels are training-time
information: the finished candidate's strict verdict on its prompt (the judge measures the training drawings; it
never sees a candidate at choice time) and the partial truth of its view (`shapes.partial.judge_partial`: does
the visible part already contradict the prompt?).

Fit. Per band, L2 logistic regression on the standardised hidden state (`training.edit_value.fit_logistic`), the
penalty by 4-fold cross-validation grouped by prompt. Threshold: the head rejects the same share of candidates as
the verifier does at its own calibrated threshold for the band (on the training candidates, out-of-fold), so the
two prune equally often and differ only in which candidates they reject. The edit head's rule (simulated success
where a survivor's copy ends like it, `training.edit_value.choose_threshold`) is reported too, but it cannot see
what pruning buys a generation: a copy continues with fresh draws, which that simulation assumes away, so it
chooses 0 (no pruning) here.

Measure. On the test stream: AUROC of the head and of the current verifier's P(possible) against both labels, per
band, and the FLOPs of one verdict of each.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..engine.cheap_verifier import CheapHead, save_cheap_head
from ..engine.search import Search, SearchRequest
from .edit_value import auroc, choose_threshold, fit_logistic, logits

TRAIN_SEED = 4243
TEST_SEED = 4244
PENALTIES = (0.01, 0.1, 1.0, 10.0)
FOLDS = 4


class RecordingRoles:
    """Keeps every candidate (P = 1); records the model's own verifier's P(possible) and each view's partial truth.
    Scorer and reformulator are the model's own."""

    def __init__(self, roles) -> None:
        self.roles = roles
        self.calls: list[dict[str, np.ndarray]] = []

    def verify(self, prompt, views, cost):
        from ..engine.roles import per_item
        from ..shapes.partial import judge_partial
        before = cost.role("verifier").flops
        p = np.array(self.roles.verify(prompt, views, cost), np.float32)
        possible = np.array([not judge_partial(v.image, q, v.rows, v.total_rows)
                             for q, v in zip(per_item(prompt, len(views)), views)], bool)
        self.calls.append({"p_verifier": p, "possible": possible, "rows": np.full(len(views), views[0].rows),
                           "verifier_flops": np.array(cost.role("verifier").flops - before)})
        return [1.0] * len(views)

    def score(self, prompt, images, cost):
        return self.roles.score(prompt, images, cost)

    def reformulate(self, prompt, views, cost):
        return self.roles.reformulate(prompt, views, cost)


class RecordingSearch(Search):
    """GridAR that records the generator's cond-row hidden state at each verification (nothing is pruned, so the
    slots keep their candidates)."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.hidden: list[np.ndarray] = []

    def _prune(self, state, previews, views, i, nodes):
        self.hidden.append(state.hidden[state.stream_rows("cond")].float().cpu().numpy().copy())
        return super()._prune(state, previews, views, i, nodes)


def collect(backend, roles, prompts: list[dict], work: Path, seed: int = 0, batch: int = 16,
            progress=None) -> dict[str, np.ndarray]:
    """Arrays over (candidate, band): hidden (M, H), p_verifier, possible, rows, band, prompt, ok, score; plus
    verifier_flops (per call). Each batch is saved under `work` and read back on a rerun."""
    import torch

    from ..shapes.judge import judge
    work.mkdir(parents=True, exist_ok=True)
    parts = []
    t0 = time.time()
    for at in range(0, len(prompts), batch):
        path = work / f"batch_{at:05d}.npz"
        if not path.exists():
            chunk = prompts[at:at + batch]
            rec = RecordingRoles(roles)
            reqs = [SearchRequest(prompt=r["prompt"], method="gridar", n=4, seed=seed * 100_003 + at + i)
                    for i, r in enumerate(chunk)]
            s = RecordingSearch(backend, rec, reqs)
            with torch.inference_mode():
                results = s.run_all()
            ok = np.array([judge(im, r["prompt"]).strict for r, res in zip(chunk, results) for im in res.images], bool)
            score = np.array([x for res in results for x in res.scores], np.float32)
            prompt = np.repeat(np.arange(at, at + len(chunk)), 4)
            part: dict[str, list] = {k: [] for k in ("hidden", "p_verifier", "possible", "rows", "band", "prompt",
                                                     "ok", "score")}
            for band, (h, call) in enumerate(zip(s.hidden, rec.calls)):
                for k, v in (("hidden", h), ("p_verifier", call["p_verifier"]), ("possible", call["possible"]),
                             ("rows", call["rows"]), ("band", np.full(len(ok), band)), ("prompt", prompt),
                             ("ok", ok), ("score", score)):
                    part[k].append(v)
            arrays = {k: np.concatenate(v) for k, v in part.items()}
            arrays["verifier_flops"] = np.array([float(c["verifier_flops"]) / len(ok) for c in rec.calls])
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(path)
            if progress:
                progress(f"cheap verdicts: prompts {at + len(chunk)}/{len(prompts)} ({time.time() - t0:.0f} s)")
        with np.load(path) as z:
            parts.append({k: z[k] for k in z.files})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def out_of_fold(x: np.ndarray, y: np.ndarray, groups: np.ndarray, penalty: float, folds: int = FOLDS) -> np.ndarray:
    """P per row from heads fitted without the row's prompt (folds grouped by prompt)."""
    ids = np.unique(groups)
    fold_of = {g: k % folds for k, g in enumerate(np.random.default_rng(0).permutation(ids))}
    f = np.array([fold_of[g] for g in groups])
    p = np.zeros(len(y))
    for k in range(folds):
        w, b = fit_logistic(x[f != k], y[f != k], penalty)
        p[f == k] = 1 / (1 + np.exp(-logits(x[f == k], w, b)))
    return p


def fit_head(train: dict[str, np.ndarray], verifier_thresholds: dict[int, float],
             progress=None) -> tuple[CheapHead, dict]:
    """One head per verified band: penalty by grouped cross-validated AUROC; threshold at the verifier's rejection
    rate for the band (`verifier_thresholds`: rows -> the verifier's calibrated threshold; a band without one: 0)."""
    head, info = CheapHead(), {}
    for rows in sorted(set(int(r) for r in train["rows"])):
        m = train["rows"] == rows
        x, y, g = train["hidden"][m], train["ok"][m], train["prompt"][m]
        tried = {pen: out_of_fold(x, y, g, pen) for pen in PENALTIES}
        cv = {pen: auroc(y, p) or 0.0 for pen, p in tried.items()}
        pen = max(cv, key=cv.get)
        data = {"edit": g, "band": np.zeros(len(y), int), "ok": y, "score": train["score"][m]}
        t_sim, sim = choose_threshold(data, tried[pen])
        rate = float((train["p_verifier"][m] < verifier_thresholds[rows]).mean()) if rows in verifier_thresholds \
            else 0.0
        t = float(np.quantile(tried[pen], rate)) if rate > 0 else 0.0
        w, b = fit_logistic(x, y, pen)
        head.weights[rows], head.biases[rows], head.thresholds[rows] = w, b, t
        info[str(rows)] = {"penalty": pen, "cv_auroc": cv, "threshold": t, "verifier_rejection_rate": rate,
                           "simulated_threshold": t_sim, "simulated_no_pruning": sim["no_pruning"],
                           "simulated_at_simulated_threshold": sim["at_threshold"]}
        if progress:
            progress(f"band at {rows} rows: cross-validated AUROC {cv[pen]:.3f} (penalty {pen}), threshold {t}")
    return head, info


def _share(ok: np.ndarray, rejected: np.ndarray) -> float | None:
    return float(ok[rejected].mean()) if rejected.any() else None


def measure(head: CheapHead, test: dict[str, np.ndarray], hidden_size: int,
            verifier_thresholds: dict[int, float]) -> dict:
    """AUROC of the head and of the verifier against both labels, per band, on held-out candidates."""
    out = {}
    for rows in sorted(set(int(r) for r in test["rows"])):
        m = test["rows"] == rows
        p_head = head.probability(rows, test["hidden"][m])
        ok, possible, p_ver = test["ok"][m], test["possible"][m], test["p_verifier"][m]
        out[str(rows)] = {
            "candidates": int(m.sum()), "ok_rate": float(ok.mean()), "possible_rate": float(possible.mean()),
            "auroc_final_strict": {"cheap_head": auroc(ok, p_head), "verifier": auroc(ok, p_ver)},
            "auroc_partial_truth": {"cheap_head": auroc(possible, p_head), "verifier": auroc(possible, p_ver)},
            "rejected_at_threshold": {"cheap_head": float((p_head < head.thresholds.get(rows, 0.0)).mean()),
                                      **({"verifier": float((p_ver < verifier_thresholds[rows]).mean())}
                                         if rows in verifier_thresholds else {})},
            # of the candidates each rejects, the share that would have ended strictly correct (false rejections)
            "correct_among_rejected": {
                "cheap_head": _share(ok, p_head < head.thresholds.get(rows, 0.0)),
                **({"verifier": _share(ok, p_ver < verifier_thresholds[rows])} if rows in verifier_thresholds else {})},
        }
    out["flops_per_verdict"] = {"cheap_head": 2.0 * hidden_size,
                                "verifier": float(np.mean(test["verifier_flops"])) if len(test["verifier_flops"])
                                else None}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="train and measure the cheap verdict head")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--train-n", type=int, default=400)
    ap.add_argument("--test-n", type=int, default=150)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--work", default="build/cheap")
    ap.add_argument("--out", default=None, help="the head's file (default <work>/cheap_head.safetensors)")
    args = ap.parse_args(argv)
    from ..engine.backend import JanusBackend
    from ..engine.janus_roles import JanusRoles
    from ..engine.models import resolve_model
    from ..shapes.promptsets import make_prompt_set
    log = lambda m: print(m, file=sys.stderr, flush=True)      # noqa: E731
    backend = JanusBackend.load(resolve_model(args.model), device="cpu", dtype="float32")
    roles = JanusRoles(backend)
    work = Path(args.work)
    train = collect(backend, roles, make_prompt_set(args.train_n, TRAIN_SEED),
                    work / f"train_s{TRAIN_SEED}_n{args.train_n}", batch=args.batch, progress=log)
    test = collect(backend, roles, make_prompt_set(args.test_n, TEST_SEED),
                   work / f"test_s{TEST_SEED}_n{args.test_n}", batch=args.batch, progress=log)
    from ..engine.search import pruning_threshold
    thresholds = {int(r): pruning_threshold(roles, rows=int(r)) for r in np.unique(train["rows"])}
    head, info = fit_head(train, thresholds, log)
    out = Path(args.out or work / "cheap_head.safetensors")
    save_cheap_head(out, head)
    report = {"head": str(out), "train": {"prompts": args.train_n, "seed": TRAIN_SEED, "fit": info},
              "test": {"prompts": args.test_n, "seed": TEST_SEED,
                       **measure(head, test, backend.model.config.text_config.hidden_size, thresholds)},
              "verifier_thresholds": thresholds}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
