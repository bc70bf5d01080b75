"""How long a run should take on a GPU, from the model's config, the dtype and the card: a roofline estimate.

A decoding step feeds one token per cache row, so at batch sizes like GridAR's (8-12 rows) it is bound by memory
traffic: every step reads all the weights the step uses plus the whole KV cache. Its floor is
    max((weight bytes + KV bytes read) / bandwidth, FLOPs / peak FLOPs),
and the pure weight-streaming floor (weight bytes / bandwidth) is what `benchmarks/gpu_decode.py` compares measured
steps against. Prefills, the VQ decodes of views and finished images, and the judging calls (the generator's own
understanding path: the vision encoder plus a prefill of image features and question, and the reformulator's
generated words) are added the same way.

Two totals: `floor_s` at the card's datasheet peaks (a run cannot be faster), and `expected_s`, the floor divided by
assumed efficiencies (`EFFICIENCY`: typical shares of peak that single-token decode kernels and large GEMMs reach,
plus a per-step cost of sampling on the host). The efficiencies are assumptions, not measurements; replace them with
the ratios `benchmarks/gpu_decode.py` measures on the card.

Card numbers are vendor datasheet values (dense bf16 tensor throughput, no sparsity; memory bandwidth).
"""
from __future__ import annotations

from dataclasses import dataclass

from .memory_plan import (JUDGE_QUESTION_TOKENS, ModelShape, _dtype, _size, kv_bytes_per_position, model_shape)


@dataclass(frozen=True)
class Card:
    name: str
    bandwidth_gbs: float        # memory bandwidth, GB/s (10^9 bytes)
    bf16_tflops: float          # dense bf16 tensor-core peak, TFLOPS (fp32 accumulate where the vendor says)
    memory_gb: float


CARDS: dict[str, Card] = {c.name: c for c in (
    Card("H200", 4800, 989, 141),
    Card("H100 SXM", 3350, 989, 80),
    Card("H100 PCIe", 2000, 756, 80),
    Card("A100 80GB", 2039, 312, 80),
    Card("A100 40GB", 1555, 312, 40),
    Card("L40S", 864, 362, 48),
    Card("RTX 6000 Ada", 960, 364, 48),
    Card("RTX A6000", 768, 155, 48),
    Card("RTX 4090", 1008, 165, 24),
    Card("RTX 3090", 936, 71, 24),
    Card("L4", 300, 121, 24),
    Card("A10", 600, 125, 24),
)}

# Assumed shares of peak (see the module text): decode kernels of one token per row stream weights at ~75% of the
# bandwidth; large GEMMs (prefill, judging) reach ~50% of the tensor peak; the VQ decoder's convolutions ~30%;
# each decoding step also pays ~50 us of sampling and bookkeeping on the host that CUDA graphs do not remove.
EFFICIENCY = {"bandwidth": 0.75, "compute": 0.5, "conv": 0.3, "step_overhead_s": 50e-6}

# The special-token ids a config records do not change its shape: fixed ones spare training the test tokenizer.
_SHAPE_IDS = {"bos": 0, "eos": 1, "pad": 2, "image": 3}


def janus_pro_config(size: str, layers: int | None = None):
    """Janus-Pro-`size`'s `JanusConfig` at its real dimensions (`engine.real_shape`), optionally with fewer
    language layers (a test model of the real width)."""
    from .real_shape import janus_pro_config as real
    return real(size, layers=layers, token_ids=_SHAPE_IDS)


def card(name: str) -> Card:
    """A card by our name ("H100 SXM") or by what `torch.cuda.get_device_name()` says ("NVIDIA H100 80GB HBM3")."""
    if name in CARDS:
        return CARDS[name]
    low = name.lower().replace("-", " ")
    rules = (("h200", "H200"), ("h100 pcie", "H100 PCIe"), ("h100", "H100 SXM"), ("a100", None),
             ("l40s", "L40S"), ("rtx 6000 ada", "RTX 6000 Ada"), ("a6000", "RTX A6000"), ("4090", "RTX 4090"),
             ("3090", "RTX 3090"), ("l4", "L4"), ("a10", "A10"))
    for key, ours in rules:
        if key in low:
            if key == "a100":
                return CARDS["A100 40GB" if "40gb" in low.replace(" ", "") else "A100 80GB"]
            return CARDS[ours]
    raise ValueError(f"no numbers for the card '{name}'; known: {', '.join(CARDS)}")


