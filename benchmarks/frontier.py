"""Strict score against total compute (all roles) for Best-of-N and GridAR: where, if anywhere, the staged search
pays on the demo model (issue 29). One JSON object on stdout, a markdown table on stderr, a PNG plot.

    .venv/bin/python benchmarks/frontier.py --n 100 --prompt-seed 7 --seeds 0 \
        --methods best-of-n:1,best-of-n:2,best-of-n:4,best-of-n:8,best-of-n:16,gridar:4,gridar:8 \
        --out build/frontier/p7.json --plot docs/frontier.png
    .venv/bin/python benchmarks/frontier.py --from build/frontier/p7.json --plot docs/frontier.png   # table + plot

Methods are `gridar bench`'s (`gridar_desktop.bench.parse_methods`), plus two benchmark-only prefixes:
- `ceiling-<method>`: the judge's partial reading (`shapes.partial.judge_partial`: a visible contradiction means
  impossible) stands in for the verifier. It is a BOUND, not a method: the judge knows the scene grammar exactly. Its
  verdicts are counted at zero FLOPs. Nothing in the app or `gridar generate` can reach it.
- `cheap-<method>`: the cheap verdict head (`gridar_desktop.engine.cheap_verifier`, trained by
  `gridar_desktop.training.cheap_verifier`) reads the generator's own hidden state instead of the verifier;
  `--cheap-head FILE` names its weights.

Every method runs through `run_bench` with its own resumable partial file under `--dir` (one unit = one method, one
seed, one batch of prompts), so a killed run loses one unit. Standard errors are over prompts; each method's gap
to Best-of-N's curve is paired (the same prompts and seeds): Best-of-N's per-prompt scores are interpolated in
log-FLOPs between the two Best-of-N points around the method's cost.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MAX_CANDIDATES = 160                  # per batched search (--batch prompts x N candidates, at most)
METHODS = "best-of-n:1,best-of-n:2,best-of-n:4,best-of-n:8,best-of-n:16,gridar:4,gridar:8"


# -- the ceiling: the judge's partial reading as the verifier (benchmark only) ------------------------------------
class JudgeVerifierRoles:
    """The demo model's roles with the judge's partial reading as the verifier: P(possible) is 0 where the visible
    rows already contradict the prompt, else 1. A bound on what a perfect reader of partial views could do with the
    same schedule; its verdicts cost nothing in the cost record. Scorer and reformulator are the wrapped roles'."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name):        # thresholds and everything else: the wrapped roles'
        return getattr(self.inner, name)

    def verify(self, prompt, views, cost) -> list[float]:
        from gridar_desktop.engine.roles import per_item
        from gridar_desktop.shapes.partial import judge_partial
        out = []
        for p, v in zip(per_item(prompt, len(views)), views):
            try:
                bad = judge_partial(v.image, p, v.rows, v.total_rows)
            except ValueError:           # a prompt the grammar cannot read: no verdict, keep the candidate
                bad = []
            out.append(0.0 if bad else 1.0)
        return out

    def score(self, prompt, images, cost):
        return self.inner.score(prompt, images, cost)

    def reformulate(self, prompt, views, cost):
        return self.inner.reformulate(prompt, views, cost)


def make_roles(kind: str, backend, base, cheap_head: str | None):
    if kind == "ceiling":
        return JudgeVerifierRoles(base)
    if kind == "cheap":
        from gridar_desktop.engine.cheap_verifier import CheapVerifierRoles, load_cheap_head
        if not cheap_head:
            raise SystemExit("cheap-<method> needs --cheap-head FILE (train one with "
                             "python -m gridar_desktop.training.cheap_verifier)")
        return CheapVerifierRoles(base, backend, load_cheap_head(cheap_head))
    return base


def split_kind(label: str) -> tuple[str, str]:
    for kind in ("ceiling", "cheap"):
        if label.startswith(kind + "-"):
            return kind, label[len(kind) + 1:]
    return "model", label


