"""CPU precision: float32 vs bfloat16 vs mixed (bfloat16 language model, float32 VQ and vision encoder), and the
row-limited preview decode (`JanusBackend.decode_rows`), measured in one run. Prints one JSON object.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cpu_precision.py
    # the same on a CPU without native bfloat16 (as the issue's): torch's kernels limited to AVX2
    OMP_NUM_THREADS=1 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/cpu_precision.py

Models (random weights, built here; nothing downloaded):
- "real_width": Janus-Pro-1B's language width (hidden 2048, MLP 5632, vocabulary 102400, 16 heads) with 2 of its 24
  layers, the real VQ (base 128 x [1, 1, 2, 2, 4], 16384 x 8 codes, 24 x 24 tokens -> 384 px) and SigLIP-L at 384 px
  with 2 of its 24 layers (`--vision-layers`).
- "demo": the bundled shapes model (5 layers x 256, 64 px), loaded from its folder as the app does.
- "mid_width": hidden 1024 (`--mid-hidden`), 2 layers: a point between the two for the "auto" threshold.

Times are medians of `--runs` repeats, every configuration measured in the same process; ratios are what to read
(other processes share this machine). A decoding step is the app's own loop (`engine.decode.decode`) for 4
candidates x (cond, uncond) = 8 cache rows; "mixed" is the bfloat16 model with `set_pixel_precision(float32)`.
VQ speed per precision is measured on a strip of `--strip` token rows (a full 384 px decode in bfloat16 takes
minutes on an AVX2 CPU), and the full 384 px decode in float32.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Iterator

import numpy as np
import torch

from gridar_desktop.engine.backend import (CPU_BF16_MIN_STEP_PARAMS, PREVIEW_MARGIN, JanusBackend, lm_step_params,
                                           resolve_precision, set_pixel_precision)
from gridar_desktop.engine.decode import decode, new_generator, start
from gridar_desktop.engine.sampling import SamplingParams

PROMPT = "a red circle above a blue square"


def timed(fn, runs: int) -> float:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def janus(hidden: int, layers: int, heads: int, inter: int, vision_layers: int, real_pixels: bool):
    """A random `JanusForConditionalGeneration`; `real_pixels`: SigLIP-L 384 px (fewer layers) and the real VQ, else
    the demo's small vision encoder and VQ (only the language model is timed then)."""
    from transformers import JanusConfig, JanusForConditionalGeneration, JanusVisionConfig, JanusVQVAEConfig, \
        LlamaConfig

    from gridar_desktop.engine.demo_format import BOS, EOS, IMAGE, PAD, janus_config, set_generation_config
    torch.manual_seed(0)
    text = LlamaConfig(vocab_size=102400, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=4096,
                       bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, tie_word_embeddings=False)
    if real_pixels:
        vision = JanusVisionConfig(num_hidden_layers=vision_layers, projection_dim=hidden)
        vq = JanusVQVAEConfig(num_patches=24, projection_dim=hidden, image_token_embed_dim=hidden)
    else:
        demo = janus_config(hidden=hidden)
        vision, vq = demo.vision_config, demo.vq_config
    cfg = JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=IMAGE)
    model = JanusForConditionalGeneration(cfg).eval()
    set_generation_config(model)
    return model, cfg


def backend_of(model) -> JanusBackend:
    from gridar_desktop.engine.demo_format import build_processor
    from gridar_desktop.engine.tiny import DEMO_META
    b = JanusBackend(model, build_processor(), "cpu", meta=dict(DEMO_META))
    b._blank = 0                    # the blank code is found by a VQ encode; any code times the same
    return b


def step_seconds(b: JanusBackend, runs: int, tokens: int = 24) -> float:
    """Seconds per decoding step of 4 candidates x 2 guidance rows, after a prompt and one token row."""
    params = SamplingParams(cfg=5.0)
    state = decode(b, start(b, PROMPT, 4), b.info.cols, params, new_generator(0))
    return timed(lambda: decode(b, state, tokens, params, new_generator(1)), runs) / tokens


def precisions(model) -> Iterator[tuple[str, object]]:
    """Cast `model` in place through float32 -> bfloat16 -> mixed, yielding each name with the model in it."""
    yield "float32", model.float()
    yield "bfloat16", model.to(torch.bfloat16)
    set_pixel_precision(model, torch.float32)
    yield "mixed", model


def real_width(args) -> dict:
    model, cfg = janus(2048, 2, 16, 5632, args.vision_layers, real_pixels=True)
    b = backend_of(model)
    R = b.info.rows
    codes = torch.randint(0, b.info.codebook, (1, R * b.info.cols), generator=torch.Generator().manual_seed(0))
    pv = torch.rand(1, 3, 384, 384) * 2 - 1
    prefix = torch.randn(4, 650, 2048) * 0.02           # the understanding prefix of 4 candidates (~650 tokens)
    out: dict = {"step_params": lm_step_params(cfg.to_dict()), "rows": R, "vision_layers": args.vision_layers}
    for name, m in precisions(model):
        r: dict = {}
        r["decode_step_s"] = step_seconds(b, args.runs)

        def prefill(m=m) -> None:
            from transformers import DynamicCache
            lm_dt = next(m.model.language_model.parameters()).dtype
            b.forward(prefix.to(lm_dt), None, torch.arange(650).expand(4, -1), DynamicCache(config=cfg.text_config))
        with torch.inference_mode():
            r["prefill_4x650_s"] = timed(prefill, 1)
            r["vision_1_image_s"] = timed(lambda: m.model.get_image_features(pv), args.runs)
        r[f"vq_strip_{args.strip}_rows_s"] = timed(lambda: b.decode_rows(codes, args.strip, margin=0), args.runs)
        if name != "bfloat16":               # minutes on an AVX2 CPU: the strip gives its ratio
            r["vq_full_384px_s"] = timed(lambda: b.decode_tokens(codes), 1)
        out[name] = r
    f32 = out["float32"]
    for name in ("bfloat16", "mixed"):
        out[name]["vs_float32"] = {k: round(out[name][k] / f32[k], 3) for k in out[name] if k in f32}
    # the preview decode: cost and closeness to the full decode, on the float32 VQ (random weights: the codes are
    # noise, harder on a window than an image's correlated codes; the demo below has a trained VQ)
    set_pixel_precision(model, torch.float32)
    out["decode_rows"] = preview_closeness(b, codes, args.preview_rows, args.margins, args.runs)
    return out


