"""Our decoding loop vs transformers' own `generate(generation_mode="image")` on one tiny Janus model, in one run.

Prints one JSON object: greedy_identical (same 64 tokens), time_ratio = ours / library (median over runs),
and the time of 4 branched candidates relative to 1 candidate (our loop). Our loop runs on its default static
(preallocated) KV cache; `static_vs_dynamic` and `static_vs_dynamic_n4` are its time over the same loop on
transformers' growing DynamicCache (1 and 4 candidates, sampled), and `dynamic_identical` says whether both caches
drew the same tokens.

    .venv/bin/python benchmarks/decode_speed.py [--runs 7] [--hidden 64 --layers 2]
    .venv/bin/python benchmarks/decode_speed.py --hidden 2048 --heads 16 --layers 2   # Janus-Pro-1B's width

`cache_append_ms`: the cache's own cost per decoding step, apart from the model, at Janus-Pro-1B's cache shape (16
heads x 128, float32) for GridAR N=4's 12 rows over the last 64 of 616 positions (a 40-token prompt + 576 image
tokens), per layer: the growing cache rewrites every position each step, the static one writes one.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from gridar_desktop.engine.decode import decode, kv_cache_kind, new_generator, start
from gridar_desktop.engine.sampling import SamplingParams
from gridar_desktop.engine.tiny import tiny_backend


def cache_append_ms(rows: int = 12, heads: int = 16, dim: int = 128, positions: int = 616, steps: int = 64,
                    runs: int = 5) -> dict:
    """Median milliseconds per step of appending one position to one layer's keys and values, per cache kind."""
    from transformers import DynamicCache

    from gridar_desktop.engine.static_cache import StaticKVCache
    start_len = positions - steps
    past = torch.randn(rows, heads, start_len, dim)
    new = torch.randn(rows, heads, 1, dim)
    out = {}
    for kind in ("dynamic", "static"):
        times = []
        for _ in range(runs):
            cache = DynamicCache() if kind == "dynamic" else StaticKVCache(1, positions)
            cache.update(past, past, 0)
            t0 = time.perf_counter()
            for _ in range(steps):
                cache.update(new, new, 0)
            times.append((time.perf_counter() - t0) / steps * 1e3)
        out[kind] = round(statistics.median(times), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    backend = tiny_backend(hidden=args.hidden, layers=args.layers, heads=args.heads)
    model = backend.model
    prompt = "a red circle above a blue square"
    ids = torch.tensor([backend.prompt_ids(prompt)])
    total = backend.info.rows * backend.info.cols
    greedy = SamplingParams(cfg=5.0, greedy=True)

    def ours(n: int = 1, params: SamplingParams = greedy, kind: str = "static") -> torch.Tensor:
        with kv_cache_kind(kind):
            return decode(backend, start(backend, prompt, n), total, params, new_generator(0)).tokens

    def library() -> torch.Tensor:
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_mode="image",
                                  do_sample=False, guidance_scale=5.0)

    def timed(fn, *a) -> float:
        t0 = time.perf_counter()
        fn(*a)
        return time.perf_counter() - t0

    identical = bool(torch.equal(ours(), library()))
    sampled = SamplingParams(cfg=5.0, temperature=1.0)
    dyn_identical = bool(torch.equal(ours(), ours(1, greedy, "dynamic"))
                         and torch.equal(ours(4, sampled), ours(4, sampled, "dynamic")))
    ours_t, lib_t, one_t, four_t, dyn_one_t, dyn_four_t = [], [], [], [], [], []
    for _ in range(args.runs):        # interleaved, so machine noise hits every side alike
        ours_t.append(timed(ours))
        lib_t.append(timed(library))
        one_t.append(timed(ours, 1, sampled))
        dyn_one_t.append(timed(ours, 1, sampled, "dynamic"))
        four_t.append(timed(ours, 4, sampled))
        dyn_four_t.append(timed(ours, 4, sampled, "dynamic"))
    med = statistics.median
    print(json.dumps({
        "model": {"hidden": args.hidden, "layers": args.layers, "image_tokens": total,
                  "generator_params": backend.info.generator_params},
        "threads": args.threads, "runs": args.runs,
        "greedy_identical": identical,
        "ours_s": round(med(ours_t), 4), "library_s": round(med(lib_t), 4),
        "time_ratio": round(med(ours_t) / med(lib_t), 3),
        "four_candidates_vs_one": round(med(four_t) / med(one_t), 3),
        "dynamic_identical": dyn_identical,
        "static_vs_dynamic": round(med(one_t) / med(dyn_one_t), 3),
        "static_vs_dynamic_n4": round(med(four_t) / med(dyn_four_t), 3),
        "cache_append_ms": cache_append_ms(),
    }))


if __name__ == "__main__":
    main()
