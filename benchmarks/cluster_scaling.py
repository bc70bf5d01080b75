"""Batch throughput on Ray workers against the same units run in this process (prints one JSON object).

    .venv/bin/python benchmarks/cluster_scaling.py [--prompts 4] [--seeds 0,1] [--method best-of-n] [-n 2]
                                                   [--batch 2] [--workers 1,2] [--model demo] [--out R.json]

One run measures, on the same units (`batch.plan_units`, as `gridar batch` cuts them):
- in-process: the units run here, one after another, on --threads torch threads (default 1, as each worker);
- k workers, for each k of --workers: a local Ray instance of k CPUs, k workers of one CPU (one thread) each.
Throughput is images per minute of rendering (model loading and worker start are reported apart, not counted), and
each run's ratio to the in-process one. The overhead per unit is the workers' time not spent in a search
(k x wall time - the searches' own seconds from each unit's cost record) divided by the units: handing a unit to a
worker, its images back, and any worker left idle at the end. Every run's tokens are compared with the in-process
run's ("same_tokens").

On a 2-core machine two workers cannot beat one process that already uses both cores; the point here is that the
results are the same and what each unit costs to ship.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from gridar_desktop.batch import UnitRunner, expected_settings, plan_jobs, plan_units, run_local
from gridar_desktop.engine.sampling import SamplingParams
from gridar_desktop.engine.search import SearchRequest
from gridar_desktop.shapes.promptsets import make_prompt_set


def measure(results, workers: int = 1) -> dict:
    """Drain (unit, outcomes) pairs: wall time, images, the searches' own seconds, tokens per (prompt, seed)."""
    t0 = time.perf_counter()
    images, units, search_s, tokens = 0, 0, 0.0, {}
    for _unit, outcomes in results:
        units += 1
        shared = set()
        for o in outcomes:
            if o.error is not None:
                raise SystemExit(f"cluster_scaling: {o.job.where()} failed: {o.error}")
            images += 1
            tokens[(o.job.prompt, o.job.seed)] = o.meta["tokens"]
            shared.add(o.meta["cost"]["wall_seconds"])      # one cost record per unit, repeated in each image
        search_s += sum(shared)
    wall = time.perf_counter() - t0
    return {"images": images, "units": units, "wall_seconds": round(wall, 3),
            "images_per_minute": round(60 * images / wall, 2), "search_seconds": round(search_s, 3),
            "overhead_per_unit_ms": round(1000 * (workers * wall - search_s) / units, 1), "_tokens": tokens}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--method", default="best-of-n", choices=["single", "best-of-n", "gridar"])
    ap.add_argument("-n", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the in-process run (default 1)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    workers = [int(k) for k in args.workers.split(",")]
    rows = [(i + 1, r) for i, r in enumerate(make_prompt_set(args.prompts, 0))]
    template = SearchRequest(prompt="", method=args.method, n=1 if args.method == "single" else args.n,
                             params=SamplingParams(cfg=2.0))
    jobs, _ = plan_jobs(rows, seeds)
    units = plan_units(jobs, template, args.batch)
    expected_settings(template, args.model)                  # the same request a batch would check against

    import torch
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    runner = UnitRunner(args.model, "cpu")
    load_s = time.perf_counter() - t0
    local = measure(run_local(runner, units))
    report = {"images": len(jobs), "units": len(units), "method": args.method, "n": template.n,
              "batch": args.batch, "in_process": {**local, "torch_threads": torch.get_num_threads(),
                                                  "model_load_seconds": round(load_s, 2)}, "workers": {}}
    del runner

    import ray

    from gridar_desktop.cluster import Cluster
    for k in workers:
        ray.init(num_cpus=k, include_dashboard=False, log_to_driver=False)
        try:
            t0 = time.perf_counter()
            with Cluster("auto", args.model, "cpu", workers=k) as cluster:
                start_s = time.perf_counter() - t0
                run = measure(cluster.render_units(units), k)
        finally:
            ray.shutdown()
        run.update(start_seconds=round(start_s, 2),
                   ratio_to_in_process=round(run["images_per_minute"] / local["images_per_minute"], 3),
                   same_tokens=run["_tokens"] == local["_tokens"])
        report["workers"][str(k)] = run
        print(f"{k} worker(s): {run['images_per_minute']} images/min ({run['ratio_to_in_process']}x in-process), "
              f"{run['overhead_per_unit_ms']} ms overhead per unit, same tokens: {run['same_tokens']}",
              file=sys.stderr)
    for r in [report["in_process"], *report["workers"].values()]:
        r.pop("_tokens")
    text = json.dumps(report, indent=1)
    if args.out:
        from gridar_desktop.io.atomic import atomic_write_text
        atomic_write_text(args.out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