# -- running --------------------------------------------------------------------------------------------------------
def run_method(backend, base, prompts: list[dict], label: str, seeds: list[int], batch: int, folder: Path,
               cheap_head: str | None, progress) -> dict:
    """One method over every prompt and seed, resumable; its summary plus per-(seed, prompt) strict scores."""
    from gridar_desktop.bench import PartialResults, bench_fingerprint, parse_methods, run_bench
    kind, spec = split_kind(label)
    [(_, req)] = parse_methods(spec)
    method = [(label, req)]
    # a batch of many candidates runs slower per image on a CPU (the caches outgrow the caches): cap the candidates
    batch = min(batch, max(1, MAX_CANDIDATES // req.n))
    head_sha = hashlib.sha256(Path(cheap_head).read_bytes()).hexdigest() if kind == "cheap" and cheap_head \
        and Path(cheap_head).is_file() else None      # a retrained head is another method: never resumed
    fp = bench_fingerprint(prompts, method, seeds, batch, roles=kind, cheap_head=head_sha)
    safe = label.replace(":", "_")
    partial = PartialResults(folder / f"{safe}.partial.jsonl", fp, progress)
    roles = make_roles(kind, backend, base, cheap_head)
    import gridar_desktop.bench as bench
    search = bench.Search
    if kind == "cheap":       # the cheap head reads the generator's state, which only its own Search hands over
        from gridar_desktop.engine.cheap_verifier import CheapVerdictSearch
        bench.Search = CheapVerdictSearch
    try:
        r = run_bench(backend, roles, prompts, method, seeds, progress=progress, batch=batch, partial=partial)
    finally:
        bench.Search = search
    m = r["methods"][label]
    per_prompt = []                      # seed-major, prompt order: the pairing key across methods
    for seed in seeds:
        for at in range(0, len(prompts), batch):
            u = partial.get(f"{label}|seed {seed}|prompts {at}-{min(at + batch, len(prompts)) - 1}")
            per_prompt += [float(row[1]) for row in u["rows"]]
    m["strict_per_prompt"] = per_prompt
    m["roles"] = kind
    return m


# -- analysis -----------------------------------------------------------------------------------------------------
def gflops(m: dict) -> float:
    return m["cost_per_image"]["total_flops"] / 1e9


def se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0


def bon_points(methods: dict) -> list[tuple[float, str]]:
    return sorted((gflops(m), k) for k, m in methods.items() if k.startswith("best-of-n:"))


def against_curve(methods: dict, label: str) -> dict | None:
    """A method's strict minus Best-of-N's curve at the same total FLOPs, paired over prompts: Best-of-N's per-prompt
    scores interpolated in log-FLOPs between its two points around the method's cost (None when the method's cost is
    outside the curve's span: no claim is made by extrapolating)."""
    pts = bon_points(methods)
    f = gflops(methods[label])
    for (f0, k0), (f1, k1) in zip(pts, pts[1:]):
        if f0 <= f <= f1:
            w = (math.log(f) - math.log(f0)) / (math.log(f1) - math.log(f0)) if f1 > f0 else 0.0
            a = np.array(methods[k0]["strict_per_prompt"])
            b = np.array(methods[k1]["strict_per_prompt"])
            g = np.array(methods[label]["strict_per_prompt"])
            d = g - ((1 - w) * a + w * b)
            return {"between": [k0, k1], "weight": w, "curve_strict": float(((1 - w) * a + w * b).mean()),
                    "diff": float(d.mean()), "diff_se": se(d)}
    return None


def analyse(methods: dict) -> None:
    for k, m in methods.items():
        x = np.array(m["strict_per_prompt"])
        m["strict_se"] = se(x)
        m["total_gflops"] = gflops(m)
        if not k.startswith("best-of-n:"):
            m["vs_best_of_n_curve"] = against_curve(methods, k)


def table(r: dict) -> str:
    methods = r["methods"]
    lines = [f"prompts: {r['prompts']} (`gridar prompts -n {r['prompt_set']['n']} --seed {r['prompt_set']['seed']}`), "
             f"seeds {r['seeds']}", "",
             "| method | strict +- se | total GFLOPs | generator GFLOPs | vs Best-of-N's curve at equal FLOPs (paired) |",
             "|---|---|---|---|---|"]
    for k in sorted(methods, key=lambda k: (not k.startswith("best-of-n"), gflops(methods[k]))):
        m = methods[k]
        v = m.get("vs_best_of_n_curve")
        gap = "" if k.startswith("best-of-n") else (
            "outside the curve's span" if v is None else
            f"{v['diff']:+.3f} +- {v['diff_se']:.3f} (curve {v['curve_strict']:.3f})")
        bound = " (bound)" if m.get("roles") == "ceiling" else ""
        lines.append(f"| {k}{bound} | {m['strict']:.3f} +- {m['strict_se']:.3f} | {gflops(m):.2f} | "
                     f"{m['cost_per_image']['generator_flops'] / 1e9:.2f} | {gap} |")
    return "\n".join(lines)


# -- the plot (PIL: matplotlib is not a dependency) ---------------------------------------------------------------
COLOURS = {"best-of-n": (40, 40, 40), "gridar": (200, 60, 40), "ceiling": (40, 110, 200), "cheap": (40, 160, 80)}


def plot(r: dict, path: str | Path, title: str = "") -> None:
    """Strict score (+- se) against total GFLOPs per prompt, log x; Best-of-N joined by a line."""
    from PIL import Image, ImageDraw
    W, H, L, R, T, B = 900, 560, 70, 250, 40, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    methods = r["methods"]
    fs = [gflops(m) for m in methods.values()]
    ss = [m["strict"] for m in methods.values()]
    x0, x1 = math.log2(min(fs)) - 0.3, math.log2(max(fs)) + 0.3
    y0 = max(0.0, math.floor(min(s - 2 * methods[k]["strict_se"] for k, s in zip(methods, ss)) * 20) / 20)
    y1 = min(1.0, math.ceil(max(s + 2 * methods[k]["strict_se"] for k, s in zip(methods, ss)) * 20) / 20)

    def px(f: float, s: float) -> tuple[float, float]:
        return (L + (math.log2(f) - x0) / (x1 - x0) * (W - L - R), H - B - (s - y0) / (y1 - y0) * (H - T - B))

    d.rectangle([L, T, W - R, H - B], outline="black")
    g = 2 ** math.ceil(x0)
    while g <= 2 ** x1:
        x, _ = px(g, y0)
        d.line([x, H - B, x, H - B + 5], fill="black")
        d.text((x - 10, H - B + 8), f"{g:g}", fill="black")
        g *= 2
    s = y0
    while s <= y1 + 1e-9:
        _, y = px(2 ** x0, s)
        d.line([L - 5, y, L, y], fill="black")
        d.line([L, y, W - R, y], fill=(230, 230, 230))
        d.text((L - 40, y - 6), f"{s:.2f}", fill="black")
        s += 0.05
    d.text((L + 150, H - 25), "total GFLOPs per prompt, all roles (log scale)", fill="black")
    d.text((8, T - 30), "strict (judge) +- 1 se   " + title, fill="black")
    bon = bon_points(methods)
    d.line([px(f, methods[k]["strict"]) for f, k in bon], fill=COLOURS["best-of-n"], width=2)
    ly = T
    for k in sorted(methods, key=lambda k: gflops(methods[k])):
        m = methods[k]
        kind, spec = split_kind(k)
        c = COLOURS[kind] if kind != "model" else COLOURS["best-of-n" if spec.startswith("best") else "gridar"]
        x, y = px(gflops(m), m["strict"])
        e = m["strict_se"] * (H - T - B) / (y1 - y0)
        d.line([x, y - e, x, y + e], fill=c)
        if spec.startswith("best"):
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=c)
        else:
            d.rectangle([x - 4, y - 4, x + 4, y + 4], outline=c, width=2)
        d.text((W - R + 10, ly), f"{k}{' (bound)' if kind == 'ceiling' else ''}: {m['strict']:.3f}", fill=c)
        ly += 14
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--prompt-seed", type=int, default=7)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--dir", default=None, help="partial files (default build/frontier/p<prompt-seed>)")
    ap.add_argument("--out", default=None, help="the JSON (default <dir>/frontier.json)")
    ap.add_argument("--plot", default=None, help="write the PNG here")
    ap.add_argument("--cheap-head", default=None)
    ap.add_argument("--from", dest="from_file", default=None, help="only the table and plot of an earlier run")
    args = ap.parse_args()
    log = lambda m: print(m, file=sys.stderr, flush=True)      # noqa: E731
    if args.from_file:
        r = json.loads(Path(args.from_file).read_text())
    else:
        from gridar_desktop.engine.backend import JanusBackend
        from gridar_desktop.engine.janus_roles import JanusRoles
        from gridar_desktop.engine.models import resolve_model
        from gridar_desktop.io.atomic import atomic_write_text
        from gridar_desktop.shapes.promptsets import make_prompt_set
        folder = Path(args.dir or f"build/frontier/p{args.prompt_seed}")
        folder.mkdir(parents=True, exist_ok=True)
        out = Path(args.out or folder / "frontier.json")
        backend = JanusBackend.load(resolve_model(args.model), device="cpu", dtype="float32")
        base = JanusRoles(backend)
        prompts = make_prompt_set(args.n, args.prompt_seed)
        seeds = [int(s) for s in args.seeds.split(",")]
        r = {"prompts": len(prompts), "seeds": seeds, "batch": args.batch, "model": args.model,
             "prompt_set": {"n": args.n, "seed": args.prompt_seed}, "methods": {}}
        if out.is_file():                # keep methods of earlier invocations on the same prompts and seeds
            old = json.loads(out.read_text())
            if (old.get("prompt_set"), old.get("seeds")) == (r["prompt_set"], r["seeds"]):
                r["methods"] = old["methods"]
        for label in [x.strip() for x in args.methods.split(",") if x.strip()]:
            r["methods"][label] = run_method(backend, base, prompts, label, seeds, args.batch, folder,
                                             args.cheap_head, log)
            analyse(r["methods"])
            atomic_write_text(out, json.dumps(r, indent=1))
    analyse(r["methods"])
    if args.plot:
        plot(r, args.plot, f"prompts seed {r['prompt_set']['seed']}, n={r['prompts']}, seeds {r['seeds']}")
    print(table(r), file=sys.stderr)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