def _shape(config) -> ModelShape:
    return config if isinstance(config, ModelShape) else model_shape(config)


def decode_params(shape: ModelShape) -> int:
    """Weights a decoding step reads: the decoder layers, the final norm, and the image head with its embeddings
    and aligner (the text vocabulary's embedding and output head are not used while drawing image tokens)."""
    attn = shape.hidden * shape.heads * shape.head_dim * 2 + shape.hidden * shape.kv_heads * shape.head_dim * 2
    layer = attn + 3 * shape.hidden * shape.intermediate + 2 * shape.hidden
    return shape.layers * layer + shape.hidden + shape.params.get("image head", 0)


def lm_params(shape: ModelShape) -> int:
    """Weights of a text forward (the whole language model: layers, embeddings read by rows only, output head)."""
    return shape.params.get("language model", decode_params(shape))


def step_seconds(shape: ModelShape, dtype, rows: int, positions: int, c: Card) -> tuple[float, float, bool]:
    """(floor seconds, weight-streaming floor seconds, compute-bound?) of one decoding step of `rows` rows that
    attend to `positions` cached positions each."""
    b = _size(_dtype(dtype))
    weights = decode_params(shape) * b
    kv_read = kv_bytes_per_position(shape, dtype) * rows * positions
    flops = 2 * decode_params(shape) * rows + 4 * rows * positions * shape.heads * shape.head_dim * shape.layers
    mem_s = (weights + kv_read) / (c.bandwidth_gbs * 1e9)
    flop_s = flops / (c.bf16_tflops * 1e12)
    return max(mem_s, flop_s), weights / (c.bandwidth_gbs * 1e9), flop_s > mem_s


def prefill_seconds(params: int, tokens: int, dtype, c: Card) -> float:
    """Floor of a forward over `tokens` positions through `params` weights: FLOPs at peak, or reading the weights
    once, whichever is longer."""
    return max(2 * params * tokens / (c.bf16_tflops * 1e12), params * _size(_dtype(dtype)) / (c.bandwidth_gbs * 1e9))


def vq_decode_flops(shape: ModelShape, res_blocks: int = 2) -> float:
    """FLOPs of one VQ decode (tokens -> pixels), counted on its 3x3 convolutions: the middle blocks at the latent
    resolution, then per level `res_blocks + 1` residual blocks (two convolutions each) and an upsampling
    convolution, the resolution doubling per level (transformers' JanusVQVAEDecoder layout)."""
    mult = shape.vq_channel_multiplier
    side = shape.vq_latent
    ch = shape.vq_base_channels * mult[-1]

    def conv(cin: int, cout: int, s: int) -> float:
        return 2.0 * 9 * cin * cout * s * s
    total = conv(shape.vq_latent_channels, ch, side) + 4 * conv(ch, ch, side)       # conv_in, 2 middle blocks
    for level, m in enumerate(reversed(mult)):
        out = shape.vq_base_channels * m
        for _ in range(res_blocks + 1):
            total += conv(ch, out, side) + conv(out, out, side)
            ch = out
        if level < len(mult) - 1:
            side *= 2
            total += conv(ch, ch, side)
    return total + conv(ch, 3, side)


def vision_params(shape: ModelShape) -> int:
    return shape.params.get("vision encoder", 0)


