"""The edit value head: a verifier for partial edits that predicts how the edit will END, learned from the model's
own finished edits (`train_demo --stage editvalue`, after editgen).

Why. The edit question (`training.edit_views`) was taught the partial truth: does the visible part already
contradict the target prompt? On the demo VQ that reading does not say how an edit ends: the decoder is not local,
so the rows drawn first look different once the rows below them are drawn, and 0.62 of the truly impossible partial
edits still end correct (`benchmarks/edit_verdicts.py`). Yet the drawn rows do decide the end: continuing the same
anchor (one redrawn row drawn) four times, most anchors end correct all four times or never
(`benchmarks/edit_value_ceiling.py`). The information is in the anchor, not in the partial truth.

What. The same view, through the same question (``edit : <target prompt> ?`` over the whole canvas, the undrawn
redrawn pixels grey, `JanusRoles.edit_hidden`), and a logistic head on the language model's last hidden state (H,)
in place of the answer word's probability: P(the finished edit follows the target prompt). The weights of the model
do not change; the head is a file beside them (`edit_value_head.safetensors`, weight (H,) and bias (1,), the
feature standardisation folded in) and gridar.json's "edit_value" record names it with its threshold.

Data. Edits from `shapes.edits.make_edit_set` on a stream of their own (`VALUE_SEED`, never the benchmark's set
seed 31), each run as GridAR with N = 4 on the default schedule and the mixed context, nothing pruned (a recording
verifier keeps every candidate and stores the hidden state of every view it is shown, at every verified band).
Every finished candidate is judged strictly on its target prompt (the judge measures; the label is its verdict) and
scored by the model's own scorer.

Fit. Standardised features, L2-regularised logistic regression; the penalty chosen by 4-fold cross-validation
grouped by edit (a fold never sees another candidate of its test edits), then fitted on everything.

Threshold. GridAR rejects a partial edit whose P < t. t is chosen on the out-of-fold predictions, by what GridAR
would choose: for each edit, the candidates rejected at any band are dropped (an all-rejected edit keeps all), and
the scorer's pick among the rest is judged. A copy of a survivor is taken to end like it (its anchor decides,
above), so the pick among survivors is what pruning changes. The t with the highest simulated success wins (ties:
the lowest, which prunes least); with no t above no pruning, t = 0 and the head never rejects.

Final pick. Rejection only throws away what the scorer would mostly not have picked anyway; what the verdicts
know beyond the scorer is better spent on the pick itself. GridAR's final ranking (`engine.search`) adds
final_weight * the mean logit of the verdicts each candidate's path received (a copy inherits its source's) to the
logit of its score. final_weight is chosen like t, on the same out-of-fold simulation at the chosen t (grid
`WEIGHTS`, ties: the smallest; 0 keeps the scorer alone). Best-of-N has no partial verdicts: this is evidence only
GridAR's search gathers.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..engine.value_head import HEAD_FILE, load_head  # noqa: F401 - the format lives in the engine

log = logging.getLogger("gridar.train")

VALUE_SEED = 424_243               # the edits' stream: not the benchmark's (31) nor editgen's (424242)
PENALTIES = (0.01, 0.03, 0.1, 0.3, 1.0)
FOLDS = 4


class RecordingVerifier:
    """Roles that keep every candidate: `verify` stores the edit-question hidden state of each view it is shown
    (one (n, H) array per call, in call order) and returns P = 1; scoring and reformulation are the model's own."""

    def __init__(self, roles) -> None:
        self.roles = roles
        # per call: (hidden (n, H), the edit question's own P(possible) (n,))
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def verify(self, prompt, views, cost):
        h = self.roles.edit_hidden(prompt, views, cost)
        self.calls.append((h.float().cpu().numpy(), np.array(self.roles.answer_probability(h, "possible"))))
        return [1.0] * len(views)

    def score(self, prompt, images, cost):
        return self.roles.score(prompt, images, cost)

    def reformulate(self, prompt, views, cost):
        return self.roles.reformulate(prompt, views, cost)


