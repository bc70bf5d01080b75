"""`gridar`: the command line. Each sub-command prints plain text or one JSON object and exits non-zero with a
one-line message naming the problem on bad input."""
from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .engine.defaults import GRIDAR_DEFAULTS, REFILL, VERIFY_BY
from .logs import setup_logging


def _cmd_scene(args: argparse.Namespace) -> int:
    from .io.png import save_png
    from .shapes.scene import make_scene
    img, objs = make_scene(args.prompt, args.seed, args.size)
    save_png(img, args.output, args.prompt, {"settings": {"method": "ground truth", "seed": args.seed},
                                             "objects": [o.__dict__ for o in objs]})
    print(args.output)
    return 0


def _cmd_judge(args: argparse.Namespace) -> int:
    from .io.png import load_image
    from .shapes.judge import judge
    print(json.dumps(judge(load_image(args.image), args.prompt).to_json()))
    return 0


def _cmd_prompts(args: argparse.Namespace) -> int:
    from .shapes.promptsets import CATEGORIES, make_prompt_set, write_jsonl
    cats = tuple(args.categories.split(",")) if args.categories else CATEGORIES
    bad = [c for c in cats if c not in CATEGORIES]
    if bad:
        raise ValueError(f"unknown categories {bad}; choose from {', '.join(CATEGORIES)}")
    rows = make_prompt_set(args.n, args.seed, cats)
    write_jsonl(rows, args.output)
    print(f"{len(rows)} prompts -> {args.output}")
    return 0


def _load(args: argparse.Namespace):
    from .engine.backend import JanusBackend
    from .engine.models import resolve_model
    return JanusBackend.load(resolve_model(args.model), device=args.device, dtype=args.dtype)


def _roles(backend):
    from .engine.janus_roles import JanusRoles
    return JanusRoles(backend)


