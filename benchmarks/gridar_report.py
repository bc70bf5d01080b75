"""The README's GridAR benchmark: single, Best-of-N and GridAR with ablations on the shapes world, the demo model as
generator, verifier, scorer and reformulator (one JSON object on stdout, a markdown table on stderr).

    .venv/bin/python benchmarks/gridar_report.py [--n 300] [--seeds 0,1] [--out build/gridar_report.json]
    .venv/bin/python benchmarks/gridar_report.py --from build/gridar_report.json      # only the table

It runs exactly what `gridar bench --prompts P --methods M --seeds S --model demo` runs (prompt set from
`gridar prompts -n N --seed 7`), then adds the ratios of the targets: GridAR N=4 against Best-of-N N=8 in strict
score, generator FLOPs, total FLOPs of all roles and wall time.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METHODS = ("single:1,best-of-n:4,best-of-n:8,gridar:4,gridar:8,gridar-replace:4,gridar-noprune:4,"
           "gridar-noreform:4,gridar-oneverify:4")


def ratios(r: dict, num: str, den: str) -> dict:
    a, b = r["methods"][num], r["methods"][den]
    ca, cb = a["cost"], b["cost"]
    return {"vs": f"{num} / {den}", "strict": a["strict"] / max(b["strict"], 1e-9),
            "generator_flops": ca["roles"]["generator"]["flops"] / cb["roles"]["generator"]["flops"],
            "total_flops": ca["total_flops"] / cb["total_flops"],
            "wall_seconds": ca["wall_seconds"] / cb["wall_seconds"]}


def add_targets(r: dict) -> None:
    if "best-of-n:8" not in r["methods"]:
        return
    r["targets"] = {f"{m} vs best-of-n:8": ratios(r, m, "best-of-n:8") for m in r["methods"]
                    if m.startswith("gridar") and m.endswith(":4")}


ORDER = ("single:1", "best-of-n:4", "best-of-n:8", "gridar:4", "gridar:8", "gridar-replace:4", "gridar-noprune:4",
         "gridar-noreform:4", "gridar-oneverify:4")
CATEGORIES = ("single", "counting", "pair", "relation", "triple")


def _rank(label: str) -> int:
    """Table order: the README's order, methods it does not list after them."""
    return ORDER.index(label) if label in ORDER else len(ORDER)


def table(r: dict) -> str:
    """The README's two tables: per method, and the target ratios against Best-of-N N=8."""
    runs = r["prompts"] * len(r["seeds"])
    lines = ["| method | strict (" + " / ".join(f"seed {s}" for s in r["seeds"]) + ") | partial | " +
             " | ".join(CATEGORIES) + " | generator GFLOPs | total GFLOPs | verifier / scorer / reformulator GFLOPs"
             " | s per prompt |", "|---|---|---|" + "---|" * len(CATEGORIES) + "---|---|---|---|"]
    for label in sorted(r["methods"], key=_rank):
        m = r["methods"][label]
        per, roles = m["cost_per_image"], m["cost"]["roles"]
        side = " / ".join(f"{roles[k]['flops'] / runs / 1e9:.2f}" for k in ("verifier", "scorer", "reformulator"))
        seeds = " / ".join(f"{v:.3f}" for v in m["strict_per_seed"])
        lines.append(f"| {label} | {m['strict']:.3f} ({seeds}) | {m['partial']:.3f} | " +
                     " | ".join(f"{m['per_category'][c]['strict']:.2f}" for c in CATEGORIES) +
                     f" | {per['generator_flops'] / 1e9:.2f} | {per['total_flops'] / 1e9:.2f} | {side} | "
                     f"{per['wall_seconds']:.2f} |")
    lines += ["", "| vs Best-of-N N=8 | strict | generator FLOPs | total FLOPs | wall time |", "|---|---|---|---|---|"]
    targets = r.get("targets", {})
    for key in sorted(targets, key=lambda k: _rank(k.split(" vs ")[0])):
        v = targets[key]
        lines.append(f"| {key.split(' vs ')[0]} | {v['strict']:.2f}x | {v['generator_flops']:.2f}x | "
                     f"{v['total_flops']:.2f}x | {v['wall_seconds']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--prompt-seed", type=int, default=7)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default="build/gridar_report.json")
    ap.add_argument("--from", dest="from_file", default=None, help="only print the table of an earlier report")
    ap.add_argument("--merge", nargs="+", default=None,
                    help="join reports of the same prompts and seeds run in parallel processes (method subsets)")
    args = ap.parse_args()
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        r = parts[0]
        for q in parts[1:]:
            if (q["prompts"], q["seeds"], q.get("prompt_set")) != (r["prompts"], r["seeds"], r.get("prompt_set")):
                raise SystemExit("reports of different prompt sets or seeds cannot be merged")
            r["methods"].update(q["methods"])
        add_targets(r)
        from gridar_desktop.io.atomic import atomic_write_text
        atomic_write_text(args.out, json.dumps(r, indent=1))
    elif args.from_file:
        r = json.loads(Path(args.from_file).read_text())
    else:
        from gridar_desktop.engine.backend import JanusBackend
        from gridar_desktop.bench import parse_methods, run_bench
        from gridar_desktop.engine.janus_roles import JanusRoles
        from gridar_desktop.engine.models import resolve_model
        from gridar_desktop.io.atomic import atomic_write_text
        from gridar_desktop.shapes.promptsets import make_prompt_set
        backend = JanusBackend.load(resolve_model(args.model), device="cpu", dtype="float32")
        prompts = make_prompt_set(args.n, args.prompt_seed)
        seeds = [int(s) for s in args.seeds.split(",")]
        r = run_bench(backend, JanusRoles(backend), prompts, parse_methods(args.methods), seeds,
                      progress=lambda m: print(m, file=sys.stderr, flush=True), batch=args.batch)
        r.update(model=args.model, prompt_set={"n": args.n, "seed": args.prompt_seed})
        add_targets(r)
        atomic_write_text(args.out, json.dumps(r, indent=1))
    print(table(r), file=sys.stderr)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