def collect(backend, roles, cases: list[dict], targets: list, seed: int = 0, batch: int = 16,
            work: Path | None = None) -> dict[str, np.ndarray]:
    """Finished GridAR edits (N = 4, nothing pruned) with the hidden state of every verified view.

    Returns arrays over views: hidden (M, H), word (M,) the edit question's P(possible), band (M,) (0 = first
    verification), edit (M,), ok (M,) the finished candidate's strict verdict, score (M,) its final score,
    kind/context (M,) strings. With `work`, each batch is
    saved there and read back on a rerun (resumable)."""
    from ..engine.search import Search, SearchRequest
    from ..shapes.judge import judge
    cols = backend.info.cols
    groups: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(targets):          # a GridAR batch must redraw the same token rows
        groups.setdefault((t.first // cols, t.last // cols), []).append(i)
    chunks = [g[at:at + batch] for _, g in sorted(groups.items()) for at in range(0, len(g), batch)]
    parts = []
    t0 = time.time()
    for c, chunk in enumerate(chunks):
        path = work / f"rollouts_{c:04d}.npz" if work is not None else None
        if path is not None and path.exists():
            with np.load(path) as z:
                parts.append({k: z[k] for k in z.files})
            continue
        rec = RecordingVerifier(roles)
        reqs = [SearchRequest(prompt=cases[i]["target_prompt"], method="gridar", n=4, seed=seed * 100_003 + i,
                              edit=targets[i]) for i in chunk]
        results = Search(backend, rec, reqs).run_all()
        ok = np.array([judge(im, cases[i]["target_prompt"]).strict for i, r in zip(chunk, results)
                       for im in r.images], bool)
        score = np.array([s for r in results for s in r.scores], np.float32)
        edit = np.repeat(np.array(chunk), 4)
        kind = np.repeat(np.array([cases[i]["kind"] for i in chunk]), 4)
        context = np.array([x for r in results for x in r.contexts])
        part = {k: [] for k in ("hidden", "word", "band", "edit", "ok", "score", "kind", "context")}
        for band, (h, word) in enumerate(rec.calls):  # no pruning: the same candidates in the same slots
            for k, v in (("hidden", h), ("word", word), ("band", np.full(len(ok), band)), ("edit", edit), ("ok", ok),
                         ("score", score), ("kind", kind), ("context", context)):
                part[k].append(v)
        part = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in part.items()}
        if not rec.calls:                       # a one-row span: GridAR verifies nothing, nothing to learn from
            part["hidden"] = np.zeros((0, 0), np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **part)
            tmp.replace(path)
        parts.append(part)
        log.info("editvalue rollouts: batch %d/%d (%.0f s)", c + 1, len(chunks), time.time() - t0)
    parts = [p for p in parts if len(p["ok"])]
    if not parts:
        raise ValueError("no edit redraws more than one token row: GridAR verified nothing to learn from")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def auroc(y: np.ndarray, s: np.ndarray) -> float | None:
    """Probability that a random positive outranks a random negative (ties count half); None without both."""
    y, s = np.asarray(y, bool), np.asarray(s, np.float64)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    # average ranks over ties
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fit_logistic(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression on standardised features; returns (weight (H,), bias) for the RAW
    features (the standardisation folded in)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = torch.tensor((x - mu) / sd, dtype=torch.float64)
    t = torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        v = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, t) + penalty * (w * w).sum() / 2
        v.backward()
        return v
    with torch.enable_grad():
        opt.step(loss)
    wr = w.detach().numpy() / sd
    return wr.astype(np.float32), float(b.item() - (wr * mu).sum())


def logits(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return x.astype(np.float64) @ w.astype(np.float64) + b


def out_of_fold(data: dict[str, np.ndarray], penalty: float, folds: int = FOLDS) -> np.ndarray:
    """P per view from heads fitted without the view's edit (folds by edit)."""
    edits = np.unique(data["edit"])
    fold_of = {e: k % folds for k, e in enumerate(np.random.default_rng(0).permutation(edits))}
    f = np.array([fold_of[e] for e in data["edit"]])
    p = np.zeros(len(f))
    for k in range(folds):
        w, b = fit_logistic(data["hidden"][f != k], data["ok"][f != k], penalty)
        p[f == k] = 1 / (1 + np.exp(-logits(data["hidden"][f == k], w, b)))
    return p


WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)     # the grid for the final pick's weight on the value verdicts


def simulated_success(data: dict[str, np.ndarray], p: np.ndarray, t: float, weight: float = 0.0) -> float:
    """GridAR's pick with pruning at threshold t, where a survivor's copy ends like the survivor (see the module
    docstring): per edit, the candidates with P < t at any band are dropped (all dropped: none is), and the pick
    among the rest is judged. The pick ranks by logit(score) + weight * mean over the verified bands of logit(P)
    (`engine.search`'s final ranking; weight 0: the scorer alone)."""
    from ..engine.search import _logit
    out = []
    for e in np.unique(data["edit"]):
        rows = np.flatnonzero(data["edit"] == e)
        first = rows[data["band"][rows] == 0]
        ok, score = data["ok"][first], data["score"][first]             # per candidate slot
        alive = np.ones(len(first), bool)
        value = np.zeros(len(first))
        bands = np.unique(data["band"][rows])
        for band in bands:
            at = rows[data["band"][rows] == band]
            alive &= p[at] >= t
            value += _logit(p[at]) / len(bands)
        if not alive.any():
            alive[:] = True
        key = _logit(score) + weight * value
        pick = np.flatnonzero(alive)[np.argmax(key[alive])]
        out.append(bool(ok[pick]))
    return float(np.mean(out))


def choose_threshold(data: dict[str, np.ndarray], p: np.ndarray) -> tuple[float, dict]:
    """The threshold with the highest simulated success over a grid of P's quantiles (ties: the lowest); 0 when
    pruning never helps."""
    grid = [0.0] + sorted({round(float(q), 4) for q in np.quantile(p, np.linspace(0.02, 0.6, 30))})
    table = {t: simulated_success(data, p, t) for t in grid}
    t = _best_smallest(table)
    return t, {"no_pruning": table[0.0], "at_threshold": table[t], "grid": {str(k): v for k, v in table.items()}}


def choose_weight(data: dict[str, np.ndarray], p: np.ndarray, t: float) -> tuple[float, dict]:
    """The final pick's weight on the value verdicts (`WEIGHTS`) with the highest simulated success at threshold
    t (ties: the smallest; 0 when the verdicts add nothing to the scorer)."""
    table = {w: simulated_success(data, p, t, w) for w in WEIGHTS}
    return _best_smallest(table), {str(k): v for k, v in table.items()}


def _best_smallest(table: dict[float, float]) -> float:
    """The setting with the highest simulated success; ties go to the smallest (the least departure from the
    scorer alone)."""
    best = max(table.values())
    return min(k for k, v in table.items() if v == best)


def save_head(folder: Path, w: np.ndarray, b: float) -> None:
    from safetensors.torch import save

    from ..io.atomic import atomic_write_bytes
    atomic_write_bytes(folder / HEAD_FILE, save({"weight": torch.tensor(w, dtype=torch.float32),
                                                 "bias": torch.tensor([b], dtype=torch.float32)}))


def train_edit_value(folder: str | Path, work: str | Path, edits: int = 2000, seed: int = 0,
                     threads: int = 2) -> dict:
    """Collect rollouts with the model in `folder`, fit the head, choose its threshold, write the head and the
    "edit_value" record of gridar.json. Returns the record."""
    from ..engine.backend import JanusBackend
    from ..engine.edit import prepare_edit
    from ..engine.janus_roles import JanusRoles
    from ..shapes.edits import make_edit_set
    from PIL import Image
    torch.set_num_threads(threads)
    folder, work = Path(folder), Path(work)
    backend = JanusBackend.load(folder, device="cpu", dtype="float32")
    roles = JanusRoles(backend)
    if not roles.edit_verify:
        raise ValueError(f"'{folder}' was not trained on the edit question (no \"edit_verify\" in gridar.json)")
    cases = make_edit_set(edits, VALUE_SEED + seed)
    targets = [prepare_edit(backend, c["source"], Image.fromarray(c["mask"].astype(np.uint8) * 255)) for c in cases]
    with torch.inference_mode():
        data = collect(backend, roles, cases, targets, seed, work=work / "editvalue")
    data["ok"] = data["ok"].astype(bool)
    if data["ok"].all() or not data["ok"].any():
        raise ValueError(f"every one of the {len(data['ok'])} finished candidates was judged "
                         f"{'correct' if data['ok'].all() else 'wrong'}: nothing to tell apart; use more edits")
    cv = {}
    for penalty in PENALTIES:
        p = out_of_fold(data, penalty)
        cv[penalty] = (auroc(data["ok"], p), p)
        log.info("editvalue penalty %g: out-of-fold AUROC %.3f", penalty, cv[penalty][0])
    penalty = max(PENALTIES, key=lambda x: cv[x][0] or 0.0)
    p = cv[penalty][1]
    t, sim = choose_threshold(data, p)
    weight, by_weight = choose_weight(data, p, t)
    w, b = fit_logistic(data["hidden"], data["ok"], penalty)
    save_head(folder, w, b)
    record = {
        "file": HEAD_FILE, "threshold": t, "penalty": penalty,
        "features": "last hidden state of the edit question (JanusRoles.edit_hidden)",
        "labels": "the judge's strict verdict on the finished candidate",
        "edits": len(cases), "views": int(len(p)), "seed": VALUE_SEED + seed,
        "candidate_success": float(data["ok"][data["band"] == 0].mean()),
        "out_of_fold_auroc": {"all": cv[penalty][0], **{
            f"band_{k}": auroc(data["ok"][data["band"] == k], p[data["band"] == k])
            for k in np.unique(data["band"]).tolist()}},
        "simulated_success": {**{k: v for k, v in sim.items() if k != "grid"}, "by_final_weight": by_weight},
        "final_weight": weight,
        "final_rule": "final pick by logit(score) + final_weight * mean over verified bands of logit(P)",
    }
    # the same views read by the answer word, as the edit question was taught (the partial truth)
    record["edit_question_auroc"] = {"all": auroc(data["ok"], data["word"]), **{
        f"band_{k}": auroc(data["ok"][data["band"] == k], data["word"][data["band"] == k])
        for k in np.unique(data["band"]).tolist()}}
    meta_path = folder / "gridar.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta["edit_value"] = record
    from ..io.atomic import atomic_write_text
    atomic_write_text(meta_path, json.dumps(meta, indent=1))
    log.info("editvalue: %s", json.dumps(record))
    return record
