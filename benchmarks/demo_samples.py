"""Render the README's sample table: demo-model generations next to their prompts and the judge's verdict.

    .venv/bin/python benchmarks/demo_samples.py [--out docs/samples] [--seed 0] [--cfg 2]

Writes small PNGs (upscaled 2x with nearest neighbour) and prints a Markdown table. The samples are the first
image for each prompt under the seed, not picked by hand.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from gridar_desktop.engine.backend import JanusBackend
from gridar_desktop.engine.models import demo_model_dir
from gridar_desktop.engine.sampling import SamplingParams
from gridar_desktop.engine.single import generate_batch
from gridar_desktop.io.atomic import atomic_open
from gridar_desktop.shapes.judge import judge

PROMPTS = ["two red circles", "a blue square above a green triangle", "a yellow triangle and two purple circles",
           "three orange squares", "a green circle to the left of a red square",
           "a red circle, a blue square and a yellow triangle", "four blue triangles",
           "two green squares and a purple triangle"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cfg", type=float, default=2.0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backend = JanusBackend.load(demo_model_dir(), device="cpu", dtype="float32")
    res = generate_batch(backend, PROMPTS, 1, SamplingParams(cfg=args.cfg), args.seed)
    print("| prompt | sample | judge |\n|---|---|---|")
    for i, (p, img) in enumerate(zip(PROMPTS, res.images)):
        path = out / f"sample_{i}.png"
        with atomic_open(path, "wb") as f:
            Image.fromarray(img).resize((128, 128), Image.NEAREST).save(f, format="PNG")
        j = judge(img, p)
        verdict = "correct" if j.strict else f"partial {j.partial:.2f}"
        print(f"| {p} | ![{p}]({path.as_posix()}) | {verdict} |")


if __name__ == "__main__":
    main()
