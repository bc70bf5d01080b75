"""Decoding speed at Janus-Pro's real shape on a GPU, in one run: our loop (static KV cache, with and without a
captured CUDA graph per decoding step) against transformers' own `generate(generation_mode="image")`, and against
the memory-bandwidth floor of the card (weight bytes / bandwidth per step, `engine.speed_plan`).

Per model (Janus-Pro-1B- and -7B-shaped: `engine.real_shape`, random weights in bf16, its BPE tokenizer and chat
template; language model at real width and depth unless --layers says fewer; 384 px, 24 x 24 tokens): one image
greedy (ours eager, ours graphed, library: tokens per second and whether the tokens are identical), Best-of-N 8
sampled (ours graphed vs the library's batch of 8), and one GridAR N=4 image (the recipe with fixed verdicts and
layouts, so only the generator is timed). Peak memory of every part: torch.cuda.max_memory_allocated on a GPU, the
process's peak RSS on a CPU. A part that fails is recorded under "errors" and the others still run.

Prints one JSON object (and writes it with --out). Designed to finish in under 8 minutes on an H100; parts that
would start after --budget seconds are skipped and named. On a CPU, or with --smoke, it runs the same parts on a
tiny model (8 x 8 tokens) in well under 30 s: the CI smoke test (tests/test_gpu_decode.py).

    .venv/bin/python benchmarks/gpu_decode.py                 # on a GPU: 1B and 7B
    .venv/bin/python benchmarks/gpu_decode.py --smoke         # anywhere: the reduced shape
    .venv/bin/python benchmarks/gpu_decode.py --sizes 1B --layers 4 --out R.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from gridar_desktop.engine import speed_plan  # noqa: E402
from gridar_desktop.engine.backend import JanusBackend  # noqa: E402
from gridar_desktop.engine.decode import decode, decode_graph, new_generator, start  # noqa: E402
from gridar_desktop.engine.sampling import SamplingParams  # noqa: E402

PROMPT = "a red circle above a blue square"


class FixedRoles:
    """Judging roles that answer at once: every view possible, one layout clause, rising scores. The benchmark times
    the generator's work (decoding, layout prefills, view decodes), not a judge's."""

    def verify(self, prompt, views, cost):
        cost.role("verifier").calls += 1
        return [0.9] * len(views)

    def score(self, prompt, images, cost):
        cost.role("scorer").calls += 1
        return [i / 10 for i in range(len(images))]

    def reformulate(self, prompts, views, cost):
        cost.role("reformulator").calls += 1
        return [p + ", with the red circle at the top" for p in prompts]


def build(size: str, layers: int | None, device: torch.device, smoke: bool) -> JanusBackend:
    """A backend on random weights: the tiny demo architecture (smoke), or Janus-Pro-`size`'s real shape in bf16
    with its BPE tokenizer and chat template (`engine.real_shape`; built on the CPU, then moved)."""
    if smoke:
        from gridar_desktop.engine.tiny import DEMO_META, tiny_janus
        model, processor = tiny_janus(seed=0, hidden=64, layers=2)
        return JanusBackend(model.to(device), processor, device, meta=dict(DEMO_META))
    from gridar_desktop.engine.real_shape import real_shape_backend
    return real_shape_backend(size, layers, device=str(device), dtype=torch.bfloat16)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int:
    """Peak memory since the last reset (GPU), or the process's peak resident set so far (CPU: not resettable)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def timed(device: torch.device, fn):
    peak_reset(device)
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0, peak_bytes(device)


def first_difference(a: torch.Tensor, b: torch.Tensor) -> int | None:
    a, b = a.flatten().cpu(), b.flatten().cpu()
    diff = (a != b).nonzero()
    return int(diff[0]) if len(diff) else None


PARTS = ("single", "best-of-8", "gridar-4")


