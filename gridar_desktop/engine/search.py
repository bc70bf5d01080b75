"""GridAR and Best-of-N, written once and driven by the CLI, the benchmark and the desktop app.

GridAR for N = 4G candidates (groups of 4), default schedule (glimpse a quarter, verify, reformulate, grow to the
half, verify, reformulate from the original prompt, complete):

    state = start(prompt, n=N)                      prompt rows prefilled once, branched N ways
    for each stage:
        decode to the stage's row                   2-way guidance, or 3-way with each candidate's layout row
        verify partial views -> policy              rejection only; rejected slots continue a survivor's copy
        select(state, sources)                      cache rows gathered, not recomputed
        reformulate -> policy                       from the ORIGINAL prompt, per candidate
        build the layout rows: a candidate whose layout did not change keeps its row, one whose layout is the
        original prompt copies its cond row (same text, same anchor: same cache), identical (layout, anchor) pairs
        are prefilled once; only the rest is new prefill
    score finished images, rank, pick the best

Decision points go through a `Policy`: `AutoPolicy` accepts the verifier's verdicts and the proposed layouts; the
desktop app's artist policy may change them. Everything random (sampling, which survivor refills a slot) comes from
the request's seed.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from . import events as ev
from .backend import JanusBackend
from .cancel import CancelToken
from .cost import CostRecord
from .decode import (DecodeState, concat_candidates, copy_stream, decode_to_row, drop_streams, merge_streams,
                     new_generator, prefill, select, start)
from .errors import PromptNotUnderstood
from .roles import PartialView, Roles, validate_reformulation
from .sampling import SamplingParams

GROUP = 4
Emit = Callable[[object], None]


@dataclass(frozen=True)
class Stage:
    until: float            # fraction of the token rows complete after this stage (1.0 = the whole image)
    verify: bool = True
    reformulate: bool = True


DEFAULT_SCHEDULE: tuple[Stage, ...] = (Stage(0.25), Stage(0.5), Stage(1.0, False, False))
ONE_VERIFICATION: tuple[Stage, ...] = (Stage(0.5), Stage(1.0, False, False))


@dataclass(frozen=True)
class SearchRequest:
    """A frozen snapshot of everything that determines a search (the GUI may change its widgets meanwhile)."""
    prompt: str
    method: str = "gridar"                  # gridar | best-of-n | single
    n: int = 4
    seed: int = 0
    params: SamplingParams = SamplingParams(cfg=2.0)
    schedule: tuple[Stage, ...] = DEFAULT_SCHEDULE
    strategy: str = "three-way"             # three-way | replace
    prune: bool = True
    reformulate: bool = True
    threshold: float = 0.5                  # P(possible) below this is a rejection

    def validate(self) -> None:
        if self.method not in ("gridar", "best-of-n", "single"):
            raise ValueError(f"unknown method '{self.method}'; use gridar, best-of-n or single")
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.method == "gridar" and self.n % GROUP:
            raise ValueError(f"GridAR works in groups of {GROUP} candidates: n must be a multiple of {GROUP} "
                             f"(got {self.n}; try {max(GROUP, self.n // GROUP * GROUP)})")
        if self.strategy not in ("three-way", "replace"):
            raise ValueError(f"unknown reformulation strategy '{self.strategy}'; use three-way or replace")
        fr = [s.until for s in self.schedule]
        if not fr or fr[-1] != 1.0 or any(b <= a for a, b in zip(fr, fr[1:])) or fr[0] <= 0:
            raise ValueError("the schedule must rise strictly and end at 1.0")


# ---------------------------------------------------------------------------------------------------------------
# Decisions

@dataclass
class PruneDecision:
    """keep[i]: slot i survives as itself; otherwise it continues a copy of candidate sources[i]."""
    keep: list[bool]
    sources: list[int]
    all_rejected_groups: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class VerdictReview:
    stage: int
    p_possible: tuple[float, ...]
    proposed: PruneDecision
    previews: np.ndarray


class Policy(Protocol):
    def review_verdicts(self, review: VerdictReview) -> PruneDecision: ...

    def review_layouts(self, stage: int, proposals: list[str]) -> list[str]: ...


class AutoPolicy:
    """Accept what the verifier and the reformulator proposed."""

    def review_verdicts(self, review: VerdictReview) -> PruneDecision:
        return review.proposed

    def review_layouts(self, stage: int, proposals: list[str]) -> list[str]:
        return proposals


def propose_pruning(p_possible: list[float], threshold: float, rng: random.Random) -> PruneDecision:
    """Rejection-only pruning per group of 4; each rejected slot gets a random survivor of its group; a group with
    no survivor keeps all its candidates."""
    keep = [p >= threshold for p in p_possible]
    return settle(PruneDecision(keep, [-1] * len(keep)), rng)


def settle(d: PruneDecision, rng: random.Random) -> PruneDecision:
    """Make a (possibly hand-edited) decision consistent: kept slots source themselves; a rejected slot's source
    must be a survivor of its group (else a random one is drawn); an all-rejected group keeps everything."""
    keep, sources, empty = list(d.keep), list(d.sources), list(d.all_rejected_groups)
    for g in range(0, len(keep), GROUP):
        slots = range(g, min(g + GROUP, len(keep)))
        survivors = [i for i in slots if keep[i]]
        if not survivors:
            if g // GROUP not in empty:
                empty.append(g // GROUP)
            for i in slots:
                keep[i], sources[i] = True, i
            continue
        for i in slots:
            if keep[i]:
                sources[i] = i
            elif sources[i] not in survivors:
                sources[i] = rng.choice(survivors)
    return PruneDecision(keep, sources, empty)


# ---------------------------------------------------------------------------------------------------------------
# Results

@dataclass
class SearchResult:
    request: SearchRequest
    tokens: torch.Tensor                     # (n, k) final tokens of every candidate
    images: np.ndarray                       # uint8 (n, H, W, 3)
    scores: list[float]
    ranking: list[int]
    tree: list[dict]                         # per stage: verdicts, decisions, layouts
    cost: CostRecord
    stopped_early: bool = False

    @property
    def best(self) -> int:
        return self.ranking[0]

    def metadata(self) -> dict:
        """Everything needed to reproduce the image exactly, for the PNG's JSON chunk."""
        r = self.request
        settings = {"method": r.method, "n": r.n, "seed": r.seed, "cfg": r.params.cfg,
                    "temperature": r.params.temperature, "top_k": r.params.top_k, "top_p": r.params.top_p,
                    "layout_scale": r.params.layout_scale, "strategy": r.strategy, "prune": r.prune,
                    "reformulate": r.reformulate, "threshold": r.threshold,
                    "schedule": [asdict(s) for s in r.schedule]}
        return {"settings": settings, "tree": self.tree, "scores": self.scores, "ranking": self.ranking,
                "chosen": self.best, "tokens": self.tokens.tolist(), "cost": self.cost.to_json(),
                "stopped_early": self.stopped_early}


