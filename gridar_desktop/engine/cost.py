"""The cost record: what a generation spent, per model role, counted by the code that spends it.

Forward token-rows count every real position of every forward pass (prefill and decode). Left padding, which only
exists because rows of different lengths share a batch, is not counted: a job costs the same alone or batched with
other jobs (the benchmark batches prompts). FLOPs are estimated as 2 x parameters x token-rows per role (weights only; attention over the context and
the VQ decoder are not in the estimate, and VQ decodes are counted separately).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

ROLES = ("generator", "verifier", "scorer", "reformulator")


@dataclass
class RoleCost:
    params: int = 0
    prefill_token_rows: int = 0
    decode_token_rows: int = 0
    calls: int = 0
    extra_flops: float = 0.0        # encoders outside the token rows (a VLM's vision tower), counted by their code

    @property
    def token_rows(self) -> int:
        return self.prefill_token_rows + self.decode_token_rows

    @property
    def flops(self) -> float:
        return 2.0 * self.params * self.token_rows + self.extra_flops


@dataclass
class CostRecord:
    image_tokens: int = 0                 # image tokens sampled (forced tokens of an edit are not counted)
    vq_decodes: int = 0                   # images (full or partial) run through the VQ decoder
    wall_seconds: float = 0.0
    waiting_seconds: float = 0.0          # part of wall_seconds spent waiting for a decision (the artist's review)
    roles: dict[str, RoleCost] = field(default_factory=lambda: {r: RoleCost() for r in ROLES})
    _t0: float | None = field(default=None, repr=False)

    def role(self, name: str, params: int | None = None) -> RoleCost:
        rc = self.roles.setdefault(name, RoleCost())
        if params is not None:
            rc.params = params
        return rc

    def add_prefill(self, role: str, positions: int, params: int) -> None:
        """`positions`: real (unpadded) token positions run through the model, summed over the batch's rows."""
        self.role(role, params).prefill_token_rows += positions

    def add_decode(self, role: str, rows: int, params: int) -> None:
        self.role(role, params).decode_token_rows += rows

    def start(self) -> "CostRecord":
        self._t0 = time.perf_counter()
        return self

    def stop(self) -> None:
        if self._t0 is not None:
            self.wall_seconds += time.perf_counter() - self._t0
            self._t0 = None

    @property
    def compute_seconds(self) -> float:
        """Wall time less the time decisions waited for the artist: what the run itself took."""
        return max(0.0, self.wall_seconds - self.waiting_seconds)

    @property
    def total_flops(self) -> float:
        return sum(r.flops for r in self.roles.values())

    def merge(self, other: "CostRecord") -> None:
        self.image_tokens += other.image_tokens
        self.vq_decodes += other.vq_decodes
        self.wall_seconds += other.wall_seconds
        self.waiting_seconds += other.waiting_seconds
        for name, rc in other.roles.items():
            mine = self.role(name, rc.params or None)
            mine.prefill_token_rows += rc.prefill_token_rows
            mine.decode_token_rows += rc.decode_token_rows
            mine.calls += rc.calls
            mine.extra_flops += rc.extra_flops

    def to_json(self) -> dict:
        roles = {n: {"params": r.params, "prefill_token_rows": r.prefill_token_rows,
                     "decode_token_rows": r.decode_token_rows, "token_rows": r.token_rows, "calls": r.calls,
                     "flops": r.flops} for n, r in self.roles.items()}
        return {"image_tokens": self.image_tokens, "vq_decodes": self.vq_decodes,
                "wall_seconds": round(self.wall_seconds, 4), "waiting_seconds": round(self.waiting_seconds, 4),
                "roles": roles, "total_flops": self.total_flops}
