"""Events a search emits, in order, for the GUI, the CLI and the tests. Plain dataclasses, safe to pass to another
thread (arrays are copies)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class BandStarted:
    stage: int
    from_row: int
    to_row: int
    n: int
    total: int = 0            # bands this run draws (K, for "band k of K"); 0 when unknown


@dataclass(frozen=True)
class TokenProgress:
    stage: int
    tokens_done: int          # tokens per candidate drawn so far
    tokens_total: int


@dataclass(frozen=True)
class RowPreview:
    """Live previews while a band is drawn: every candidate after a completed token row. Every row for a model whose
    decode is cheap; at real size (384 px) on a budget, so rows may be skipped (`engine.search._PreviewWorker`).
    Within a band they arrive in order, rows rising, before the band's `BandCandidates`; rows not drawn yet show
    the empty canvas."""
    stage: int
    rows: int
    previews: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class BandCandidates:
    """Every candidate after a band, as partial previews (uint8 (n, H, W, 3)) with rows drawn so far."""
    stage: int
    rows: int
    previews: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Completing:
    """Verdicts from one completion: every candidate is being completed once (from token row `rows`) so the scorer
    can read how it ends."""
    stage: int
    rows: int
    n: int


@dataclass(frozen=True)
class Verdicts:
    stage: int
    p_possible: tuple[float, ...]


@dataclass(frozen=True)
class Replacements:
    """After pruning: slot i continues candidate sources[i]; keep[i] says whether slot i survived itself; redraw[i]
    (empty: none) that rejected slot i draws its bands again instead."""
    stage: int
    keep: tuple[bool, ...]
    sources: tuple[int, ...]
    all_rejected_groups: tuple[int, ...] = ()
    redraw: tuple[bool, ...] = ()


@dataclass(frozen=True)
class LayoutProposals:
    stage: int
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class LayoutsAccepted:
    stage: int
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class BandAccepted:
    """The band is final for every live candidate; previews show them after pruning and refilling."""
    stage: int
    rows: int
    previews: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class FinalRanking:
    scores: tuple[float, ...]
    ranking: tuple[int, ...]  # candidate indices, best first
    images: np.ndarray = field(repr=False)
    value_weight: float = 0.0  # > 0: ranked by logit(score) + value_weight * the path's mean verdict logit


@dataclass(frozen=True)
class CostUpdate:
    cost: dict
