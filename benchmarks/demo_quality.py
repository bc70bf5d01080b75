"""Quality and speed of the bundled demo model, single sample with guidance (prints one JSON object).

    .venv/bin/python benchmarks/demo_quality.py [--n 300] [--cfg 3] [--seeds 0] [--model demo]

Quality: strict and partial judge scores per category over a generated prompt set (all categories), each prompt
sampled once per seed; with its standard error (binomial, over the samples) so that a category of 60 samples is not
read more finely than it measures.
Speed (ratios matter, the machine is shared): median seconds for one image, and for a batch of 4 of one prompt.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from gridar_desktop.engine.backend import JanusBackend
from gridar_desktop.engine.models import resolve_model
from gridar_desktop.engine.sampling import SamplingParams
from gridar_desktop.engine.single import generate_batch
from gridar_desktop.shapes.judge import judge
from gridar_desktop.shapes.promptsets import make_prompt_set


def _se(xs: list[int]) -> float:
    """Standard error of a mean of 0/1 outcomes."""
    p = float(np.mean(xs))
    return float(np.sqrt(p * (1 - p) / max(len(xs), 1)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0, help="the first seed (with --seeds 1, the only one)")
    ap.add_argument("--seeds", type=int, default=1, help="samples per prompt, under seeds seed, seed+1000, ...")
    ap.add_argument("--prompt-seed", type=int, default=2026)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = JanusBackend.load(resolve_model(args.model), device="cpu", dtype="float32")
    params = SamplingParams(cfg=args.cfg, temperature=args.temperature)
    rows = make_prompt_set(args.n, args.prompt_seed)
    scores: dict[str, list[tuple[int, float]]] = {}
    t0 = time.perf_counter()
    for k in range(args.seeds):
        for i in range(0, len(rows), args.batch):
            chunk = rows[i:i + args.batch]
            out = generate_batch(backend, [r["prompt"] for r in chunk], 1, params, args.seed + 1000 * k + i)
            for r, img in zip(chunk, out.images):
                j = judge(img, r["prompt"])
                scores.setdefault(r["category"], []).append((j.strict, j.partial))
    batched_s = (time.perf_counter() - t0) / (len(rows) * args.seeds)
    one, four = [], []
    for k in range(5):
        t = time.perf_counter()
        generate_batch(backend, [rows[k]["prompt"]], 1, params, k)
        one.append(time.perf_counter() - t)
        t = time.perf_counter()
        generate_batch(backend, [rows[k]["prompt"]], 4, params, k)
        four.append(time.perf_counter() - t)
    allv = [v for vs in scores.values() for v in vs]
    print(json.dumps({
        "model": str(resolve_model(args.model)), "prompts": len(rows), "cfg": args.cfg, "seed": args.seed,
        "seeds": args.seeds, "strict": round(float(np.mean([s for s, _ in allv])), 4),
        "strict_se": round(_se([s for s, _ in allv]), 4),
        "partial": round(float(np.mean([p for _, p in allv])), 4),
        "per_category": {c: {"n": len(v), "strict": round(float(np.mean([s for s, _ in v])), 4),
                             "strict_se": round(_se([s for s, _ in v]), 4),
                             "partial": round(float(np.mean([p for _, p in v])), 4)} for c, v in scores.items()},
        "seconds_per_image_single": round(statistics.median(one), 4),
        "seconds_per_batch_of_4": round(statistics.median(four), 4),
        "batch4_vs_single": round(statistics.median(four) / statistics.median(one), 3),
        "seconds_per_image_in_batches": round(batched_s, 4), "batch": args.batch,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