def preview_closeness(b: JanusBackend, codes: torch.Tensor, rows_list: list[int], margins: list[int],
                      runs: int) -> dict:
    """For k = rows * cols drawn codes: the full `decode_tokens` against `decode_rows` of the top `rows` rows and of
    the last drawn row alone (`first` = rows - 1), per margin: mean / max absolute difference (0-255) over the
    shown pixels, and time as a fraction of the full decode."""
    C, f = b.info.cols, b.info.image_size // b.info.rows
    full_s = timed(lambda: b.decode_tokens(codes), 1)
    res: dict = {"full_decode_s": round(full_s, 3)}
    for rows in rows_list:
        t = codes[:, :rows * C]
        ref = b.decode_tokens(t).astype(int)
        for m in margins:
            for first, what in ((0, "top"), (rows - 1, "last_row")):
                img = b.decode_rows(t, rows, first=first, margin=m).astype(int)
                d = np.abs(img[:, first * f:rows * f] - ref[:, first * f:rows * f])
                s = timed(lambda: b.decode_rows(t, rows, first=first, margin=m), runs)
                res[f"rows_{rows}_{what}_margin_{m}"] = {"mean_abs": round(float(d.mean()), 2),
                                                          "p99_abs": int(np.percentile(d, 99)),
                                                          "max_abs": int(d.max()),
                                                          "time_vs_full": round(s / full_s, 3)}
    return res


def demo(args) -> dict:
    from gridar_desktop.engine.models import demo_model_dir
    b = JanusBackend.load(demo_model_dir(), "cpu", "float32")
    out: dict = {"step_params": lm_step_params(json.loads((demo_model_dir() / "config.json").read_text())),
                 "auto": resolve_precision("auto", "cpu", json.loads((demo_model_dir() / "config.json").read_text()))
                 .words()}
    params = SamplingParams(cfg=2.0)
    total = b.info.rows * b.info.cols

    def image() -> torch.Tensor:
        return decode(b, start(b, PROMPT, 4), total, params, new_generator(0)).tokens
    ref = image()
    for name, m in precisions(b.model):
        toks = image()
        out[name] = {"image_4_candidates_s": timed(image, args.runs),
                     "vq_decode_4_s": timed(lambda: b.decode_tokens(ref), args.runs),
                     "tokens_equal_to_float32": bool(torch.equal(toks, ref)),
                     "tokens_same_fraction": round(float((toks == ref).float().mean()), 4)}
    for name in ("bfloat16", "mixed"):
        out[name]["vs_float32"] = {k: round(out[name][k] / out["float32"][k], 3) for k in
                                   ("image_4_candidates_s", "vq_decode_4_s")}
    b = JanusBackend.load(demo_model_dir(), "cpu", "float32")          # the VQ as loaded, not round-tripped
    out["decode_rows"] = preview_closeness(b, ref, [2, 4], args.margins, args.runs)
    return out


def mid_width(args) -> dict:
    model, cfg = janus(args.mid_hidden, 2, 16, int(args.mid_hidden * 2.75), 1, real_pixels=False)
    b = backend_of(model)
    out: dict = {"hidden": args.mid_hidden, "step_params": lm_step_params(cfg.to_dict())}
    for name, _ in precisions(model):
        if name != "mixed":                   # mixed steps are bfloat16 steps
            out[name] = {"decode_step_s": step_seconds(b, args.runs)}
    out["bfloat16"]["vs_float32"] = round(out["bfloat16"]["decode_step_s"] / out["float32"]["decode_step_s"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vision-layers", type=int, default=2)
    ap.add_argument("--strip", type=int, default=4, help="token rows of the VQ strip timed in every precision")
    ap.add_argument("--preview-rows", type=int, nargs="+", default=[4, 12])
    ap.add_argument("--margins", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--mid-hidden", type=int, default=1024)
    ap.add_argument("--parts", nargs="+", default=["demo", "mid_width", "real_width"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res: dict = {"threads": args.threads, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                 "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                 "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
                 "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                 "auto_threshold_step_params": CPU_BF16_MIN_STEP_PARAMS, "preview_margin": PREVIEW_MARGIN}
    parts = {"demo": demo, "mid_width": mid_width, "real_width": real_width}
    for name in args.parts:
        t0 = time.perf_counter()
        res[name] = parts[name](args)
        res[name]["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(rounded(res), indent=1))


def rounded(x):
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return round(x, 4) if isinstance(x, float) else x


if __name__ == "__main__":
    main()
