"""`gridar bench`: run methods over a prompt file and seeds; judge every chosen image; sum the cost records.

The judge only measures here: each method chooses its image with its own scorer before the judge sees it.

A bench runs for minutes to hours, so it keeps what it finishes: every finished unit (one method, one seed, one
batch of prompts) is written to a partial file as it ends, and a rerun with the same settings skips the units found
there. A failure or an interrupt then costs only the unit that was running.
"""
from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .engine.backend import JanusBackend
from .engine.cost import CostRecord, RoleCost
from .engine.roles import Roles
from .engine.search import ONE_VERIFICATION, REFORMULATE_ONCE, Search, SearchRequest
from .shapes.judge import judge


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


def read_bench_prompts(path: str | Path, check: Callable[[str], str] | None = None) -> list[dict]:
    """A bench prompt file: JSONL, one {"prompt": text, "category": name} per line (blank lines skipped). Every
    line is checked before any model work, and `check` (the model's prompt check, returning the normalised text)
    runs on every prompt; a problem is a `ValueError` naming the file and the line."""
    return [row for _, row in read_prompt_file(path, check)]


def read_prompt_file(path: str | Path, check: Callable[[str], str] | None = None) -> list[tuple[int, dict]]:
    """`read_bench_prompts` with each row's line number (`gridar batch` names the line of a job that failed)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file; give a JSONL prompt file (gridar prompts writes one)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a UTF-8 text file of JSON lines (is it an image?); give a JSONL prompt "
                         "file, e.g. one written by gridar prompts") from None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{i}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not a JSON line ({e.msg}); each line is {{\"prompt\": \"...\"}}") from None
        except RecursionError:
            raise ValueError(f"{where}: nested too deeply; each line is {{\"prompt\": \"...\"}}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: a JSON {type(row).__name__}, not an object; each line is "
                             "{\"prompt\": \"...\", \"category\": \"...\"}")
        if "prompt" not in row:
            keys = ", ".join(repr(k) for k in list(row)[:4]) or "none"
            raise ValueError(f"{where}: no \"prompt\" field (found {keys}); each line is {{\"prompt\": \"...\"}}")
        if not isinstance(row["prompt"], str):
            raise ValueError(f"{where}: \"prompt\" must be text, got {type(row['prompt']).__name__}")
        if "category" in row and not isinstance(row["category"], str):
            raise ValueError(f"{where}: \"category\" must be text, got {type(row['category']).__name__}")
        if check is not None:
            try:
                row = {**row, "prompt": check(row["prompt"])}
            except (ValueError, RuntimeError) as e:
                raise ValueError(f"{where}: {e}") from None
        rows.append((i, row))
    if not rows:
        raise ValueError(f"{path} holds no prompts; each line is {{\"prompt\": \"...\"}} (gridar prompts writes one)")
    return rows


def bench_fingerprint(prompts: list[dict], methods: list[tuple[str, SearchRequest]], seeds: list[int], batch: int,
                      **settings) -> dict:
    """What decides a bench's results: a partial file from a run with another fingerprint is not resumed."""
    digest = hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest()
    return {"prompts_sha256": digest, "prompts": len(prompts), "methods": [m for m, _ in methods],
            "seeds": list(seeds), "batch": batch, **settings}


def _cost_from_json(j: dict) -> CostRecord:
    """The inverse of `CostRecord.to_json` (encoder FLOPs outside the token rows come back as extra_flops)."""
    cost = CostRecord(image_tokens=j["image_tokens"], vq_decodes=j["vq_decodes"], wall_seconds=j["wall_seconds"],
                      waiting_seconds=j.get("waiting_seconds", 0.0), roles={})
    for name, r in j["roles"].items():
        rows = r["prefill_token_rows"] + r["decode_token_rows"]
        cost.roles[name] = RoleCost(params=r["params"], prefill_token_rows=r["prefill_token_rows"],
                                    decode_token_rows=r["decode_token_rows"], calls=r["calls"],
                                    extra_flops=r["flops"] - 2.0 * r["params"] * rows)
    return cost


