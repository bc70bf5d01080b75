"""GridAR and Best-of-N, written once and driven by the CLI, the benchmark and the desktop app.

GridAR for N = 4G candidates (groups of 4), default schedule (glimpse a quarter, verify, reformulate, grow to the
half, verify, reformulate from the original prompt, complete):

    state = start(prompt, n=N)                      prompt rows prefilled once (an edit: once per context, with
                                                    the kept codes before the mask), branched N ways
    for each stage:
        decode to the stage's row                   2-way guidance, or 3-way with each candidate's layout row
        verify partial views -> policy              rejection only; rejected slots continue a survivor's copy
                                                    (verify_by="rollout": the scorer reads one thrown-away
                                                    completion of each candidate instead)
        select(state, sources)                      cache rows gathered, not recomputed
        reformulate -> policy                       from the ORIGINAL prompt, per candidate
        build the layout rows: a candidate whose layout did not change keeps its row, one whose layout is the
        original prompt copies its cond row (same text, same anchor: same cache), identical (layout, anchor) pairs
        are prefilled once; only the rest is new prefill
    score finished images, rank, pick the best

Decision points go through a `Policy`: `AutoPolicy` accepts the verifier's verdicts and the proposed layouts; the
desktop app's artist policy may change them. Everything random (sampling, which survivor refills a slot) comes from
the request's seed.

Batches. A `Search` may run several jobs at once (the benchmark does: the same settings, different prompts and
seeds). Their candidates share every forward pass and every role call, but each job keeps its own generator and
its own refill draws, so a job draws exactly what it would draw alone (logits agree to float rounding). A batch
emits no events: events describe one job, for the desktop app.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from . import events as ev
from .backend import JanusBackend
from .cancel import CancelToken, active, install_checkpoints
from .errors import Cancelled
from .cost import CostRecord
from .edit import CONTEXTS, EditTarget, conditioning_image, paste_back, pixel_mask
from .defaults import GROUP, REFILL, ROLLOUT_THRESHOLD, VERIFY_BY
from .decode import (DecodeState, concat_candidates, copy_stream, decode, decode_to_row, drop_streams, fork,
                     merge_streams, new_generator, order_streams, prefill, select, start)
from .errors import EngineError, PromptNotUnderstood
from .roles import PartialView, Roles, validate_reformulation
from .sampling import SamplingParams

Emit = Callable[[object], None]
log = logging.getLogger("gridar.engine")

# Live row previews (`Search(live_previews=True)`). A preview decode cheaper than this many multiply-adds (one
# full-resolution convolution of the VQ decoder, times the candidates) takes milliseconds, less than drawing a token
# row: such models (the demo's 64 px) decode every row inline, as drawn. Dearer ones (a 384 px Janus-Pro decode is
# about 18 s in float32 on a 2-core CPU, 10 s of it per image for 4 candidates) decode on a budget in the
# background (`_PreviewWorker`): one decode at a time, of the rows drawn since the last one, the latest request
# replacing one that has not started.
INLINE_PREVIEW_MACS = 1e9
# After a background preview decode of d seconds the worker rests PREVIEW_REST * d before the next, so previews take
# at most 1 / (1 + PREVIEW_REST) of the time while a band is drawn, wherever the decode runs: on a CPU it shares the
# cores with the drawing. Measured (benchmarks/previews.py, first band at Janus-Pro-1B's width with 2 language
# layers, full-width VQ, 2 threads): drawing took 1.50x its time without previews (1.76x in an earlier run with no
# rest), every row decoded inline 9.1x. With 24 layers a band draws ~12x longer and the share shrinks; on a GPU a
# decode is short and nearly every row still shows.
PREVIEW_REST = 3.0


def preview_macs(backend, n: int) -> float:
    """Multiply-adds of one full-resolution 3x3 convolution of the backend's VQ decoder for `n` images: the measure
    of what a preview decode costs (0 where the backend does not say)."""
    cfg = getattr(getattr(getattr(backend, "model", None), "config", None), "vq_config", None)
    if cfg is None:
        return 0.0
    c = cfg.base_channels * cfg.channel_multiplier[0]
    return 9.0 * c * c * backend.info.image_size ** 2 * n


class _PreviewWorker:
    """Row previews decoded on one background thread, owned by a `Search`: at most one decode in flight, and a rest
    after each (`PREVIEW_REST`); a request made meanwhile waits in a single slot, where a later request replaces it
    (latest wins). Finished
    previews are handed back to the search thread (`take`), which emits them, so every event still comes from that
    thread, in order. `close` drops what waits, stops the decode in flight at its next layer and joins the thread.

    A decode continues the last one where it can: the rows the previous preview of the same band showed are kept,
    and only rows from there on are decoded (`JanusBackend.decode_rows` with `first`; the whole preview where the
    backend has no row-limited decode)."""

    def __init__(self, backend: JanusBackend, rest: float = PREVIEW_REST) -> None:
        self.b = backend
        self.rest = rest
        self._next = 0.0                            # time.monotonic() before which no decode starts
        self._cv = threading.Condition()
        self._pending: tuple | None = None          # (key, rows, render); render() -> images
        self._done: tuple | None = None             # (key, rows, images)
        self._error: BaseException | None = None
        self._closed = False
        self._busy = False                          # a decode is in flight
        self._token = CancelToken()                 # the decode in flight's: it stops at its next layer when aborted
        self.decoded = 0                            # images run through the VQ decoder (for the cost record)
        self._thread = threading.Thread(target=self._loop, name="gridar-previews", daemon=True)
        self._thread.start()

    def submit(self, key, rows: int, render: Callable[[], np.ndarray]) -> None:
        with self._cv:
            self._pending = (key, rows, render)
            self._cv.notify_all()

    def take(self, key) -> tuple[int, np.ndarray] | None:
        """The finished preview of `key` (rows, images) not handed out yet, else None (one of another key is
        dropped). A failure of the decode is raised here, on the search's thread."""
        with self._cv:
            if self._error is not None:
                e, self._error = self._error, None
                raise e
            done, self._done = self._done, None
        if done is None or done[0] != key:
            return None
        return done[1], done[2]

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed:
                    wait = None if self._pending is None else self._next - time.monotonic()
                    if wait is not None and wait <= 0:
                        break
                    self._cv.wait(wait)             # resting: a later request may still replace the waiting one
                if self._closed:
                    return
                (key, rows, render), self._pending = self._pending, None
                token = self._token = CancelToken()
                self._busy = True
            images = None
            t0 = time.monotonic()
            try:
                with active(token), torch.inference_mode():
                    images = render()
            except Cancelled:
                pass                                # dropped (`drop`) or closing
            except BaseException as e:  # noqa: BLE001 - handed to the search thread, raised there
                with self._cv:
                    self._error = e
            with self._cv:
                now = time.monotonic()
                self._next = now + self.rest * (now - t0)
                self._busy = False
                if images is not None:
                    self.decoded += len(images)
                    if not token.aborted:
                        self._done = (key, rows, images)
                self._cv.notify_all()

    def drop(self) -> None:
        """A band ended: what waits is dropped and the decode in flight stops at its next layer, waited for, so the
        band's own previews (decoded whole next) never run beside it (one decode's memory at a time)."""
        with self._cv:
            self._pending = self._done = None
            self._token.abort()
            while self._busy:
                self._cv.wait()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._pending = None
            self._token.abort()
            self._cv.notify_all()
        self._thread.join()


