"""Memory of Janus-Pro-1B and -7B runs, computed by the planner (`gridar_desktop.engine.memory_plan`), on common
card sizes: one JSON object, then a Markdown table for the README. Nothing is downloaded or allocated: the models
are built on the meta device from their published dimensions.

    .venv/bin/python benchmarks/memory_table.py [--dtype bf16] [--prompt-tokens 40] [--format both|json|md]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridar_desktop.engine.memory_plan import GIB, gb, model_shape, plan  # noqa: E402

# Dimensions of the language models as published in deepseek-ai/Janus-Pro-1B and -7B's config.json
# ("language_config"); not read from a folder here (none can be downloaded). Both use full multi-head attention
# (key/value heads = heads) and an output head separate from the input embeddings.
MODELS = {
    "Janus-Pro-1B": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
                     "num_attention_heads": 16},
    "Janus-Pro-7B": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 30,
                     "num_attention_heads": 32},
}
VOCAB = 102400
RUNS = (("GridAR N=4", {"method": "gridar", "n": 4}), ("GridAR N=8", {"method": "gridar", "n": 8}),
        ("Best-of-N 8", {"method": "best-of-n", "n": 8}))
CARDS_GB = (12, 24, 48, 80)
# What the CUDA context and driver take before the first tensor (about 0.5 GB on current drivers; varies).
CUDA_CONTEXT = 0.5 * GIB

ASSUMED = [
    "language models: Janus-Pro-1B hidden 2048, MLP 5632, 24 layers, 16 heads; Janus-Pro-7B hidden 4096, MLP 11008, "
    "30 layers, 32 heads; both vocabulary 102400, key/value heads = heads (head size 128), output head not tied "
    "to the embeddings (published config values, not read from a folder here)",
    "vision encoder: SigLIP-L/16 at 384 px (hidden 1024, 24 layers, 16 heads, MLP 4096: transformers' "
    "JanusVisionConfig defaults), 576 features, aligner of 2 layers into the language model's width",
    "VQ: 16384 codes x 8 dimensions, 24 x 24 tokens -> 384 px, channels 128 x (1, 1, 2, 2, 4), 2 residual blocks "
    "per level (transformers' JanusVQVAEConfig defaults)",
    "prompt rows of {prompt} tokens (chat template included), a layout clause of up to 24 tokens (GridAR), 576 "
    "image tokens",
    "GridAR as `gridar generate` runs it: three-way guidance (3 cache rows per candidate), verdicts read off "
    "partial views, judging by the generator's own understanding path on all candidates at once (576 image "
    "features + 128 question tokens + 24 answer tokens per candidate); Best-of-N: 2 rows per candidate",
    "a card's memory in GiB, less {context:.1f} GB for the CUDA context",
    "weights counted on the architecture in {dtype}: every tensor at 2 bytes; the planner's margin: 256 MB + 10% "
    "of the run's cache and transient tensors",
]


def janus_pro_config(name: str) -> dict:
    lm = MODELS[name]
    hidden = lm["hidden_size"]
    return {"model_type": "janus", "tie_word_embeddings": False,
            "text_config": {"model_type": "llama", "vocab_size": VOCAB, "num_key_value_heads":
                            lm["num_attention_heads"], "max_position_embeddings": 16384, **lm},
            "vision_config": {"image_size": 384, "patch_size": 16, "num_image_tokens": 576,
                              "projection_dim": hidden},
            "vq_config": {"num_embeddings": 16384, "embed_dim": 8, "projection_dim": hidden,
                          "image_token_embed_dim": hidden}}


def table(dtype: str = "bf16", prompt_tokens: int = 40) -> dict:
    rows = []
    for name in MODELS:
        shape = model_shape(janus_pro_config(name))
        for label, run in RUNS:
            p = plan(shape, dtype, prompt_tokens=prompt_tokens, **run)
            cards = {str(c): p.fits(int(c * GIB - CUDA_CONTEXT)) for c in CARDS_GB}
            largest = {str(c): p.largest_n(int(c * GIB - CUDA_CONTEXT)) for c in CARDS_GB}
            rows.append({"model": name, "run": label, "parameters": sum(shape.params.values()),
                         "total_bytes": p.total, "total": gb(p.total), "peak": p.phase,
                         "parts": {k: gb(v) for k, v in p.parts().items()}, "fits": cards,
                         "largest_n": largest})
    return {"dtype": dtype, "prompt_tokens": prompt_tokens, "cards_gb": list(CARDS_GB),
            "assumed": [a.format(prompt=prompt_tokens, context=CUDA_CONTEXT / GIB, dtype=dtype) for a in ASSUMED],
            "rows": rows}


def markdown(t: dict) -> str:
    cards = t["cards_gb"]
    out = [f"| Model ({t['dtype']}) | Run | Memory | " + " | ".join(f"{c} GB" for c in cards) + " |",
           "|---|---|---:|" + "---|" * len(cards)]
    for r in t["rows"]:
        marks = []
        for c in cards:
            ok = r["fits"][str(c)]
            largest = r["largest_n"][str(c)]
            more = f"N up to {largest}" if r["run"].startswith("GridAR") or ok else f"N={largest} fits"
            marks.append(f"fits ({more})" if ok else (f"no ({more})" if largest else "no"))
        out.append(f"| {r['model']} | {r['run']} | {r['total']} | " + " | ".join(marks) + " |")
    out.append("")
    out.append(f"Prompt of {t['prompt_tokens']} tokens. Assumed: " + "; ".join(t["assumed"]) + ".")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--prompt-tokens", type=int, default=40)
    ap.add_argument("--format", default="both", choices=["both", "json", "md"])
    args = ap.parse_args(argv)
    if not 1 <= args.prompt_tokens <= 16384:
        ap.error("--prompt-tokens must be 1 to 16384")
    t = table(args.dtype, args.prompt_tokens)
    if args.format in ("both", "json"):
        print(json.dumps(t))
    if args.format in ("both", "md"):
        print(markdown(t))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