def measure(size: str, layers: int | None, device: torch.device, smoke: bool, card, deadline: float,
            parts: tuple[str, ...] = PARTS) -> dict:
    t_build = time.perf_counter()
    backend = build(size, layers, device, smoke)
    built_s = time.perf_counter() - t_build
    model = backend.model
    total = backend.info.rows * backend.info.cols
    graph_mode = "auto" if device.type == "cuda" else "eager"     # CPU: the fixed-shape step, uncaptured
    greedy = SamplingParams(cfg=5.0, greedy=True)
    sampled = SamplingParams(cfg=5.0, temperature=1.0)
    ids = torch.tensor([backend.prompt_ids(PROMPT)], device=device)
    text_layers = model.config.text_config.num_hidden_layers
    out: dict = {"model": backend.info.folder.strip("<>") if not smoke else "tiny demo architecture (smoke)",
                 "language_layers": text_layers, "hidden": model.config.text_config.hidden_size,
                 "image_tokens": total, "prompt_tokens": ids.shape[1], "dtype": str(next(model.parameters()).dtype),
                 "build_s": round(built_s, 2), "skipped": []}
    if device.type == "cuda":
        out["weights_bytes"] = int(torch.cuda.memory_allocated(device))

    def ours(n: int, params: SamplingParams, mode: str):
        with decode_graph(mode):
            return decode(backend, start(backend, PROMPT, n), total, params, new_generator(0, device)).tokens

    def library(n: int, params: SamplingParams):
        rows = ids.repeat(n, 1)
        kw = {"do_sample": False} if params.greedy else {"do_sample": True, "temperature": 1.0}
        with torch.no_grad():
            return model.generate(input_ids=rows, attention_mask=torch.ones_like(rows), generation_mode="image",
                                  guidance_scale=params.cfg, **kw)

    def part(name: str, fn) -> bool:
        if name not in parts:
            return False
        if time.perf_counter() > deadline:
            out["skipped"].append(name)
            return False
        try:                  # one failing part must not cost the others (a lent GPU's minutes are few)
            fn()
        except Exception as e:  # noqa: BLE001
            out.setdefault("errors", {})[name] = f"{e.__class__.__name__}: {str(e).strip()[:300]}"
            if device.type == "cuda":
                torch.cuda.empty_cache()
            return False
        return True

    # warm-up: kernels, cuBLAS handles and the allocator, so the first timed part is not charged for them
    with decode_graph("off"):
        decode(backend, start(backend, PROMPT, 1), min(8, total), greedy, new_generator(0, device))
    sync(device)

    def single() -> None:
        eager, t_e, m_e = timed(device, lambda: ours(1, greedy, "off"))
        graphed, t_g, m_g = timed(device, lambda: ours(1, greedy, graph_mode))
        lib, t_l, m_l = timed(device, lambda: library(1, greedy))
        extra = {}
        if device.type == "cuda":
            # the captured step against the same fixed-shape step run without capture: the same kernels, so the
            # tokens must be identical (eager vs graph may differ in bf16 rounding: another attention kernel)
            fixed, t_f, _ = timed(device, lambda: ours(1, greedy, "eager"))
            extra = {"graph_identical_to_uncaptured_step": bool(torch.equal(fixed, graphed)),
                     "uncaptured_step_tok_s": round(total / t_f, 2)}
        out["single_greedy"] = {**extra,
            "ours_eager_tok_s": round(total / t_e, 2), "ours_graph_tok_s": round(total / t_g, 2),
            "library_tok_s": round(total / t_l, 2),
            "ours_eager_s": round(t_e, 4), "ours_graph_s": round(t_g, 4), "library_s": round(t_l, 4),
            "graph_vs_eager": round(t_g / t_e, 3), "ours_graph_vs_library": round(t_g / t_l, 3),
            "ours_eager_vs_library": round(t_e / t_l, 3),
            "identical_to_library": bool(torch.equal(eager.cpu(), lib.cpu())),
            "identity_note": "random weights give nearly tied logits: in bf16 another attention kernel (the "
                             "library's full-length masked cache) can flip a greedy pick; in float32 our loop "
                             "draws the library's tokens (benchmarks/decode_speed.py, tests/test_engine.py)",
            "first_difference_to_library": first_difference(eager, lib),
            "graph_identical_to_eager": bool(torch.equal(eager, graphed)),
            "step_ms": round(1e3 * t_g / total, 4),
            "peak_bytes": {"ours_eager": m_e, "ours_graph": m_g, "library": m_l}}

    def best_of_8() -> None:
        ours8, t_o, m_o = timed(device, lambda: ours(8, sampled, graph_mode))
        lib8, t_l, m_l = timed(device, lambda: library(8, sampled))
        out["best_of_n_8"] = {"ours_tok_s": round(8 * total / t_o, 2), "library_tok_s": round(8 * total / t_l, 2),
                              "ours_s": round(t_o, 4), "library_s": round(t_l, 4),
                              "ours_vs_library": round(t_o / t_l, 3), "step_ms": round(1e3 * t_o / total, 4),
                              "peak_bytes": {"ours": m_o, "library": m_l}}

    def gridar_4() -> None:
        from gridar_desktop.engine.search import Search, SearchRequest
        req = SearchRequest(prompt=PROMPT, method="gridar", n=4, seed=0, params=SamplingParams(cfg=5.0))

        def run():
            with decode_graph(graph_mode):
                return Search(backend, FixedRoles(), req).run()
        res, t, m = timed(device, run)
        gen = res.cost.roles["generator"]
        out["gridar_4"] = {"tok_s": round(4 * total / t, 2), "wall_s": round(t, 4), "peak_bytes": m,
                           "decode_token_rows": gen.decode_token_rows, "prefill_token_rows": gen.prefill_token_rows,
                           "note": "fixed verdicts and layouts: the generator's work only (decoding, layout "
                                   "prefills, view decodes); no judging model"}

    part("single", single)
    part("best-of-8", best_of_8)
    part("gridar-4", gridar_4)
    from gridar_desktop.engine import static_cache
    out["graph_capture_error"] = static_cache.LAST_CAPTURE_ERROR

    # the floor: weight bytes of a decoding step over the card's bandwidth (and the KV read, for the full floor)
    if card is not None and not smoke:
        shape = speed_plan.model_shape(model.config, model)
        floor_ms = {}
        for key, rows in (("single_greedy", 2), ("best_of_n_8", 16)):
            mid = out["prompt_tokens"] + total // 2
            step_floor, weight_floor, _ = speed_plan.step_seconds(shape, "bf16", rows, mid, card)
            floor_ms[key] = {"weights_only": round(1e3 * weight_floor, 4), "with_kv_read": round(1e3 * step_floor, 4)}
            if key in out:
                out[key]["step_vs_bandwidth_floor"] = round(out[key]["step_ms"] / (1e3 * weight_floor), 3)
        out["floor_step_ms"] = floor_ms
        pred = speed_plan.predict_seconds(shape, "bf16", "gridar", 4, card, prompt_tokens=out["prompt_tokens"],
                                          judge=False)
        out["predicted_gridar_4_s"] = {"floor": round(pred["floor_s"], 3), "expected": round(pred["expected_s"], 3)}
    del backend, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="the reduced shape (automatic on a CPU)")
    ap.add_argument("--full-shape", action="store_true",
                    help="build the real shape even on a CPU (slow: for checking the path, e.g. with --layers 1)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"which parts to run (of {', '.join(PARTS)})")
    ap.add_argument("--sizes", default="1B,7B", help="Janus-Pro sizes to build, comma-separated (1B, 7B)")
    ap.add_argument("--layers", type=int, default=None, help="language layers (default: the real depth)")
    ap.add_argument("--device", default="auto", help="auto (cuda when there is one), cuda or cpu")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after which no new part starts")
    ap.add_argument("--card", default=None, help="the card's name for the floor (default: the device's own)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    smoke = args.smoke or (device.type != "cuda" and not args.full_shape)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    if any(p not in PARTS for p in parts):
        ap.error(f"unknown part in --parts '{args.parts}'; use {', '.join(PARTS)}")
    card = None
    try:
        if args.card:
            card = speed_plan.card(args.card)
        elif device.type == "cuda":
            card = speed_plan.card(torch.cuda.get_device_name(device))
    except ValueError as e:
        print(f"gpu_decode: {e}; the bandwidth floor is left out", file=sys.stderr)
    sizes = ["tiny"] if smoke else [s.strip() for s in args.sizes.split(",") if s.strip()]
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "card": card.name if card else None, "smoke": smoke, "torch": torch.__version__,
              "threads": torch.get_num_threads(),
              "peak_memory_is": "torch.cuda.max_memory_allocated per part" if device.type == "cuda" else
              "the process's peak RSS so far (CPU)", "models": []}
    deadline = t0 + args.budget
    for size in sizes:
        if time.perf_counter() > deadline:
            report["models"].append({"model": size, "skipped": ["all: over the time budget"]})
            continue
        report["models"].append(measure(size, args.layers, device, smoke, card, deadline, parts))
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        from gridar_desktop.io.atomic import atomic_write_text
        atomic_write_text(args.out, text + "\n")
    return report


if __name__ == "__main__":
    main()
