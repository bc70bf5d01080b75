"""`gridar bench`: run methods over a prompt file and seeds; judge every chosen image; sum the cost records.

The judge only measures here: each method chooses its image with its own scorer before the judge sees it.
"""
from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Callable

import numpy as np

from ..shapes.judge import judge
from .backend import JanusBackend
from .cost import CostRecord
from .roles import Roles
from .search import ONE_VERIFICATION, REFORMULATE_ONCE, Search, SearchRequest


def parse_methods(spec: str) -> list[tuple[str, SearchRequest]]:
    """'single:1,best-of-n:8,gridar:4,gridar-noprune:4' -> [(label, request template)].

    Variants (ablations) of gridar: -noprune (no pruning), -noreform (no reformulation), -replace (prompt
    replacement instead of three-way guidance), -oneverify (verify once, at the half), -reformonce (verify at the
    quarter and the half, reformulate only at the half: the paper's editing recipe), -scorerpick (an edit's final
    pick by the scorer alone, never weighing the value head's verdicts), -rollout (verdicts by the scorer on one
    completion of each candidate, `SearchRequest.verify_by`), -redraw (a rejected candidate is redrawn, not copied,
    `SearchRequest.refill`)."""
    out = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, n = item.partition(":")
        try:
            count = int(n) if n else 1
        except ValueError:
            raise ValueError(f"bad method '{item}': the count after ':' must be a number") from None
        if name in ("single", "best-of-n"):
            req, flags = SearchRequest(prompt="", method=name, n=count), []
        elif name == "gridar" or name.startswith("gridar-"):
            req, flags = SearchRequest(prompt="", method="gridar", n=count), name.split("-")[1:]
        else:
            raise ValueError(f"unknown method '{name}'; use single, best-of-n or gridar[-noprune|-noreform|"
                             "-replace|-oneverify|-reformonce|-scorerpick|-rollout|-redraw]")
        for f in flags:
            if f == "noprune":
                req = replace(req, prune=False)
            elif f == "noreform":
                req = replace(req, reformulate=False)
            elif f == "replace":
                req = replace(req, strategy="replace")
            elif f == "oneverify":
                req = replace(req, schedule=ONE_VERIFICATION)
            elif f == "reformonce":
                req = replace(req, schedule=REFORMULATE_ONCE)
            elif f == "scorerpick":
                req = replace(req, value_pick=False)
            elif f == "rollout":
                req = replace(req, verify_by="rollout")
            elif f == "redraw":
                req = replace(req, refill="redraw")
            else:
                raise ValueError(f"unknown gridar variant '-{f}'")
        out.append((item, req))
    return out


def run_bench(backend: JanusBackend, roles: Roles, prompts: list[dict], methods: list[tuple[str, SearchRequest]],
              seeds: list[int], progress: Callable[[str], None] | None = None, batch: int = 16) -> dict:
    """Each method over every prompt and seed; `batch` prompts run as one batched search (each keeps its own seed
    and draws, see `engine.search`). Job seeds: seed * 100003 + prompt index."""
    report: dict = {"prompts": len(prompts), "seeds": seeds, "batch": batch, "methods": {}}
    for label, template in methods:
        per_seed: dict[int, list[tuple[str, int, float]]] = {}
        cost = CostRecord()
        for seed in seeds:
            rows = []
            for at in range(0, len(prompts), batch):
                chunk = prompts[at:at + batch]
                reqs = [replace(template, prompt=row["prompt"], seed=seed * 100_003 + at + i)
                        for i, row in enumerate(chunk)]
                results = Search(backend, roles, reqs).run_all()
                cost.merge(results[0].cost)                     # one record for the whole batch
                for row, res in zip(chunk, results):
                    j = judge(res.images[res.best], row["prompt"])
                    rows.append((row.get("category", "all"), j.strict, j.partial))
            per_seed[seed] = rows
            if progress:
                progress(f"{label} seed {seed}: strict {np.mean([r[1] for r in rows]):.3f} "
                         f"({cost.wall_seconds:.0f} s so far)")
        report["methods"][label] = summarize(per_seed, cost, len(prompts) * len(seeds))
    return report


def summarize(per_seed: dict[int, list[tuple[str, int, float]]], cost: CostRecord, images: int) -> dict:
    allrows = [r for rows in per_seed.values() for r in rows]
    seed_strict = [float(np.mean([r[1] for r in rows])) for rows in per_seed.values()]
    cats: dict[str, list[tuple[int, float]]] = {}
    for c, s, p in allrows:
        cats.setdefault(c, []).append((s, p))
    cj = cost.to_json()
    return {
        "strict": float(np.mean([r[1] for r in allrows])),
        "partial": float(np.mean([r[2] for r in allrows])),
        "strict_per_seed": seed_strict,
        "strict_seed_stdev": statistics.pstdev(seed_strict) if len(seed_strict) > 1 else 0.0,
        "per_category": {c: {"n": len(v), "strict": float(np.mean([s for s, _ in v])),
                             "partial": float(np.mean([p for _, p in v]))} for c, v in sorted(cats.items())},
        "cost": cj,
        "cost_per_image": {"generator_flops": cj["roles"]["generator"]["flops"] / images,
                           "total_flops": cj["total_flops"] / images,
                           "wall_seconds": cj["wall_seconds"] / images},
    }