# ---------------------------------------------------------------------------------------------------------------
# The searches

class Search:
    """One job: a backend, the judging roles, a request, a policy, an event sink and a cancel token."""

    def __init__(self, backend: JanusBackend, roles: Roles | None, request: SearchRequest,
                 policy: Policy | None = None, emit: Emit | None = None, cancel: CancelToken | None = None,
                 live_previews: bool = False) -> None:
        request.validate()
        self.b, self.roles, self.req = backend, roles, request
        self.policy = policy or AutoPolicy()
        self.emit = emit or (lambda e: None)
        self.cancel = cancel or CancelToken()
        self.live_previews = live_previews      # decode every token row for the GUI (costs VQ decodes)
        self.cost = CostRecord()
        self.gen = new_generator(request.seed, backend.device)
        self.rng = random.Random(request.seed)
        self.rows = backend.info.rows
        self.prompt_ids = backend.prompt_ids(request.prompt)     # fails early on words the model does not know

    def run(self) -> SearchResult:
        self.cost.start()
        try:
            if self.req.method == "gridar":
                return self._gridar()
            return self._plain()
        finally:
            self.cost.stop()

    # -- helpers -----------------------------------------------------------------------------------------------
    def _decode(self, state: DecodeState, stage: int, to_row: int) -> DecodeState:
        start_row = state.tokens.shape[1] // self.b.info.cols
        self.emit(ev.BandStarted(stage, start_row, to_row, state.n))
        total = to_row * self.b.info.cols

        def progress(st: DecodeState) -> None:
            k = st.tokens.shape[1]
            if k % self.b.info.cols == 0:           # one event per token row keeps the GUI queue short
                self.emit(ev.TokenProgress(stage, k, total))
                if self.live_previews and k < total:
                    self.emit(ev.RowPreview(stage, k // self.b.info.cols, self._previews(st.tokens)))
        return decode_to_row(self.b, state, to_row, self.req.params, generator=self.gen, cancel=self.cancel,
                             cost=self.cost, on_token=progress)

    def _previews(self, tokens: torch.Tensor) -> np.ndarray:
        self.cost.vq_decodes += tokens.shape[0]
        return self.b.decode_tokens(tokens)

    def _score(self, images: np.ndarray) -> list[float]:
        if self.roles is None or len(images) == 1:
            return [1.0] * len(images)
        return [float(s) for s in self.roles.score(self.req.prompt, list(images), self.cost)]

    def _finish(self, state: DecodeState, tree: list[dict], stopped: bool) -> SearchResult:
        images = self._previews(state.tokens)
        scores = self._score(images) if not stopped else [0.0] * len(images)
        ranking = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        self.emit(ev.FinalRanking(tuple(scores), tuple(ranking), images.copy()))
        self.emit(ev.CostUpdate(self.cost.to_json()))
        tokens = state.tokens.cpu()
        return SearchResult(self.req, tokens, images, scores, ranking, tree, self.cost, stopped)

    def _layout_ids(self, prompts: list[str]) -> list[list[int]]:
        out = []
        for p in prompts:
            try:
                out.append(self.b.prompt_ids(p))
            except PromptNotUnderstood:
                out.append(self.prompt_ids)         # the model cannot read it: keep the original conditioning
        return out

    # -- Best-of-N and single ----------------------------------------------------------------------------------
    def _plain(self) -> SearchResult:
        state = start(self.b, self.req.prompt, self.req.n, self.cost)
        state = self._decode(state, 0, self.rows)
        return self._finish(state, [], False)

    # -- GridAR ------------------------------------------------------------------------------------------------
    def _gridar(self) -> SearchResult:
        req = self.req
        state = start(self.b, req.prompt, req.n, self.cost)
        self.texts = {"cond": [req.prompt] * req.n}      # what each conditioning stream row reads, per candidate
        tree: list[dict] = []
        for i, stage in enumerate(req.schedule):
            to_row = max(1, round(stage.until * self.rows))
            state = self._decode(state, i, to_row)
            if to_row == self.rows:
                break
            node: dict = {"stage": i, "rows": to_row}
            previews = self._previews(state.tokens)
            self.emit(ev.BandCandidates(i, to_row, previews.copy()))
            views = [PartialView(img, to_row, self.rows) for img in previews]
            if stage.verify and req.prune and self.roles is not None:
                state, previews = self._prune(state, previews, views, i, node)
                views = [PartialView(img, to_row, self.rows) for img in previews]
            self.emit(ev.BandAccepted(i, to_row, previews.copy()))
            if stage.reformulate and req.reformulate and self.roles is not None:
                state = self._relayout(state, views, i, node)
            tree.append(node)
            if self.cancel.stopping_after_band:
                return self._finish(state, tree, True)
        return self._finish(state, tree, False)

    def _prune(self, state: DecodeState, previews: np.ndarray, views: list[PartialView], i: int,
               node: dict) -> tuple[DecodeState, np.ndarray]:
        p = [float(x) for x in self.roles.verify(self.req.prompt, views, self.cost)]
        self.emit(ev.Verdicts(i, tuple(p)))
        proposed = propose_pruning(p, self.req.threshold, self.rng)
        decision = settle(self.policy.review_verdicts(VerdictReview(i, tuple(p), proposed, previews)), self.rng)
        self.emit(ev.Replacements(i, tuple(decision.keep), tuple(decision.sources),
                                  tuple(decision.all_rejected_groups)))
        node.update(p_possible=p, keep=decision.keep, sources=decision.sources,
                    all_rejected_groups=decision.all_rejected_groups,
                    overridden=decision.keep != proposed.keep or decision.sources != proposed.sources)
        if decision.sources != list(range(state.n)):
            state = select(state, decision.sources)
            previews = previews[decision.sources]
            self.texts = {k: [v[j] for j in decision.sources] for k, v in self.texts.items()}
        return state, previews

    def _relayout(self, state: DecodeState, views: list[PartialView], i: int, node: dict) -> DecodeState:
        proposals = [validate_reformulation(self.req.prompt, s)
                     for s in self.roles.reformulate(self.req.prompt, views, self.cost)]
        self.emit(ev.LayoutProposals(i, tuple(proposals)))
        accepted = [validate_reformulation(self.req.prompt, s) for s in self.policy.review_layouts(i, proposals)]
        self.emit(ev.LayoutsAccepted(i, tuple(accepted)))
        node.update(layouts=accepted, proposed_layouts=proposals)
        # Every stage reformulates from the original prompt; the new texts replace the layout stream (three-way) or
        # the cond stream (prompt replacement).
        if self.req.strategy == "three-way":
            if all(a == self.req.prompt for a in accepted):
                self.texts.pop("layout", None)       # nothing new: 3-way would equal 2-way, skip the rows
                return drop_streams(state, ["layout"]) if "layout" in state.streams else state
            return self._restream(state, "layout", accepted, node)
        return self._restream(state, "cond", accepted, node)

    def _restream(self, state: DecodeState, name: str, texts: list[str], node: dict) -> DecodeState:
        """Stream `name` conditioned on texts[i] for candidate i, prefilling (text, anchor) only where no carried row
        already holds exactly that conditioning."""
        parts: list[DecodeState] = []
        order: list[int] = []                        # candidate index of each row of the joined parts
        reuse: dict[str, list[int]] = {}
        fresh: list[int] = []
        for i, t in enumerate(texts):
            src = next((s for s in ([name] + [x for x in self.texts if x != name])
                        if s in state.streams and self.texts[s][i] == t), None)
            (reuse.setdefault(src, []) if src else fresh).append(i)
        for src, cands in reuse.items():
            parts.append(copy_stream(state, src, cands, name))
            order += cands
        if fresh:
            keys = [(texts[i], state.tokens[i].cpu().numpy().tobytes()) for i in fresh]
            unique = list(dict.fromkeys(keys))
            first = [fresh[keys.index(k)] for k in unique]
            new = prefill(self.b, {name: self._layout_ids([texts[i] for i in first])}, state.tokens[first], self.cost)
            parts.append(select(new, [unique.index(k) for k in keys]) if len(unique) < len(fresh) else new)
            order += fresh
        prefilled = len(set((texts[i], state.tokens[i].cpu().numpy().tobytes()) for i in fresh))
        node.setdefault("prefilled", []).append({"stream": name, "rows": prefilled, "reused": len(texts) - len(fresh)})
        joined = parts[0]
        for p in parts[1:]:
            joined = concat_candidates(joined, p)
        joined = select(joined, [order.index(i) for i in range(len(texts))])
        if name in state.streams:
            state = drop_streams(state, [name])
        self.texts[name] = list(texts)
        return merge_streams(state, joined)
