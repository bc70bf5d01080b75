"""Original Janus tensor names -> transformers' `JanusForConditionalGeneration` names.

The original `MultiModalityCausalLM` (deepseek-ai/Janus, janus/models) holds:
- `vision_model.vision_tower`: a timm-style SigLIP ViT (patch_embed.proj, pos_embed (1, N, D), blocks.i.{norm1,
  attn.qkv (q, k and v stacked), attn.proj, norm2, mlp.fc1, mlp.fc2}, norm, and an attention-pooling head that
  Janus never runs);
- `aligner`, `gen_aligner`: `MlpProjector`, a Sequential of Linear, GELU, Linear, ... (weights at even indices);
- `gen_vision_model`: the VQ model; encoder / decoder levels are `conv_blocks.i` with `res.j`, `attn.j` and
  `downsample` / `upsample`, the middle is a 3-item list (resnet, attention, resnet); `quantize.codebook_used` is
  a training statistic;
- `gen_head` (`output_mlp_projector`, GELU, `vision_head`), `gen_embed`, and `language_model` (LlamaForCausalLM).
The transformers names follow the same modules one to one (both keep the decoder's levels in the same order), so
each rule is a rename; only the vision qkv is split into three tensors and pos_embed loses its leading 1.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    key: str                    # the transformers name
    part: int = 0               # which of `parts` equal chunks along dim 0 (the qkv split)
    parts: int = 1
    squeeze: bool = False       # drop a leading dimension of size 1 (pos_embed)


_P = r"(weight|bias)"
_RESNET_OR_ATTN = r"((?:norm1|norm2|conv1|conv2|nin_shortcut|norm|q|k|v|proj_out)\.(?:weight|bias))"
_MID = {"0": "block_1", "1": "attn_1", "2": "block_2"}


def _mlp(prefix: str, index: str, param: str) -> list[Target] | None:
    """MlpProjector's Sequential index -> transformers' fc1 / hidden_layers.k (odd indices are the GELUs)."""
    i = int(index)
    if i % 2:
        return None
    return [Target(f"{prefix}.fc1.{param}" if i == 0 else f"{prefix}.hidden_layers.{i // 2 - 1}.{param}")]


def _vq(rest: str) -> list[Target] | None:
    out = "model.vqmodel."
    if rest == "quantize.codebook_used":
        return []                               # usage counts kept for training, not a weight
    if re.fullmatch(rf"(quantize\.embedding\.weight|(post_)?quant_conv\.{_P})", rest):
        return [Target(out + rest)]
    m = re.fullmatch(rf"(encoder|decoder)\.(conv_in|conv_out|norm_out)\.{_P}", rest)
    if m:
        return [Target(out + rest)]
    m = re.fullmatch(rf"(encoder|decoder)\.mid\.([012])\.{_RESNET_OR_ATTN}", rest)
    if m:
        return [Target(f"{out}{m[1]}.mid.{_MID[m[2]]}.{m[3]}")]
    m = re.fullmatch(rf"(encoder|decoder)\.conv_blocks\.(\d+)\.(res|attn)\.(\d+)\.{_RESNET_OR_ATTN}", rest)
    if m:
        level = "down" if m[1] == "encoder" else "up"
        return [Target(f"{out}{m[1]}.{level}.{m[2]}.{'block' if m[3] == 'res' else 'attn'}.{m[4]}.{m[5]}")]
    m = re.fullmatch(rf"(encoder\.conv_blocks\.(\d+)\.downsample|decoder\.conv_blocks\.(\d+)\.upsample)\.conv\.{_P}",
                     rest)
    if m:
        if m[2] is not None:
            return [Target(f"{out}encoder.down.{m[2]}.downsample.conv.{m[4]}")]
        return [Target(f"{out}decoder.up.{m[3]}.upsample.conv.{m[4]}")]
    return None


def _vision(rest: str) -> list[Target] | None:
    out = "model.vision_model."
    if rest.startswith("attn_pool."):
        return []                               # the pooled head: Janus reads the patch features, not the pool
    if rest == "pos_embed":
        return [Target(out + "embeddings.position_embedding.weight", squeeze=True)]
    m = re.fullmatch(rf"patch_embed\.proj\.{_P}", rest)
    if m:
        return [Target(f"{out}embeddings.patch_embedding.{m[1]}")]
    m = re.fullmatch(rf"norm\.{_P}", rest)
    if m:
        return [Target(f"{out}post_layernorm.{m[1]}")]
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", rest)
    if not m:
        return None
    layer, inner = f"{out}encoder.layers.{m[1]}.", m[2]
    m = re.fullmatch(rf"attn\.qkv\.{_P}", inner)
    if m:
        return [Target(f"{layer}self_attn.{name}_proj.{m[1]}", part=i, parts=3) for i, name in enumerate("qkv")]
    m = re.fullmatch(rf"attn\.proj\.{_P}", inner)
    if m:
        return [Target(f"{layer}self_attn.projection_layer.{m[1]}")]
    m = re.fullmatch(rf"norm([12])\.{_P}", inner)
    if m:
        return [Target(f"{layer}layer_norm{m[1]}.{m[2]}")]
    m = re.fullmatch(rf"mlp\.fc([12])\.{_P}", inner)
    if m:
        return [Target(f"{layer}mlp.fc{m[1]}.{m[2]}")]
    return None


def map_key(key: str) -> list[Target] | None:
    """The transformers tensor(s) an original tensor becomes: [] when it is deliberately dropped, None when the
    name is not one the original Janus model has (the import refuses it)."""
    m = re.fullmatch(r"language_model\.model\.(.+)", key)
    if m:
        if m[1].endswith("rotary_emb.inv_freq"):
            return []                           # recomputed from the config; old checkpoints saved it
        return [Target("model.language_model." + m[1])]
    if key == "language_model.lm_head.weight":
        return [Target("lm_head.weight")]
    if key == "gen_embed.weight":
        return [Target("model.generation_embeddings.weight")]
    m = re.fullmatch(rf"gen_head\.(output_mlp_projector|vision_head)\.{_P}", key)
    if m:
        return [Target(f"model.generation_head.{'proj_out' if m[1] == 'output_mlp_projector' else 'vision_head'}"
                       f".{m[2]}")]
    m = re.fullmatch(rf"(gen_aligner|aligner)\.layers\.(\d+)\.{_P}", key)
    if m:
        return _mlp("model.generation_aligner" if m[1] == "gen_aligner" else "model.aligner", m[2], m[3])
    if key.startswith("gen_vision_model."):
        return _vq(key[len("gen_vision_model."):])
    if key.startswith("vision_model.vision_tower."):
        return _vision(key[len("vision_model.vision_tower."):])
    return None