class _RowRenderer:
    """Decodes of a generation's candidates up to a token row for the preview worker, each continuing the previous
    one (`_PreviewWorker`). Used on the worker thread only, except `base`, set between bands."""

    def __init__(self, backend: JanusBackend) -> None:
        self.b = backend
        self.last: tuple[torch.Tensor, int, np.ndarray] | None = None        # (tokens, rows, images) shown last

    def base(self, tokens: torch.Tensor, images: np.ndarray) -> None:
        """What the candidates show now (the accepted band's previews): the next decode starts below it."""
        self.last = (tokens.clone(), tokens.shape[1] // self.b.info.cols, images)

    def render(self, tokens: torch.Tensor, rows: int) -> np.ndarray:
        decode_rows = getattr(self.b, "decode_rows", None)
        if decode_rows is None:
            images = self.b.decode_tokens(tokens)
        else:
            first, last = 0, self.last
            if (last is not None and last[0].shape[0] == tokens.shape[0] and last[1] < rows
                    and torch.equal(last[0], tokens[:, :last[0].shape[1]])):
                first = last[1]
            images = decode_rows(tokens, rows, first=first)
            if first:
                f = self.b.info.image_size // self.b.info.rows
                images[:, :first * f] = last[2][:, :first * f]
        self.last = (tokens, rows, images)
        return images


@dataclass(frozen=True)
class Stage:
    until: float            # fraction of the token rows complete after this stage (1.0 = the whole image)
    verify: bool = True
    reformulate: bool = True


# A verifier without a calibrated threshold of its own rejects only clearly impossible candidates: a false rejection
# throws a good candidate away (why 0.25: docs/verifier.md).
DEFAULT_THRESHOLD = 0.25


def _logit(q):
    """log(q / (1 - q)), q clipped to [1e-6, 1 - 1e-6] so a verdict of exactly 0 or 1 stays finite: a float for a
    float, an array for an array (the final pick here and its simulation in `training.edit_value` share it)."""
    z = np.clip(np.asarray(q, np.float64), 1e-6, 1 - 1e-6)
    out = np.log(z / (1 - z))
    return float(out) if out.ndim == 0 else out


def pruning_threshold(roles: Roles | None, edit: bool = False, rows: int | None = None) -> float:
    """The verifier's own calibrated threshold (`training.calibrate`, stored with its model): for an edit the one
    calibrated on edit views where the verifier has one, else its pooled one (an edit's rows are not a generation's
    band); for a generation the one of the band ending after `rows` token rows, else the pooled one; without any,
    DEFAULT_THRESHOLD."""
    t = getattr(roles, "prune_threshold_edit", None) if edit else None
    if t is None and rows is not None and not edit:
        t = (getattr(roles, "prune_thresholds_by_rows", None) or {}).get(rows)
    t = getattr(roles, "prune_threshold", None) if t is None else t
    return DEFAULT_THRESHOLD if t is None else float(t)


DEFAULT_SCHEDULE: tuple[Stage, ...] = (Stage(0.25), Stage(0.5), Stage(1.0, False, False))
ONE_VERIFICATION: tuple[Stage, ...] = (Stage(0.5), Stage(1.0, False, False))
# The paper's editing recipe: verify at the quarter and the half, reformulate once, at the half.
REFORMULATE_ONCE: tuple[Stage, ...] = (Stage(0.25, True, False), Stage(0.5), Stage(1.0, False, False))


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
    threshold: float | None = None          # P(possible) below this is a rejection; None: the verifier's own
                                            # (`pruning_threshold`, per band; each tree node records the value)
    edit: EditTarget | None = None          # masked editing: redraw only edit.redraw's tokens of edit.source
    context: str = "mixed"                  # edits: mixed | source | cleared (`engine.edit.CONTEXTS`)
    value_pick: bool = True                 # GridAR edits: the final pick also weighs the path's verdicts where the
                                            # verifier is a value head (`Search.final_weight`); False: scorer alone
    verify_by: str = "view"                 # GridAR: what a verdict reads. view: the verifier reads the partial
                                            # candidate; rollout: each candidate is completed once (a lookahead
                                            # that is then thrown away) and the scorer reads the finished image
    refill: str = "copy"                    # GridAR: what replaces a rejected candidate. copy: a copy of a survivor
                                            # of its group (the paper); redraw: a fresh draw of the bands so far

    def validate(self) -> None:
        if self.method not in ("gridar", "best-of-n", "single"):
            raise ValueError(f"unknown method '{self.method}'; use gridar, best-of-n or single")
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.method == "gridar" and self.n % GROUP:
            raise ValueError(f"GridAR works in groups of {GROUP} candidates: n must be a multiple of {GROUP} "
                             f"(got {self.n}; try {max(GROUP, self.n // GROUP * GROUP)})")
        if self.context not in CONTEXTS:
            raise ValueError(f"unknown edit context '{self.context}'; use {', '.join(CONTEXTS)}")
        if self.verify_by not in VERIFY_BY:
            raise ValueError(f"unknown verification '{self.verify_by}'; use {' or '.join(VERIFY_BY)}")
        if self.refill not in REFILL:
            raise ValueError(f"unknown refill '{self.refill}'; use {' or '.join(REFILL)}")
        if self.strategy not in ("three-way", "replace"):
            raise ValueError(f"unknown reformulation strategy '{self.strategy}'; use three-way or replace")
        fr = [s.until for s in self.schedule]
        if not fr or fr[-1] != 1.0 or any(b <= a for a, b in zip(fr, fr[1:])) or fr[0] <= 0:
            raise ValueError("the schedule must rise strictly and end at 1.0")


# ---------------------------------------------------------------------------------------------------------------
# Decisions

@dataclass
class PruneDecision:
    """keep[i]: slot i survives as itself; otherwise it continues a copy of candidate sources[i]. After `settle`,
    keep[i] is also True for a rejected slot that had nothing to continue (an all-rejected group, listed in
    all_rejected_groups, or a mixed edit's slot with no survivor of its context). redraw[i]: rejected slot i is
    redrawn instead, a fresh draw from the prompt rows up to this band (its source is then itself); it needs no
    survivor."""
    keep: list[bool]
    sources: list[int]
    all_rejected_groups: list[int] = field(default_factory=list)
    redraw: list[bool] = field(default_factory=list)      # empty: nothing redrawn


@dataclass(frozen=True)
class VerdictReview:
    stage: int
    p_possible: tuple[float, ...]
    proposed: PruneDecision
    previews: np.ndarray
    threshold: float | None = None          # the P(possible) below which the verifier's verdict is a rejection
    kinds: tuple[str, ...] | None = None    # a mixed edit's context per slot: refills stay within a context
    verify_by: str = "view"                 # rollout: p_possible is the scorer's P(yes) on a completion ...
    completions: np.ndarray | None = None   # ... uint8 (n, H, W, 3): those completions, thrown away afterwards


class Policy(Protocol):
    def review_verdicts(self, review: VerdictReview) -> PruneDecision: ...

    def review_layouts(self, stage: int, proposals: list[str]) -> list[str]: ...


class AutoPolicy:
    """Accept what the verifier and the reformulator proposed."""

    def review_verdicts(self, review: VerdictReview) -> PruneDecision:
        return review.proposed

    def review_layouts(self, stage: int, proposals: list[str]) -> list[str]:
        return proposals


def propose_pruning(p_possible: list[float], threshold: float, rng: random.Random,
                    kinds: Sequence[str] | None = None, refill: str = "copy") -> PruneDecision:
    """Rejection-only pruning per group of 4. refill "copy": each rejected slot gets a random survivor of its group
    (of its own kind, see `settle`); a group with no survivor keeps all its candidates. refill "redraw": each
    rejected slot is redrawn (`SearchRequest.refill`)."""
    keep = [p >= threshold for p in p_possible]
    redraw = [not k for k in keep] if refill == "redraw" else []
    return settle(PruneDecision(keep, [-1] * len(keep), redraw=redraw), rng, kinds)


class DecisionError(EngineError, ValueError):
    """A review decision the search cannot carry out as stated (a refill from a redrawn slot, from another group,
    or a circle of refills); the message names the slots."""


def settle(d: PruneDecision, rng: random.Random, kinds: Sequence[str] | None = None) -> PruneDecision:
    """Make a (possibly hand-edited) decision consistent, and its sources the ones that take effect: kept slots
    source themselves; a rejected slot with no source (-1, or itself) gets a random survivor of its group; a rejected
    slot whose source is another rejected slot of the group continues what that slot continues (3 from 2 and 2 from
    4: both continue 4), never a silently different one; an all-rejected group keeps everything. A source that
    cannot take effect as stated (outside the group, a redrawn slot, a circle) is a `DecisionError`.
    `kinds` (per slot, e.g. the context of a mixed edit): a drawn source is a survivor of the slot's own kind, and
    a rejected slot with none continues itself, so pruning does not collapse the kinds (a source the artist chose
    across kinds stands)."""
    keep, sources, empty = list(d.keep), list(d.sources), list(d.all_rejected_groups)
    # a kept slot is never redrawn; a redrawn slot is its own source (its row is replaced by a fresh draw)
    redraw = [bool(r) and not k for r, k in zip(list(d.redraw) + [False] * (len(keep) - len(d.redraw)), keep)]
    for g in range(0, len(keep), GROUP):
        slots = range(g, min(g + GROUP, len(keep)))
        survivors = [i for i in slots if keep[i]]
        if not survivors and not any(redraw[i] for i in slots):
            if g // GROUP not in empty:
                empty.append(g // GROUP)
            for i in slots:
                keep[i], sources[i] = True, i
            continue
        unset = {i for i in slots if not keep[i] and not redraw[i] and sources[i] in (-1, i)}
        for i in slots:
            if keep[i] or redraw[i]:
                sources[i] = i
            elif i in unset:
                mine = survivors if kinds is None else [x for x in survivors if kinds[x] == kinds[i]]
                if mine:                       # (no survivor at all: the group's other rejected slots are redrawn)
                    sources[i] = rng.choice(mine)
                else:
                    keep[i], sources[i] = True, i
            elif sources[i] not in slots:
                raise DecisionError(f"candidate {i + 1} is to continue candidate {sources[i] + 1}, which is not in "
                                    f"its group of {GROUP}: choose a kept candidate of its group")
        for i in slots:                        # follow chains of rejected slots to the survivor they end at
            if keep[i] or redraw[i]:
                continue
            seen = [i]
            while not keep[sources[seen[-1]]]:
                j = sources[seen[-1]]
                if redraw[j]:
                    raise DecisionError(f"candidate {i + 1} is to continue candidate {j + 1}, which is redrawn: "
                                        f"choose a kept candidate, or redraw {i + 1} too")
                if j in seen:
                    raise DecisionError("the refills of candidates " + ", ".join(str(x + 1) for x in seen) +
                                        " go round in a circle: choose a kept candidate for one of them")
                seen.append(j)
            sources[i] = sources[seen[-1]]
    return PruneDecision(keep, sources, empty, redraw if any(redraw) else [])


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
    contexts: list[str] | None = None        # edits: each candidate's context (`engine.edit.CONTEXTS`)
    selection: dict | None = None            # a final pick that weighed the path's verdicts: rule, weight, keys

    @property
    def best(self) -> int:
        return self.ranking[0]

    def metadata(self) -> dict:
        """Everything needed to reproduce the image exactly, for the PNG's JSON chunk."""
        r = self.request
        settings = {"method": r.method, "n": r.n, "seed": r.seed, "cfg": r.params.cfg,
                    "temperature": r.params.temperature, "top_k": r.params.top_k, "top_p": r.params.top_p,
                    "layout_scale": r.params.layout_scale, "strategy": r.strategy, "prune": r.prune,
                    "reformulate": r.reformulate, "threshold": r.threshold, "value_pick": r.value_pick,
                    "verify_by": r.verify_by, "refill": r.refill,
                    "schedule": [asdict(s) for s in r.schedule]}
        if r.edit is not None:
            from .edit import edit_metadata
            settings["edit"] = edit_metadata(r.edit)
            settings["context"] = r.context
        return {"settings": settings, "tree": self.tree, "scores": self.scores, "ranking": self.ranking,
                "chosen": self.best, "tokens": self.tokens.tolist(), "cost": self.cost.to_json(),
                "stopped_early": self.stopped_early, **({"contexts": self.contexts} if self.contexts else {}),
                **({"selection": self.selection} if self.selection else {})}


# ---------------------------------------------------------------------------------------------------------------
# The searches

class Search:
    """A job (or a batch of jobs with the same settings): a backend, the judging roles, the request(s), a policy, an
    event sink and a cancel token. `run()` returns one job's result, `run_all()` one result per job."""

    def __init__(self, backend: JanusBackend, roles: Roles | None, request: SearchRequest | Sequence[SearchRequest],
                 policy: Policy | None = None, emit: Emit | None = None, cancel: CancelToken | None = None,
                 live_previews: bool = False) -> None:
        jobs = [request] if isinstance(request, SearchRequest) else list(request)
        if not jobs:
            raise ValueError("a search needs at least one request")
        for r in jobs:
            r.validate()
            if replace(r, prompt="", seed=0, edit=None) != replace(jobs[0], prompt="", seed=0, edit=None) or (
                    r.edit is None) != (jobs[0].edit is None):
                raise ValueError("the jobs of a batch may differ only in prompt, seed and edit")
        self.b, self.roles, self.jobs, self.req = backend, roles, jobs, jobs[0]
        self.policy = policy or AutoPolicy()
        self.emit = (emit or (lambda e: None)) if len(jobs) == 1 else (lambda e: None)
        self.cancel = cancel or CancelToken()
        # an abort waits for one layer of a forward pass, not for a whole role call or preview decode
        install_checkpoints(getattr(backend, "model", None))
        install_checkpoints(getattr(roles, "model", None))
        self.live_previews = live_previews      # previews while a band is drawn, for the GUI (costs VQ decodes)
        self._worker: _PreviewWorker | None = None           # started with the first dear preview
        self._rows = _RowRenderer(backend)
        self.cost = CostRecord()
        gens = [new_generator(r.seed, backend.device) for r in jobs]
        self.gen = gens[0] if len(gens) == 1 else gens
        self.rngs = [random.Random(r.seed) for r in jobs]
        self.rows = backend.info.rows
        self.n = self.req.n                                      # candidates per job
        # fails early on words the model does not know
        self.edits = [r.edit for r in jobs] if jobs[0].edit is not None else None
        # an edit-conditioned model reads each job's source, its redrawn part grey, in every generation row
        self.conditioned = bool(self.edits) and backend.edit_conditioned
        self.prompt_ids = [self._ids(r.prompt) for r in jobs]
        self.prompts = [r.prompt for r in jobs for _ in range(self.n)]     # per candidate
        self.nodes: list[list[dict]] = [[] for _ in jobs]
        # per candidate: the logit of every verdict its path received (a copy inherits its source's), for the final
        # pick of an edit whose verifier is a value head (`_final_keys`)
        self.evidence: list[list[float]] = [[] for _ in range(len(jobs) * self.n)]
        self.features: torch.Tensor | None = None      # (J, F, H) when conditioned, made on first use (timed)
        self.last_row = self.rows          # the row after which nothing is decoded (an edit's last redrawn row)
        if self.edits:
            dev = backend.device
            per_cand = [e for e in self.edits for _ in range(self.n)]
            # per candidate; an edit without cleared codes (read from an older file) has only the source's
            self.contexts = [self._context(c % self.n) if e.cleared is not None else "source"
                             for c, e in enumerate(per_cand)]
            self.forced = torch.tensor([e.codes(x) for e, x in zip(per_cand, self.contexts)], dtype=torch.long,
                                       device=dev)                                           # (J*n, T)
            self.forced_mask = ~torch.tensor([e.redraw for e in per_cand], dtype=torch.bool, device=dev)
            cols = backend.info.cols
            spans = {(e.first // cols, -(-(e.last + 1) // cols)) for e in self.edits}   # redrawn rows per job
            self.first_row = min(a for a, _ in spans)
            self.end_row = max(b for _, b in spans)
            self.end_token = max(e.last for e in self.edits) + 1                  # nothing after it is computed
            if self.req.method == "gridar" and len(spans) > 1:
                # the bands are fractions of the redrawn rows: jobs with other rows would be verified elsewhere
                # than alone
                raise ValueError("GridAR edits in one batch must redraw the same token rows; batch them by span")
            self.last_row = self.end_row

    def run(self) -> SearchResult:
        if len(self.jobs) != 1:
            raise ValueError("run() is for one job; use run_all() for a batch")
        return self.run_all()[0]

    def check_memory(self):
        """The run's memory plan, checked against what the device has free before any work
        (`engine.memory_plan`): a run that cannot fit raises `DoesNotFit` naming its need, the free memory and
        the largest N that fits. Returns the plan (None where it cannot be made)."""
        from .memory_plan import check_search
        return check_search(self)

    def run_all(self) -> list[SearchResult]:
        self.check_memory()
        self.cost.start()
        try:
            with active(self.cancel):
                if self.req.method == "gridar":
                    return self._gridar()
                return self._plain()
        finally:
            self._close_previews()
            self._release_judging()             # a run that ends, fails or is cancelled keeps no judging caches
            self.cost.stop()

    def _close_previews(self) -> None:
        """Stop the preview worker (what waits is dropped, a decode in flight stops at its next layer) and count
        what it decoded."""
        if self._worker is not None:
            self._worker.close()
            self.cost.vq_decodes += self._worker.decoded
            self._worker = None

    def _release_judging(self) -> None:
        """Drop what the roles keep from a verification for a reformulation (Janus roles: the [system, user,
        image] prefix caches, ~0.3 GB per view at Janus-Pro-7B in bf16) once no reformulation will use it."""
        release = getattr(self.roles, "release", None)
        if release is not None:
            release()

    # -- helpers -----------------------------------------------------------------------------------------------
    def _ask(self, question, *args):
        """A decision point: the policy's answer, its time recorded as waiting (not compute); an abort asked
        meanwhile stops here rather than after the next piece of work."""
        t0 = time.perf_counter()
        try:
            answer = question(*args)
        finally:
            self.cost.waiting_seconds += time.perf_counter() - t0
        self.cancel.check()
        return answer

    def _job_slices(self) -> list[slice]:
        return [slice(j * self.n, (j + 1) * self.n) for j in range(len(self.jobs))]

    def _encode_sources(self) -> None:
        """Each job's source, its redrawn part grey, through the understanding encoder once (counted)."""
        b = self.b
        self.features = b.image_features(np.stack(
            [conditioning_image(e.source, e.mask, e.redraw, b.hole_fill) for e in self.edits]))
        self.cost.role("generator", b.info.generator_params).extra_flops += (
            2.0 * b.vision_params * len(self.edits) * b.n_image_features)

    def _ids(self, prompt: str) -> list[int]:
        """A generation row's ids: the prompt's, or the edit-conditioned row around it (`JanusBackend.edit_prompt_ids`)."""
        return self.b.edit_prompt_ids(prompt) if self.conditioned else self.b.prompt_ids(prompt)

    def _features(self, candidates: list[int]) -> torch.Tensor | None:
        """(len, F, H) the conditioning features of the candidates' jobs (None when not conditioned)."""
        if not self.conditioned:
            return None
        if self.features is None:                  # first use, inside run_all's timing
            self._encode_sources()
        return self.features[torch.tensor([c // self.n for c in candidates], device=self.features.device)]

    def _context(self, i: int) -> str:
        """The edit context of a job's candidate i: in 'mixed', every other candidate (the first: the source's)."""
        if self.req.context != "mixed":
            return self.req.context
        return "cleared" if i % 2 else "source"

    def _prefill_rows(self, pairs: list[tuple[int, str]], k: int = 0) -> DecodeState:
        """One (cond, uncond) row pair per (job, edit context) in `pairs`: the job's prompt rows; for an edit, then
        that context's kept codes before token k (one prefill, not token steps) and the job's conditioning."""
        ids = [self.prompt_ids[j] for j, _ in pairs]
        prefix = feats = None
        if self.edits:
            prefix = torch.tensor([self.edits[j].codes(x)[:k] for j, x in pairs], dtype=torch.long)
            feats = self._features([j * self.n for j, _ in pairs])
        return prefill(self.b, {"cond": ids, "uncond": [self.b.uncond_ids(i) for i in ids]}, prefix, self.cost,
                       feats)

    def _start(self) -> DecodeState:
        """Each job's prompt rows prefilled once (an edit: once per context in use, up to the first redrawn token
        of any job), then branched into its candidates (job-major)."""
        if not self.edits and len(self.jobs) == 1:
            return start(self.b, self.req.prompt, self.n, self.cost)
        used = list(dict.fromkeys(self.contexts[:self.n])) if self.edits else [""]
        pairs = [(j, x) for j in range(len(self.jobs)) for x in used]
        state = self._prefill_rows(pairs, min(e.first for e in self.edits) if self.edits else 0)
        return select(state, [pairs.index((c // self.n, self.contexts[c] if self.edits else "")) for c in range(
            len(self.jobs) * self.n)])

    def _decode(self, state: DecodeState, stage: int, to_row: int) -> DecodeState:
        start_row = state.tokens.shape[1] // self.b.info.cols
        total_bands = len(self._bands()) if self.req.method == "gridar" else 1
        self.emit(ev.BandStarted(stage, start_row, to_row, state.n, total_bands))
        total = to_row * self.b.info.cols

        def progress(st: DecodeState) -> None:
            k = st.tokens.shape[1]
            if k % self.b.info.cols == 0:           # one event per token row keeps the GUI queue short
                self.emit(ev.TokenProgress(stage, k, total))
                if self.live_previews and k < total:
                    self.cancel.check()
                    self._row_preview(stage, st.tokens)
        if self.edits and to_row == self.end_row:
            state = self._decode_rest(state, progress)
            progress(state)
        else:
            state = decode_to_row(self.b, state, to_row, self.req.params, generator=self.gen, cancel=self.cancel,
                                  cost=self.cost, on_token=progress, **self._forced_kw())
        if self._worker is not None:
            self._worker.drop()
        return state

    def _row_preview(self, stage: int, tokens: torch.Tensor) -> None:
        """A live preview after a token row: decoded inline when cheap (`INLINE_PREVIEW_MACS`), else asked of the
        preview worker, and whatever it has finished for this band emitted now (a band's previews arrive in order,
        rows rising; one finished after its band ended is dropped)."""
        rows = tokens.shape[1] // self.b.info.cols
        if preview_macs(self.b, tokens.shape[0]) <= INLINE_PREVIEW_MACS:
            self.emit(ev.RowPreview(stage, rows, self._previews(tokens)))
            return
        if self._worker is None:
            _ = self.b.blank_token                  # computed once here, not raced for by two threads
            self._worker = _PreviewWorker(self.b)
        done = self._worker.take(stage)
        if done is not None:
            self.emit(ev.RowPreview(stage, done[0], done[1]))
        drawn = tokens.clone()                      # the decode continues meanwhile: a snapshot of the rows drawn
        if self.edits:
            forced, mask = self.forced, self.forced_mask
            self._worker.submit(stage, rows, lambda: self._partial_edit_previews(drawn, forced, mask))
        else:
            self._worker.submit(stage, rows, lambda: self._rows.render(drawn, rows))

    def _forced_kw(self) -> dict:
        """`decode`'s teacher-forcing arguments: an edit's kept codes per candidate; none for a generation."""
        return {"forced": self.forced, "forced_mask": self.forced_mask} if self.edits else {}

    def _decode_rest(self, state: DecodeState, on_token=None) -> DecodeState:
        """Every token still to draw, the last one not fed back: a generation's to its last row; an edit's up to
        its last redrawn token, then completed with the candidate's kept codes (nothing after it is computed)."""
        end = self.end_token if self.edits else self.rows * self.b.info.cols
        state = decode(self.b, state, end - state.tokens.shape[1], self.req.params, generator=self.gen,
                       cancel=self.cancel, cost=self.cost, on_token=on_token, feed_last=False, **self._forced_kw())
        return replace(state, tokens=self._with_source(state.tokens))

    def _with_source(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, k) drawn tokens completed after position k with each candidate's kept codes (its edit context's);
        unchanged when not an edit."""
        if not self.edits or tokens.shape[1] >= self.forced.shape[1]:
            return tokens
        return torch.cat([tokens, self.forced[:, tokens.shape[1]:].to(tokens.device)], 1)

    def _previews(self, tokens: torch.Tensor, final: bool = False) -> np.ndarray:
        """Decodes of (partial) candidates. An edit's positions not drawn yet show the kept codes (of the
        candidate's context) outside the mask and an empty canvas inside it; a finished (or stopped) edit is
        completed with the kept codes (paste-back then restores the source's pixels outside the mask)."""
        self.cost.vq_decodes += tokens.shape[0]
        if not self.edits:
            return self.b.decode_tokens(tokens)
        if final or tokens.shape[1] >= self.forced.shape[1]:
            return self.b.decode_tokens(self._with_source(tokens))
        return self._partial_edit_previews(tokens)

    def _partial_edit_previews(self, tokens: torch.Tensor, forced: torch.Tensor | None = None,
                               forced_mask: torch.Tensor | None = None) -> np.ndarray:
        """Each candidate's kept codes outside the mask, the generation rule inside it, and every redrawn patch not
        drawn yet painted as the empty canvas (`JanusBackend.decode_partial_edit`). `forced` / `forced_mask`: the
        candidates' kept codes and mask as they were when a background preview was asked for (default: now)."""
        forced = self.forced if forced is None else forced
        forced_mask = self.forced_mask if forced_mask is None else forced_mask
        k = tokens.shape[1]
        hidden = ~forced_mask                                               # (n, total): redrawn, not drawn yet
        hidden[:, :k] = False
        full = tokens if k >= forced.shape[1] else torch.cat([tokens, forced[:, k:].to(tokens.device)], 1)
        return self.b.decode_partial_edit(full, hidden, k)

    def _score(self, images: np.ndarray) -> list[float]:
        if self.roles is None or self.n == 1:
            return [1.0] * len(images)
        return [float(s) for s in self.roles.score(self.prompts, list(images), self.cost)]

    def _final_images(self, tokens: torch.Tensor) -> np.ndarray:
        images = self._previews(tokens, final=True)
        if self.edits:      # nothing outside the mask changes: the source's own pixels, seam feathered inside
            for j, s in enumerate(self._job_slices()):
                e = self.edits[j]
                images[s] = paste_back(e.source, images[s], e.mask, e.feather)
        return images

    def _finish(self, state: DecodeState, stopped: bool) -> list[SearchResult]:
        if stopped:                                   # an edit stopped early: keep the source below the band
            state = replace(state, tokens=self._with_source(state.tokens))
        self.cancel.check()
        images = self._final_images(state.tokens)
        self.cancel.check()
        scores = self._score(images) if not stopped else [0.0] * len(images)
        tokens = state.tokens.cpu()
        w = self.final_weight()
        keys = self._final_keys(scores, w)
        out = []
        for j, s in enumerate(self._job_slices()):
            sc, key = scores[s], keys[s]
            ranking = sorted(range(len(sc)), key=lambda i: (-key[i], i))
            self.emit(ev.FinalRanking(tuple(sc), tuple(ranking), images[s].copy(), w))
            selection = None if w == 0.0 else {
                "rule": "logit(score) + weight * mean logit of the path's verdicts", "weight": w,
                "keys": [round(k, 4) for k in key], "verdict_logits": [[round(v, 4) for v in e]
                                                                       for e in self.evidence[s]]}
            out.append(SearchResult(self.jobs[j], tokens[s], images[s], sc, ranking, self.nodes[j], self.cost,
                                    stopped, self.contexts[s] if self.edits else None, selection))
        self.emit(ev.CostUpdate(self.cost.to_json()))
        return out

    def final_weight(self) -> float:
        """The weight of the path's verdicts in the final pick: the value head's (`training.edit_value`) for a
        GridAR edit whose roles have one, else 0 (the scorer alone; a verdict of possible/impossible says nothing
        about which possible candidate is best)."""
        if (not self.edits or self.req.method != "gridar" or self.roles is None or not self.req.value_pick
                or self.req.verify_by != "view"):     # a rollout's verdict is about another image than the final one
            return 0.0
        return float(getattr(self.roles, "final_value_weight_edit", 0.0) or 0.0)

    def _final_keys(self, scores: list[float], w: float) -> list[float]:
        """The final ranking's key per candidate: the scorer's P, or with a final weight w (`final_weight`),
        logit(score) + w * mean(logits of the verdicts along the candidate's path)."""
        if w == 0.0:
            return list(scores)
        return [_logit(sc) + w * (sum(ev_) / len(ev_) if ev_ else 0.0) for sc, ev_ in zip(scores, self.evidence)]

    def _layout_ids(self, texts: list[str], candidates: list[int]) -> list[list[int]]:
        out = []
        for t, c in zip(texts, candidates):
            try:
                out.append(self._ids(t))
            except PromptNotUnderstood:
                out.append(self.prompt_ids[c // self.n])   # the model cannot read it: keep the original conditioning
        return out

    # -- Best-of-N and single ----------------------------------------------------------------------------------
    def _stage_rows(self) -> list[int]:
        """Token row reached after each stage: fractions of the image, or of the redrawn span for an edit (stages
        that would not advance are dropped)."""
        if not self.edits:
            return [max(1, round(st.until * self.rows)) for st in self.req.schedule]
        span = self.end_row - self.first_row
        return [self.end_row if st.until >= 1.0 else self.first_row + max(1, round(st.until * span))
                for st in self.req.schedule]

    def _bands(self) -> list[tuple[int, Stage, int]]:
        """(schedule index, stage, token row reached) of the stages GridAR draws: a stage that would not add a row
        (a short edit span) is skipped, and the band reaching the last row is the last."""
        out, done_row = [], 0
        for i, (stage, to_row) in enumerate(zip(self.req.schedule, self._stage_rows())):
            if to_row <= done_row or (to_row >= self.last_row and stage.until < 1.0):
                continue
            out.append((i, stage, to_row))
            done_row = to_row
            if to_row == self.last_row:
                break
        return out

    def _plain(self) -> list[SearchResult]:
        state = self._decode(self._start(), 0, self.last_row)
        return self._finish(state, False)

    # -- GridAR ------------------------------------------------------------------------------------------------
    def _gridar(self) -> list[SearchResult]:
        req = self.req
        state = self._start()
        self.texts = {"cond": list(self.prompts)}       # what each conditioning stream row reads, per candidate
        for i, stage, to_row in self._bands():
            state = self._decode(state, i, to_row)
            if to_row == self.last_row:
                break
            nodes = [{"stage": i, "rows": to_row} for _ in self.jobs]
            previews = self._previews(state.tokens)
            self.emit(ev.BandCandidates(i, to_row, previews.copy()))
            views = self._views(previews, to_row)
            if stage.verify and req.prune and self.roles is not None:
                self.cancel.check()
                state, previews = self._prune(state, previews, views, i, nodes)
                views = self._views(previews, to_row)         # pruning copies within a job: same masks
            self.emit(ev.BandAccepted(i, to_row, previews.copy()))
            if self.live_previews and not self.edits:
                self._rows.base(state.tokens, previews)     # the next band's previews start below these rows
            if stage.reformulate and req.reformulate and self.roles is not None:
                self.cancel.check()
                state = self._relayout(state, views, i, nodes)
            self._release_judging()                 # the next band's verdicts compute their own views
            for j, node in enumerate(nodes):
                self.nodes[j].append(node)
            if self.cancel.stopping_after_band:
                return self._finish(state, True)
        return self._finish(state, False)

    def _views(self, previews: np.ndarray, to_row: int) -> list[PartialView]:
        """The candidates as the roles see them after `to_row` token rows; an edit's views also mark the pixels of
        its redrawn tokens not drawn yet."""
        if not self.edits:
            return [PartialView(img, to_row, self.rows) for img in previews]
        hidden = ~self.forced_mask.cpu().numpy()                                # (n, rows*cols): redrawn
        hidden[:, :to_row * self.b.info.cols] = False                           # ... and not drawn yet
        undrawn = pixel_mask(hidden, self.rows, self.b.info.cols, previews.shape[1])        # (n, H, W)
        return [PartialView(img, to_row, self.rows, u) for img, u in zip(previews, undrawn)]

    def _rollout_verdicts(self, state: DecodeState, stage: int) -> tuple[list[float], np.ndarray]:
        """The scorer's P(yes) on one completion of every candidate. The completion decodes a fork of the state to
        the end (an edit: to its last redrawn token, pasted back) and is thrown away; its draws come from the jobs'
        generators, its compute is counted (generator decode, scorer calls), and while it runs the KV cache is held
        twice (the fork is a copy). Cancel takes effect inside it. Returns (P per candidate, the completions
        (n, H, W, 3) for the artist's review)."""
        self.emit(ev.Completing(stage, state.tokens.shape[1] // self.b.info.cols, state.n))
        images = self._final_images(self._decode_rest(fork(state)).tokens)
        return self._score(images), images

    def _prune(self, state: DecodeState, previews: np.ndarray, views: list[PartialView], i: int,
               nodes: list[dict]) -> tuple[DecodeState, np.ndarray]:
        rollout = self.req.verify_by == "rollout"
        completions = None
        if rollout:
            p, completions = self._rollout_verdicts(state, i)
        else:
            p = [float(x) for x in self.roles.verify(self.prompts, views, self.cost)]
        self.emit(ev.Verdicts(i, tuple(p)))
        # the request's threshold, else the verifier's own for this band (recorded in the tree)
        threshold = self.req.threshold if self.req.threshold is not None else ROLLOUT_THRESHOLD if rollout else (
            self._view_threshold(views[0].rows))
        sources: list[int] = []
        redrawn: list[int] = []
        for j, s in enumerate(self._job_slices()):
            kinds = self.contexts[s] if self.edits and self.req.context == "mixed" else None
            proposed = propose_pruning(p[s], threshold, self.rngs[j], kinds, self.req.refill)
            review = VerdictReview(i, tuple(p[s]), proposed, previews[s], threshold,
                                   tuple(kinds) if kinds is not None else None, self.req.verify_by,
                                   None if completions is None else completions[s])
            decision = settle(self._ask(self.policy.review_verdicts, review), self.rngs[j], kinds)
            self.emit(ev.Replacements(i, tuple(decision.keep), tuple(decision.sources),
                                      tuple(decision.all_rejected_groups), tuple(decision.redraw)))
            nodes[j].update(p_possible=p[s], verify_by=self.req.verify_by, keep=decision.keep,
                            sources=decision.sources,
                            all_rejected_groups=decision.all_rejected_groups, threshold=threshold,
                            overridden=(decision.keep != proposed.keep or decision.sources != proposed.sources
                                        or decision.redraw != proposed.redraw),
                            **({"redraw": decision.redraw} if decision.redraw else {}))
            sources += [s.start + x for x in decision.sources]
            redrawn += [s.start + x for x, r in enumerate(decision.redraw) if r]
            for x in range(len(decision.keep)):     # an artist who kept a rejected slot overrules its verdict
                if not (decision.keep[x] and not proposed.keep[x]):
                    self.evidence[s.start + x].append(_logit(p[s.start + x]))
        self.evidence = [list(self.evidence[x]) for x in sources]
        if sources != list(range(state.n)):
            state = select(state, sources)
            previews = previews[sources]
            self.texts = {k: [v[x] for x in sources] for k, v in self.texts.items()}
            if self.edits:                 # a copy continues its source's context
                self.forced, self.forced_mask = self.forced[sources], self.forced_mask[sources]
                self.contexts = [self.contexts[x] for x in sources]
        if redrawn:
            state = self._redraw(state, redrawn)
            previews = self._previews(state.tokens)
        return state, previews

    def _view_threshold(self, rows: int) -> float:
        """The threshold for verdicts read off partial views: the verifier's own for this band (`pruning_threshold`);
        with refill "redraw", for an edit whose verifier is a value
        head, the chance a fresh draw ends right (the head's own base rate): a slot is redrawn when a fresh draw is
        expected to end right more often than the candidate it replaces."""
        t = pruning_threshold(self.roles, self.edits is not None, rows)
        if self.req.refill == "redraw" and self.edits:
            t = float(getattr(self.roles, "fresh_success_edit", None) or t)
        return t

    def _redraw(self, state: DecodeState, slots: list[int]) -> DecodeState:
        """Fresh draws in `slots`: each job's prompt rows prefilled again (an edit: with the slot's kept codes
        before its first redrawn token, in its own context) and decoded to this band from the job's generator;
        they read the job's prompt as typed (a layout stream gets a copy of the cond row) and carry no verdicts.
        Counted like any prefill and decode."""
        to = state.tokens.shape[1]
        parts, order = [], []
        gens = self.gen if isinstance(self.gen, list) else [self.gen]
        for j in range(len(self.jobs)):
            mine = [c for c in slots if c // self.n == j]
            if not mine:
                continue
            # one prefill per context among the job's redrawn slots, branched to the slots (as `_start` does)
            pairs = list(dict.fromkeys((j, self.contexts[c] if self.edits else "") for c in mine))
            fresh = self._prefill_rows(pairs, self.edits[j].first if self.edits else 0)
            fresh = select(fresh, [pairs.index((j, self.contexts[c] if self.edits else "")) for c in mine])
            kw = {"forced": self.forced[mine], "forced_mask": self.forced_mask[mine]} if self.edits else {}
            fresh = decode(self.b, fresh, to - fresh.tokens.shape[1], self.req.params, generator=gens[j],
                           cancel=self.cancel, cost=self.cost, **kw)
            if "layout" in state.streams:
                fresh = merge_streams(fresh, copy_stream(fresh, "cond", list(range(len(mine))), "layout"))
            parts.append(order_streams(fresh, state.streams))     # prompt replacement reorders the streams
            order += mine
        joined = state
        for part in parts:
            joined = concat_candidates(joined, part)
        joined = select(joined, [state.n + order.index(c) if c in order else c for c in range(state.n)])
        for c in slots:
            self.evidence[c] = []
            for k in self.texts:
                self.texts[k][c] = self.prompts[c]
        return joined

    @staticmethod
    def _anchors(state: DecodeState) -> list[bytes]:
        """Each candidate's drawn tokens as a hashable key (copies left by pruning have equal keys)."""
        return [row.tobytes() for row in state.tokens.cpu().numpy()]

    def _relayout(self, state: DecodeState, views: list[PartialView], i: int, nodes: list[dict]) -> DecodeState:
        # Copies left by pruning show the same anchor, and greedy reformulation of the same view is the same text:
        # ask once per distinct (job, edit context, anchor).
        keys = [(c // self.n, self.contexts[c] if self.edits else "", a) for c, a in enumerate(self._anchors(state))]
        unique = list(dict.fromkeys(keys))
        first = [keys.index(k) for k in unique]
        asked = self.roles.reformulate([self.prompts[c] for c in first], [views[c] for c in first], self.cost)
        proposals = [validate_reformulation(self.prompts[c], asked[unique.index(k)]) for c, k in enumerate(keys)]
        accepted: list[str] = []
        for j, s in enumerate(self._job_slices()):
            prompt = self.jobs[j].prompt
            self.emit(ev.LayoutProposals(i, tuple(proposals[s])))
            answer = self._ask(self.policy.review_layouts, i, proposals[s])
            mine = [validate_reformulation(prompt, t) for t in answer]
            self.emit(ev.LayoutsAccepted(i, tuple(mine)))
            nodes[j].update(layouts=mine, proposed_layouts=proposals[s])
            accepted += mine
        # Every stage reformulates from the original prompt; the new texts replace the layout stream (three-way) or
        # the cond stream (prompt replacement).
        if self.req.strategy == "three-way":
            if all(a == p.strip() for a, p in zip(accepted, self.prompts)):
                self.texts.pop("layout", None)       # nothing new: 3-way would equal 2-way, skip the rows
                return drop_streams(state, ["layout"]) if "layout" in state.streams else state
            return self._restream(state, "layout", accepted, nodes)
        return self._restream(state, "cond", accepted, nodes)

    def _restream(self, state: DecodeState, name: str, texts: list[str], nodes: list[dict]) -> DecodeState:
        """Stream `name` conditioned on texts[c] for candidate c, prefilling (text, anchor) only where no carried row
        already holds exactly that conditioning."""
        parts: list[DecodeState] = []
        order: list[int] = []                        # candidate index of each row of the joined parts
        reuse: dict[str, list[int]] = {}
        fresh: list[int] = []
        for c, t in enumerate(texts):
            src = next((s for s in ([name] + [x for x in self.texts if x != name])
                        if s in state.streams and self.texts[s][c] == t), None)
            (reuse.setdefault(src, []) if src else fresh).append(c)
        for src, cands in reuse.items():
            parts.append(copy_stream(state, src, cands, name))
            order += cands
        anchors = self._anchors(state)
        # a conditioned row also reads its job's source: rows of different jobs are never shared
        keys = [(texts[c], anchors[c], c // self.n if self.conditioned else 0) for c in fresh]
        unique = list(dict.fromkeys(keys))
        if fresh:
            first = [fresh[keys.index(k)] for k in unique]
            new = prefill(self.b, {name: self._layout_ids([texts[c] for c in first], first)}, state.tokens[first],
                          self.cost, self._features(first))
            parts.append(select(new, [unique.index(k) for k in keys]) if len(unique) < len(fresh) else new)
            order += fresh
        for j, s in enumerate(self._job_slices()):
            mine = [k for c, k in zip(fresh, keys) if s.start <= c < s.stop]
            nodes[j].setdefault("prefilled", []).append(
                {"stream": name, "rows": len(set(mine)), "reused": self.n - len(mine)})
        joined = parts[0]
        for p in parts[1:]:
            joined = concat_candidates(joined, p)
        joined = select(joined, [order.index(c) for c in range(len(texts))])
        if name in state.streams:
            state = drop_streams(state, [name])
        self.texts[name] = list(texts)
        return merge_streams(state, joined)