def predict_seconds(config, dtype, method: str, n: int, card_name: str | Card, prompt_tokens: int = 40,
                    clause_tokens: int = 24, judge: bool = True, previews: bool = False,
                    efficiency: dict | None = None) -> dict:
    """A run's GPU time by part, as `gridar generate` runs it: `method` single | best-of-n | gridar with `n`
    candidates, GridAR with its default schedule (verify and reformulate at 1/4 and 1/2, three-way guidance after
    the first quarter), judged by the generator's own understanding path. `previews`: the studio's live previews
    (every token row of every candidate decoded). Returns seconds per part, `floor_s` and `expected_s` (see the
    module text), and the per-step numbers."""
    if method not in ("single", "best-of-n", "gridar"):
        raise ValueError(f"unknown method '{method}'; use single, best-of-n or gridar")
    if n < 1:
        raise ValueError("n must be at least 1")
    shape = _shape(config)
    c = card_name if isinstance(card_name, Card) else card(card_name)
    eff = {**EFFICIENCY, **(efficiency or {})}
    n = 1 if method == "single" else n
    total = shape.image_tokens
    quarter = total // 4
    gridar = method == "gridar"

    # decoding: one step per image token, all candidates together; GridAR adds the layout row after 1/4
    decode_floor = weight_floor = decode_expected = 0.0
    compute_bound = 0
    for k in range(total):
        rows = (3 if gridar and k >= quarter else 2) * n
        positions = prompt_tokens + (clause_tokens if gridar and k >= quarter else 0) + k
        s, w, cb = step_seconds(shape, dtype, rows, positions, c)
        decode_floor += s
        weight_floor += w
        compute_bound += cb
        decode_expected += (s / eff["compute"] if cb else s / eff["bandwidth"]) + eff["step_overhead_s"]

    # prefills: the prompt's two rows once; GridAR's layout rows (prompt, clause and anchor) at 1/4 and 1/2
    prefill_tokens = 2 * prompt_tokens
    if gridar:
        prefill_tokens += n * (2 * (prompt_tokens + clause_tokens) + 3 * quarter)      # anchors of 1/4 and 1/2
    prefill = prefill_seconds(decode_params(shape), prefill_tokens, dtype, c)

    # judging: per candidate and call, the vision encoder on one image and a prefill of its features and the
    # question; the reformulator also writes `clause_tokens` words (steps of n rows through the whole LM)
    judge_calls = (3 if gridar else 1) if judge and method != "single" else 0     # gridar: 2 verdicts + final score
    reform_calls = 2 if judge and gridar else 0
    per_view = (prefill_seconds(vision_params(shape), shape.image_features, dtype, c)
                + prefill_seconds(lm_params(shape), shape.image_features + JUDGE_QUESTION_TOKENS, dtype, c))
    judging = (judge_calls + reform_calls) * n * per_view
    b = _size(_dtype(dtype))
    words = reform_calls * clause_tokens * lm_params(shape) * b / (c.bandwidth_gbs * 1e9)

    # VQ decodes: the views verified (GridAR: 2 per candidate), the finished images, and the live previews
    vq_images = n + (2 * n if gridar and judge else 0) + (shape.vq_latent * n if previews else 0)
    vq = vq_images * vq_decode_flops(shape) / (c.bf16_tflops * 1e12)

    floor = decode_floor + prefill + judging + words + vq
    expected = (decode_expected + prefill / eff["compute"] + judging / eff["compute"] + words / eff["bandwidth"]
                + reform_calls * clause_tokens * eff["step_overhead_s"] + vq / eff["conv"])
    return {
        "card": c.name, "dtype": str(_dtype(dtype)).replace("torch.", ""), "method": method, "n": n,
        "decode_steps": total, "decode_params": decode_params(shape),
        "weight_bytes_per_step": decode_params(shape) * b,
        "step_floor_ms": round(1e3 * decode_params(shape) * b / (c.bandwidth_gbs * 1e9), 4),
        "compute_bound_steps": compute_bound,
        "decode_s": decode_floor, "decode_weight_floor_s": weight_floor, "prefill_s": prefill,
        "judging_s": judging + words, "vq_s": vq, "vq_images": vq_images,
        "floor_s": floor, "expected_s": expected, "efficiency": eff,
    }
