"""GridAR's settings per task, where the CLI and the studio start (no torch: the CLI's parser reads them).

docs/benchmarks.md and docs/editing.md measure them. A generation verifies partial views and reformulates through three-way guidance.
An edit reformulates by prompt replacement, as the paper did, but reads its verdicts off one completion of each
candidate (`SearchRequest.verify_by="rollout"`) and redraws a rejected candidate from the prompt rows instead of
copying a survivor (`refill="redraw"`): on the edit benchmark that is the one GridAR variant above Best-of-N 4
(+0.040 +- 0.012 over 1,200 pairs, `benchmarks/edit_quality.py`), at 2.4 times its image tokens; the paper's recipe
(partial views, copies) tied Best-of-N 4 there. Generations keep the paper's recipe, which their benchmark measures.
"""
from __future__ import annotations

# The precision choices (`--dtype`, the studio's control), in menu order, each with what it means; what they
# resolve to is `backend.resolve_precision` (benchmarks/cpu_precision.py measures them on a CPU).
DTYPE_CHOICES: tuple[tuple[str, str], ...] = (
    ("auto", "bfloat16 on a CUDA GPU, float16 on Apple MPS; on a CPU float32, or for a large model on a CPU with "
             "fast bfloat16 a bfloat16 language model (image decoder in float32)"),
    ("float32", "full precision everywhere: the slowest and largest, and what the demo model's numbers use"),
    ("bfloat16", "half the memory and faster decoding; on a CPU the image decoder and vision encoder stay float32"),
    ("float16", "half the memory, for GPUs without bfloat16; on a CPU the image decoder and vision encoder stay "
                "float32"),
)

# Short names accepted for the dtype choices above.
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def dtype_choice(text: str) -> str | None:
    """A dtype as typed (any case, an alias) -> its `DTYPE_CHOICES` name; None when it is not one."""
    name = DTYPE_ALIASES.get(text.strip().lower(), text.strip().lower())
    return name if name in {c for c, _ in DTYPE_CHOICES} else None


# GridAR draws, verifies and refills candidates in groups of this many (the paper's N = 4 per group).
GROUP = 4

VERIFY_BY = ("view", "rollout")

# What replaces a rejected candidate: a copy of a survivor (the paper), or a fresh draw (`SearchRequest.refill`).
REFILL = ("copy", "redraw")

# Verification by rollout: the verdict is the scorer's P(yes) on one completion of the candidate, so the scorer's
# own even odds are the natural line: reject a candidate whose completion the scorer thinks fails.
ROLLOUT_THRESHOLD = 0.5

GRIDAR_DEFAULTS: dict[str, dict] = {
    "generate": {"strategy": "three-way", "verify_by": "view", "reformulate": True, "refill": "copy"},
    "edit": {"strategy": "replace", "verify_by": "rollout", "reformulate": True, "refill": "redraw"},
}
