"""GridAR's settings per task, where the CLI and the studio start (no torch: the CLI's parser reads them).

The README's tables measure them: a generation verifies partial views and reformulates through three-way guidance;
an edit verifies partial views too and reformulates by prompt replacement, as the paper did. Verdicts read off one
completion of each candidate (`SearchRequest.verify_by="rollout"`) are an option: on the edit benchmark they tied
this default (and Best-of-N 4) at more wall time, with or without reformulation (`benchmarks/edit_quality.py`).
Rejected candidates are refilled with copies of survivors, as in the paper; fresh redraws (`refill="redraw"`) did no
better on the edit benchmark, at more compute.
"""
from __future__ import annotations

VERIFY_BY = ("view", "rollout")

# What replaces a rejected candidate: a copy of a survivor (the paper), or a fresh draw (`SearchRequest.refill`).
REFILL = ("copy", "redraw")

# Verification by rollout: the verdict is the scorer's P(yes) on one completion of the candidate, so the scorer's
# own even odds are the natural line: reject a candidate whose completion the scorer thinks fails.
ROLLOUT_THRESHOLD = 0.5

GRIDAR_DEFAULTS: dict[str, dict] = {
    "generate": {"strategy": "three-way", "verify_by": "view", "reformulate": True, "refill": "copy"},
    "edit": {"strategy": "replace", "verify_by": "view", "reformulate": True, "refill": "copy"},
}