def _cmd_generate(args: argparse.Namespace) -> int:
    import time

    from PIL import Image

    from .engine.sampling import SamplingParams
    from .engine.search import Search, SearchRequest
    from .io.png import save_png
    t0 = time.perf_counter()
    backend = _load(args)
    load_s = time.perf_counter() - t0
    n = 1 if args.method == "single" else args.n
    params = SamplingParams(cfg=args.cfg, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    req = SearchRequest(prompt=args.prompt, method=args.method, n=n, seed=args.seed, params=params,
                        strategy=args.strategy, threshold=args.threshold, verify_by=args.verify_by,
                        reformulate=args.reformulate, refill=args.refill)
    req.validate()
    res = Search(backend, _roles(backend) if args.method != "single" else None, req).run()
    meta = res.metadata()
    meta["settings"].update(model=args.model, device=str(backend.device))
    save_png(Image.fromarray(res.images[res.best]), args.output, args.prompt, meta)
    if args.json:
        print(json.dumps({"output": args.output, "prompt": args.prompt, **meta["settings"], "chosen": res.best,
                          "scores": res.scores, "load_seconds": round(load_s, 3), "cost": res.cost.to_json()}))
    else:
        print(args.output)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .engine.bench import parse_methods, run_bench
    from .io.atomic import atomic_write_text
    from .shapes.promptsets import read_jsonl
    prompts = read_jsonl(args.prompts)
    if args.limit:
        prompts = prompts[:args.limit]
    methods = parse_methods(args.methods)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    backend = _load(args)
    report = run_bench(backend, _roles(backend), prompts, methods, seeds,
                       progress=lambda m: print(m, file=sys.stderr), batch=args.batch)
    report.update(model=args.model, prompts_file=args.prompts)
    atomic_write_text(args.out, json.dumps(report, indent=1))
    print(args.out)
    return 0


def _cmd_edit(args: argparse.Namespace) -> int:
    from PIL import Image

    from .engine.edit import edit_prompt, prepare_edit
    from .engine.sampling import SamplingParams
    from .engine.search import Search, SearchRequest
    from .io.png import load_image, save_png
    image, mask = load_image(args.image), load_image(args.mask, "L")
    backend = _load(args)
    prompt = edit_prompt(backend, args.instruction, args.target_prompt)
    target = prepare_edit(backend, image, mask, fit=args.fit, feather=args.feather)
    for note in target.notes:
        print(f"gridar edit: {note}", file=sys.stderr)
    n = 1 if args.method == "single" else args.n
    params = SamplingParams(cfg=args.cfg, temperature=args.temperature)
    req = SearchRequest(prompt=prompt, method=args.method, n=n, seed=args.seed, params=params,
                        strategy=args.strategy, edit=target, threshold=args.threshold, context=args.context,
                        verify_by=args.verify_by, reformulate=args.reformulate, refill=args.refill)
    req.validate()
    res = Search(backend, _roles(backend) if args.method != "single" else None, req).run()
    meta = res.metadata()
    meta["settings"].update(model=args.model, device=str(backend.device))
    meta["settings"]["edit"].update(instruction=args.instruction, target_prompt=args.target_prompt,
                                    image=str(args.image), mask=str(args.mask), fit=args.fit)
    save_png(Image.fromarray(res.images[res.best]), args.output, prompt, meta)
    if args.json:
        print(json.dumps({"output": args.output, "prompt": prompt, "method": args.method, "n": n, "seed": args.seed,
                          "redrawn_tokens": target.redrawn_tokens, "notes": list(target.notes),
                          "chosen": res.best, "scores": res.scores, "cost": res.cost.to_json()}))
    else:
        print(args.output)
    return 0


THRESHOLD_HELP = ("GridAR rejects a partial candidate when P(possible) is below this, at every band (default: the "
                  "thresholds calibrated for the verifier's model, one per band, for edits one of their own; else "
                  "0.25; with --verify-by rollout, 0.5 on the scorer's P)")
REFILL_HELP = ("what replaces a candidate GridAR rejects: 'copy' (a copy of a survivor of its group goes on, the "
               "paper's rule) or 'redraw' (the slot draws its bands again from the prompt)")
REFORMULATE_HELP = "GridAR rewrites each candidate's prompt from what is drawn (--no-reformulate keeps it as typed)"
VERIFY_BY_HELP = ("what GridAR's verdicts read: 'view' (the verifier reads the partial candidate) or 'rollout' (each "
                  "candidate is completed once and the scorer reads the finished image; slower: the rest of every "
                  "candidate is decoded at each verified band)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gridar", description="GridAR Desktop on the command line: render and judge "
                                 "shapes-world scenes, generate images with GridAR, benchmark methods.")
    ap.add_argument("--version", action="version", version=f"gridar {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("scene", help="render a ground-truth scene for a prompt of the shapes grammar")
    p.add_argument("prompt", help='e.g. "a red circle above a blue square"')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.set_defaults(func=_cmd_scene)

    p = sub.add_parser("judge", help="score an image against a prompt; prints one JSON object")
    p.add_argument("image")
    p.add_argument("prompt")
    p.set_defaults(func=_cmd_judge)

    p = sub.add_parser("generate", help="generate an image for a prompt with a local Janus-family model")
    p.add_argument("prompt")
    p.add_argument("--model", default="demo", help="'demo' (the bundled shapes model) or a local model folder")
    p.add_argument("--method", default="single", choices=["single", "best-of-n", "gridar"],
                   help="single: one sample; best-of-n: N samples, the scorer picks; gridar: the search")
    p.add_argument("-n", type=int, default=4, help="candidates for best-of-n and gridar (gridar: a multiple of 4)")
    p.add_argument("--strategy", default="three-way", choices=["three-way", "replace"],
                   help="how GridAR uses a reformulated prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cfg", type=float, default=2.0,
                   help="guidance scale, Janus convention (default 2, the demo model's best; Janus-Pro uses 5)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--threshold", type=float, default=None, help=THRESHOLD_HELP)
    p.add_argument("--verify-by", default=GRIDAR_DEFAULTS["generate"]["verify_by"], choices=VERIFY_BY,
                   help=VERIFY_BY_HELP + " (default: %(default)s)")
    p.add_argument("--reformulate", action=argparse.BooleanOptionalAction,
                   default=GRIDAR_DEFAULTS["generate"]["reformulate"], help=REFORMULATE_HELP)
    p.add_argument("--refill", default=GRIDAR_DEFAULTS["generate"]["refill"], choices=REFILL,
                   help=REFILL_HELP + " (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    p.add_argument("-o", "--output", default="out.png")
    p.add_argument("--json", action="store_true", help="print a JSON summary with the cost record")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("edit", help="redraw the masked part of an image (white mask pixels) to follow a prompt")
    p.add_argument("image", help="the image to edit (any common format and size)")
    p.add_argument("mask", help="an image whose white pixels mark what to redraw (resampled if its size differs)")
    p.add_argument("instruction", help="what should change; with the demo model, the edited scene in its grammar")
    p.add_argument("--target-prompt", default=None, help="the whole edited scene (what the image should show)")
    p.add_argument("--model", default="demo")
    p.add_argument("--method", default="gridar", choices=["single", "best-of-n", "gridar"])
    p.add_argument("-n", type=int, default=4)
    p.add_argument("--strategy", default="replace", choices=["three-way", "replace"],
                   help="how GridAR uses a reformulated prompt (edits: prompt replacement, as the paper)")
    p.add_argument("--fit", default="resize", choices=["resize", "crop"],
                   help="how an image of another size is brought to the model's resolution")
    p.add_argument("--feather", type=float, default=2.0, help="seam width in pixels, inside the mask")
    p.add_argument("--context", default="mixed", choices=["mixed", "source", "cleared"],
                   help="what the kept tokens around the mask show the model: the source as it is (suits a new "
                        "colour or shape), the source with the mask cleared (suits removing), or mixed: every other "
                        "candidate cleared, the verifier and the scorer choose (default)")
    p.add_argument("--threshold", type=float, default=None, help=THRESHOLD_HELP)
    p.add_argument("--verify-by", default=GRIDAR_DEFAULTS["edit"]["verify_by"], choices=VERIFY_BY,
                   help=VERIFY_BY_HELP + " (default for edits: %(default)s, the one GridAR setting measured above "
                        "Best-of-N 4 on the edit benchmark)")
    p.add_argument("--reformulate", action=argparse.BooleanOptionalAction,
                   default=GRIDAR_DEFAULTS["edit"]["reformulate"],
                   help=REFORMULATE_HELP + " (edits: by prompt replacement)")
    p.add_argument("--refill", default=GRIDAR_DEFAULTS["edit"]["refill"], choices=REFILL,
                   help=REFILL_HELP + "; an edit whose verifier is a value head redraws a candidate whose P(ends "
                                      "right) is below the chance a fresh draw ends right (default for edits: "
                                      "%(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cfg", type=float, default=2.0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("-o", "--output", default="edit.png")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_edit)

    p = sub.add_parser("bench", help="compare methods on a prompt file over seeds; writes a JSON report")
    p.add_argument("--prompts", required=True, help='JSONL, one {"prompt": ..., "category": ...} per line')
    p.add_argument("--methods", default="single:1,best-of-n:8,gridar:4",
                   help="comma-separated METHOD:N; gridar variants: gridar-noprune, gridar-noreform, "
                        "gridar-replace, gridar-oneverify, gridar-reformonce, gridar-scorerpick, gridar-rollout, "
                        "gridar-redraw; variants combine, e.g. gridar-rollout-redraw")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--model", default="demo")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--limit", type=int, default=0, help="use only the first N prompts")
    p.add_argument("--batch", type=int, default=16, help="prompts run together in one batched search (results "
                   "do not depend on it beyond float rounding)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("prompts", help="write a seeded benchmark prompt set (JSONL) by category")
    p.add_argument("-n", type=int, default=300, help="number of prompts (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--categories", default="", help="comma-separated subset of single,counting,pair,relation,triple")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_prompts)
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    setup_logging()
    from .io.png import ImageFileError
    from .shapes.grammar import PromptError
    from .engine.errors import EngineError
    from .shapes.scene import SceneError
    try:
        return args.func(args)
    except (PromptError, ImageFileError, SceneError, EngineError, ValueError, OSError) as e:
        print(f"gridar {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
