"""Cheap verdicts: a logistic head on the GENERATOR's own last hidden state at a band's end, in place of the verifier.

Why. The verifier reads each partial view through the understanding path (vision tower + language model): on the
demo model 2.93 GFLOPs per prompt against the generator's 7.81, which is why GridAR 4 costs what Best-of-N 8 costs.
The generator has already computed a hidden state for every candidate at the band's end (the one that predicts its
next image token); a dot product on it costs 2H FLOPs per candidate, nothing next to a generator pass.

What. One head per verified band (keyed by the token rows drawn): P(the finished candidate is strictly correct),
trained by `gridar_desktop.training.cheap_verifier` from the model's own drawings on a prompt stream of its own,
labelled at training time (never by the judge at choice time). Its verdicts go through GridAR's usual
rejection-only pruning at the head's own threshold for the band.

The `Roles` interface hands the verifier partial views, not decode states, so `CheapVerdictSearch` passes the
state's hidden rows to `CheapVerifierRoles` just before each verification. This is a benchmark variant
(`benchmarks/frontier.py --methods cheap-gridar:4`); the app and `gridar generate` do not use it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .cost import CostRecord
from .search import Search


@dataclass
class CheapHead:
    """Per verified band (token rows drawn): weight (H,), bias, and the P below which a candidate is rejected."""
    weights: dict[int, np.ndarray] = field(default_factory=dict)
    biases: dict[int, float] = field(default_factory=dict)
    thresholds: dict[int, float] = field(default_factory=dict)

    def probability(self, rows: int, hidden: np.ndarray) -> np.ndarray:
        """P(ends right) per candidate from (n, H) hidden states; a band without a head keeps everyone (P = 1)."""
        if rows not in self.weights:
            return np.ones(len(hidden))
        z = hidden.astype(np.float64) @ self.weights[rows].astype(np.float64) + self.biases[rows]
        return 1.0 / (1.0 + np.exp(-z))


def save_cheap_head(path: str | Path, head: CheapHead) -> None:
    """One safetensors file: `w_<rows>` and `b_<rows>` per band; the thresholds in its metadata."""
    from safetensors.torch import save

    from ..io.atomic import atomic_write_bytes
    tensors = {}
    for rows, w in head.weights.items():
        tensors[f"w_{rows}"] = torch.tensor(w, dtype=torch.float32)
        tensors[f"b_{rows}"] = torch.tensor([head.biases[rows]], dtype=torch.float32)
    meta = {"thresholds": json.dumps({str(k): v for k, v in head.thresholds.items()})}
    atomic_write_bytes(Path(path), save(tensors, metadata=meta))


def load_cheap_head(path: str | Path) -> CheapHead:
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such cheap-verdict head; train one with "
                         "python -m gridar_desktop.training.cheap_verifier")
    head = CheapHead()
    with safe_open(str(path), framework="pt") as f:
        th = json.loads((f.metadata() or {}).get("thresholds", "{}"))
        for k in f.keys():
            kind, rows = k.split("_")
            t = f.get_tensor(k).numpy()
            if kind == "w":
                head.weights[int(rows)] = t
            else:
                head.biases[int(rows)] = float(t[0])
    head.thresholds = {int(k): float(v) for k, v in th.items()}
    return head


class CheapVerifierRoles:
    """The model's roles with the cheap head as the verifier (scorer and reformulator unchanged). `hidden` is set
    by `CheapVerdictSearch` before each verification: the generator's cond-row hidden states (n, H)."""

    def __init__(self, inner, backend, head: CheapHead) -> None:
        self.inner, self.head = inner, head
        self.hidden: torch.Tensor | None = None
        self.hidden_size = backend.model.config.text_config.hidden_size
        # the head's own thresholds replace the verifier's (they are on another scale: P(ends right))
        self.prune_threshold = min(head.thresholds.values()) if head.thresholds else 0.0
        self.prune_thresholds_by_rows = dict(head.thresholds)
        self.prune_threshold_edit = None

    def verify(self, prompt, views, cost: CostRecord) -> list[float]:
        if self.hidden is None or len(self.hidden) != len(views):
            raise RuntimeError("the cheap verifier reads the generator's state: run it through CheapVerdictSearch")
        rc = cost.role("verifier")
        rc.calls += 1
        rc.extra_flops += 2.0 * self.hidden_size * len(views)          # one dot product per candidate
        p = self.head.probability(views[0].rows, self.hidden.float().cpu().numpy())
        self.hidden = None
        return [float(x) for x in p]

    def score(self, prompt, images, cost):
        return self.inner.score(prompt, images, cost)

    def reformulate(self, prompt, views, cost):
        return self.inner.reformulate(prompt, views, cost)


class CheapVerdictSearch(Search):
    """GridAR whose roles may read the generator's state at each verification (see the module note)."""

    def _prune(self, state, previews, views, i, nodes):
        if isinstance(self.roles, CheapVerifierRoles):
            self.roles.hidden = state.hidden[state.stream_rows("cond")]
        return super()._prune(state, previews, views, i, nodes)
