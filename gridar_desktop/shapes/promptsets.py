"""Seeded prompt sets by category, for training data and benchmark JSONL files.

Categories:
- single:   one group of one or two objects              "two red circles"
- counting: one group of three or four, or two groups of 2-4 each (at most 6 objects)
- pair:     two groups of one or two objects              "a red circle and two green triangles"
- relation: two single objects in a spatial relation      "a red circle above a blue square"
- triple:   three groups, at most 6 objects               "a red circle, two blue squares and a yellow triangle"
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from ..io.atomic import atomic_write_text
from .grammar import COLOURS, MAX_OBJECTS, SHAPES, Group, Relation, SceneSpec, format_prompt

CATEGORIES: tuple[str, ...] = ("single", "counting", "pair", "relation", "triple")


def _distinct_keys(rng: random.Random, n: int) -> list[tuple[str, str]]:
    keys = [(c, s) for c in COLOURS for s in SHAPES]
    return rng.sample(keys, n)


def sample_spec(category: str, rng: random.Random) -> SceneSpec:
    """A random base-grammar spec of the given category."""
    if category == "single":
        (c, s), = _distinct_keys(rng, 1)
        return SceneSpec((Group(rng.choice((1, 2)), c, s),))
    if category == "counting":
        if rng.random() < 0.5:
            (c, s), = _distinct_keys(rng, 1)
            return SceneSpec((Group(rng.choice((3, 4)), c, s),))
        counts = rng.choice([(a, b) for a in (2, 3, 4) for b in (2, 3, 4) if a + b <= MAX_OBJECTS and max(a, b) >= 3])
        return SceneSpec(tuple(Group(n, c, s) for n, (c, s) in zip(counts, _distinct_keys(rng, 2))))
    if category == "pair":
        return SceneSpec(tuple(Group(rng.choice((1, 2)), c, s) for c, s in _distinct_keys(rng, 2)))
    if category == "relation":
        groups = tuple(Group(1, c, s) for c, s in _distinct_keys(rng, 2))
        return SceneSpec(groups, Relation(0, rng.choice(("left of", "right of", "above", "below")), 1))
    if category == "triple":
        counts = rng.choice([(a, b, c) for a in (1, 2) for b in (1, 2) for c in (1, 2)])
        return SceneSpec(tuple(Group(n, c, s) for n, (c, s) in zip(counts, _distinct_keys(rng, 3))))
    raise ValueError(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)}")


def category_of(spec: SceneSpec) -> str:
    """The category a base-grammar spec belongs to (the inverse of `sample_spec`)."""
    if spec.relation is not None:
        return "relation"
    counts = [g.count for g in spec.groups]
    if len(counts) == 3:
        return "triple"
    if max(counts) >= 3:
        return "counting"
    return "single" if len(counts) == 1 else "pair"


def make_prompt_set(n: int, seed: int, categories: tuple[str, ...] = CATEGORIES) -> list[dict]:
    """`n` prompts spread evenly over the categories, deterministic for a seed. Prompts are distinct while a
    category has unused ones (the single category has only 36); after that a category repeats prompts, which the
    benchmark pairs with different seeds."""
    rng = random.Random(seed)
    out: list[dict] = []
    seen: set[str] = set()
    for i in range(n):
        cat = categories[i % len(categories)]
        for _ in range(50):
            prompt = format_prompt(sample_spec(cat, rng))
            if prompt not in seen:
                break
        seen.add(prompt)
        out.append({"prompt": prompt, "category": cat})
    return out


def write_jsonl(rows: list[dict], path: str | Path) -> None:
    """Atomically: a full disk or a kill mid-write leaves the previous file whole."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not a JSON line ({e.msg})") from None
    return rows
