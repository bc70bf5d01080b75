"""Judge throughput: images judged per second on ground-truth renders (prints one JSON object).

    .venv/bin/python benchmarks/judge_speed.py [--n 2000]
"""
from __future__ import annotations

import argparse
import json
import time

from gridar_desktop.shapes.judge import judge
from gridar_desktop.shapes.promptsets import make_prompt_set
from gridar_desktop.shapes.scene import make_scene


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    rows = make_prompt_set(args.n, 0)
    t0 = time.perf_counter()
    scenes = [(r["prompt"], make_scene(r["prompt"], i)[0]) for i, r in enumerate(rows)]
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    strict = sum(judge(img, p).strict for p, img in scenes)
    t_judge = time.perf_counter() - t0
    print(json.dumps({"images": args.n, "images_judged_per_s": round(args.n / t_judge, 1),
                      "ms_per_judgement": round(1000 * t_judge / args.n, 3),
                      "scenes_rendered_per_s": round(args.n / t_render, 1),
                      "strict_on_ground_truth": strict / args.n}))


if __name__ == "__main__":
    main()
