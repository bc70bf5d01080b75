"""`gridar`: the command line. Each sub-command prints plain text or one JSON object and exits non-zero with a
one-line message naming the problem on bad input."""
from __future__ import annotations

import argparse
import json
import sys

from . import __version__
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


def _cmd_generate(args: argparse.Namespace) -> int:
    import time

    from PIL import Image

    from .engine.backend import JanusBackend
    from .engine.models import resolve_model
    from .engine.sampling import SamplingParams
    from .engine.single import generate_batch
    from .io.png import save_png
    t0 = time.perf_counter()
    backend = JanusBackend.load(resolve_model(args.model), device=args.device, dtype=args.dtype)
    load_s = time.perf_counter() - t0
    params = SamplingParams(cfg=args.cfg, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    out = generate_batch(backend, [args.prompt], 1, params, args.seed)
    settings = {"method": args.method, "model": args.model, "seed": args.seed, "cfg": args.cfg,
                "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "n": 1,
                "device": str(backend.device)}
    meta = {"settings": settings, "tokens": out.tokens[0].tolist(), "cost": out.cost.to_json()}
    save_png(Image.fromarray(out.images[0]), args.output, args.prompt, meta)
    if args.json:
        print(json.dumps({"output": args.output, "prompt": args.prompt, **settings, "load_seconds": round(load_s, 3),
                          "cost": out.cost.to_json()}))
    else:
        print(args.output)
    return 0


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
    p.add_argument("--method", default="single", choices=["single"],
                   help="single: one sample with classifier-free guidance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cfg", type=float, default=3.0, help="guidance scale, Janus convention (default 3)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    p.add_argument("-o", "--output", default="out.png")
    p.add_argument("--json", action="store_true", help="print a JSON summary with the cost record")
    p.set_defaults(func=_cmd_generate)

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