class PartialResults:
    """The finished units of a bench, kept in a JSONL file (first line: the fingerprint; then one line per unit),
    rewritten atomically after each unit so a kill leaves the previous state whole."""

    def __init__(self, path: str | Path | None, fingerprint: dict,
                 progress: Callable[[str], None] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.fingerprint = fingerprint
        self.units: dict[str, dict] = {}
        if self.path is None or not self.path.is_file():
            return
        try:
            lines = [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]
        except (ValueError, OSError, RecursionError):
            lines = []
        if lines and isinstance(lines[0], dict) and lines[0].get("bench") == fingerprint:
            self.units = {u["unit"]: u for u in lines[1:] if isinstance(u, dict) and "unit" in u}
            if progress and self.units:
                progress(f"resuming: {len(self.units)} finished unit(s) read from {self.path}")
        elif progress:
            progress(f"{self.path} is from a bench with other settings; starting over")

    def get(self, key: str) -> dict | None:
        return self.units.get(key)

    def add(self, key: str, rows: list, cost: CostRecord) -> None:
        self.units[key] = {"unit": key, "rows": rows, "cost": cost.to_json()}
        if self.path is None:
            return
        from .io.atomic import atomic_write_text
        lines = [json.dumps({"bench": self.fingerprint})] + [json.dumps(u) for u in self.units.values()]
        atomic_write_text(self.path, "\n".join(lines) + "\n")

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class BenchUnit:
    """One method, one seed, one batch of prompts: run as one batched search, recorded as one partial line."""
    key: str
    label: str
    seed: int
    at: int                             # index of the batch's first prompt
    requests: tuple[SearchRequest, ...]
    categories: tuple[str, ...]


def bench_units(prompts: list[dict], methods: list[tuple[str, SearchRequest]], seeds: list[int],
                batch: int) -> list[BenchUnit]:
    """The units of a bench in report order; a run here and a run on a cluster cut the same batches. Job seeds:
    seed * 100003 + prompt index."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    units = []
    for label, template in methods:
        for seed in seeds:
            for at in range(0, len(prompts), batch):
                chunk = prompts[at:at + batch]
                reqs = tuple(replace(template, prompt=row["prompt"], seed=seed * 100_003 + at + i)
                             for i, row in enumerate(chunk))
                units.append(BenchUnit(f"{label}|seed {seed}|prompts {at}-{at + len(chunk) - 1}", label, seed, at,
                                       reqs, tuple(row.get("category", "all") for row in chunk)))
    return units


def run_bench_unit(backend: JanusBackend, roles: Roles, unit: BenchUnit) -> tuple[list[tuple[str, int, float]],
                                                                                   CostRecord]:
    """A unit's judged rows (category, strict, partial) and its cost (one record for the whole batch)."""
    results = Search(backend, roles, list(unit.requests)).run_all()
    rows = []
    for cat, req, res in zip(unit.categories, unit.requests, results):
        j = judge(res.images[res.best], req.prompt)
        rows.append((cat, j.strict, j.partial))
    return rows, results[0].cost


# Runs units and yields (unit, rows, cost as JSON) as each finishes, in any order (`cluster.Cluster.bench_units`).
Execute = Callable[[list[BenchUnit]], Iterator[tuple[BenchUnit, list, dict]]]


def run_bench(backend: JanusBackend | None, roles: Roles | None, prompts: list[dict],
              methods: list[tuple[str, SearchRequest]], seeds: list[int],
              progress: Callable[[str], None] | None = None, batch: int = 16, partial: PartialResults | None = None,
              execute: Execute | None = None) -> dict:
    """Each method over every prompt and seed; `batch` prompts run as one batched search (each keeps its own seed
    and draws, see `engine.search`). Each finished unit (method, seed, batch) is recorded in `partial` as it ends,
    and units already there are not run again. `execute` runs the units elsewhere (a Ray cluster); without it they
    run here, on `backend`, in order. The report is assembled in unit order from the recorded units, so it is the
    same JSON however and wherever the units ran."""
    units = bench_units(prompts, methods, seeds, batch)
    partial = partial if partial is not None else PartialResults(None, {})
    if execute is None:
        def execute(todo: list[BenchUnit]):
            for u in todo:
                rows, cost = run_bench_unit(backend, roles, u)
                yield u, [list(r) for r in rows], cost.to_json()
    left = {}                           # (label, seed) -> units not finished yet, for the per-seed progress line
    for u in units:
        if partial.get(u.key) is None:
            left[(u.label, u.seed)] = left.get((u.label, u.seed), 0) + 1
    for u, rows, cost in execute([u for u in units if partial.get(u.key) is None]):
        partial.add(u.key, rows, _cost_from_json(cost))
        left[(u.label, u.seed)] -= 1
        if progress and not left[(u.label, u.seed)]:
            done = [r for v in units if (v.label, v.seed) == (u.label, u.seed) for r in partial.get(v.key)["rows"]]
            progress(f"{u.label} seed {u.seed}: strict {np.mean([r[1] for r in done]):.3f}")
    report: dict = {"prompts": len(prompts), "seeds": seeds, "batch": batch, "methods": {}}
    for label, _ in methods:
        per_seed: dict[int, list[tuple[str, int, float]]] = {seed: [] for seed in seeds}
        cost = CostRecord()
        for u in units:
            if u.label == label:
                done = partial.get(u.key)
                per_seed[u.seed] += [tuple(r) for r in done["rows"]]
                cost.merge(_cost_from_json(done["cost"]))
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
