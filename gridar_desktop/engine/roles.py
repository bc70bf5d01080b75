"""The three judgements GridAR asks of a vision-language model, as one interface batched over candidates.

- verify:      partial views (top rows drawn, the rest not yet) -> P(possible) per candidate. Rejection only.
- score:       finished images -> P("yes, it matches the prompt") per candidate (the final selection).
- reformulate: partial views -> the original prompt verbatim plus a short layout clause, per candidate.

`prompt` is one prompt for every item, or one prompt per item (a batch of jobs asks in one call).
Implementations count their own cost in the job's `CostRecord` under the roles "verifier", "scorer" and
"reformulator". A probability that cannot be read counts as the lowest score, never the highest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from .cost import CostRecord


@dataclass(frozen=True, eq=False)
class PartialView:
    """A candidate as the verifier sees it: the full-size decode with only `rows` of `total_rows` token rows drawn.
    For an edit, `undrawn` marks the pixels of redrawn tokens not drawn yet (everything else is the source or
    drawn); roles that know edits show the whole canvas with only those pixels hidden."""
    image: np.ndarray          # uint8 (H, W, 3); rows below the drawn band show an empty canvas
    rows: int
    total_rows: int
    undrawn: np.ndarray | None = None      # bool (H, W), edits only

    @property
    def visible_pixels(self) -> int:
        return self.image.shape[0] * self.rows // self.total_rows


Prompts = str | Sequence[str]


def per_item(prompt: Prompts, n: int) -> list[str]:
    """One prompt per item."""
    if isinstance(prompt, str):
        return [prompt] * n
    if len(prompt) != n:
        raise ValueError(f"{len(prompt)} prompts for {n} items")
    return list(prompt)


class Roles(Protocol):
    def verify(self, prompt: Prompts, views: list[PartialView], cost: CostRecord) -> list[float]: ...

    def score(self, prompt: Prompts, images: list[np.ndarray], cost: CostRecord) -> list[float]: ...

    def reformulate(self, prompt: Prompts, views: list[PartialView], cost: CostRecord) -> list[str]: ...


def validate_reformulation(original: str, proposal: str) -> str:
    """A reformulation must start with the original prompt verbatim and may only append a clause after a comma;
    anything else falls back to the original prompt."""
    orig = original.strip().rstrip(".")
    prop = " ".join(proposal.strip().strip('"').split()).rstrip(".")
    if prop == orig:
        return orig
    if prop.startswith(orig) and prop[len(orig):].startswith(","):
        return prop
    return orig


def answer_token_ids(tokenizer, word: str) -> list[int]:
    """Single-token spellings of an answer word ("yes", "Yes", " yes", " Yes") in a tokenizer's vocabulary; their
    probabilities are summed."""
    ids = set()
    for v in (word, word.capitalize(), " " + word, " " + word.capitalize()):
        enc = tokenizer(v, add_special_tokens=False).input_ids
        if len(enc) == 1 and enc[0] != tokenizer.unk_token_id:
            ids.add(enc[0])
    return sorted(ids)
