"""The transformers `JanusConfig` of an original-layout folder.

The original config.json names its parts by class and a few parameters (the VQ model is just "VQ-16", SigLIP a
model name); the original code takes every other dimension from tables in its source. Here each dimension is read
from the tensors themselves, which the original code must agree with to load them at all; what no tensor shows
(the attention heads) comes from the SigLIP table. The result is then checked tensor by tensor against the model
transformers builds from it (`expected_shapes`), so a folder whose config and tensors disagree is refused.
"""
from __future__ import annotations

import re
from pathlib import Path

from .layout import ModelImportError

# Attention heads of the SigLIP towers the original `create_siglip_vit` knows (janus/models/siglip_vit.py).
SIGLIP_HEADS = {"siglip_large_patch16_384": 16, "siglip_so400m_patch14_384": 16, "siglip_so400m_patch14_224": 16}
# language_config keys that describe the file rather than the model
_NOT_MODEL = {"architectures", "_name_or_path", "torch_dtype", "dtype", "transformers_version", "model_type"}


def _shape(shapes: dict, key: str, file: Path) -> tuple[int, ...]:
    if key not in shapes:
        raise ModelImportError(f"the weights of '{file.parent}' have no tensor '{key}', which a Janus model needs; "
                               "the download is incomplete or it is another model: download the folder again")
    return tuple(shapes[key][0])


def _count(shapes: dict, pattern: str) -> int:
    found = {int(m[1]) for k in shapes if (m := re.fullmatch(pattern, k))}
    return max(found) + 1 if found else 0


def _params(cfg: dict, section: str, file: Path) -> dict:
    params = cfg[section].get("params", {})
    if not isinstance(params, dict):
        raise ModelImportError(f"'{file}': {section}.params must be an object")
    return params


def _mlp_depth(shapes: dict, prefix: str) -> int:
    """Linear layers of an MlpProjector (weights at Sequential indices 0, 2, 4, ...)."""
    return _count(shapes, rf"{re.escape(prefix)}\.layers\.(\d+)\.weight") // 2 + 1


def derive_config(cfg: dict, shapes: dict[str, tuple], tokens: dict[str, int], file: Path):
    """`cfg` the original config.json, `shapes` {original tensor name: (shape, dtype name)}, `tokens` the ids of
    bos/eos/pad/image -> the `JanusConfig`."""
    from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

    vis = _params(cfg, "vision_config", file)
    if cfg["vision_config"].get("cls") != "CLIPVisionTower" or vis.get("model_name") not in SIGLIP_HEADS:
        raise ModelImportError(f"'{file}': the understanding encoder ({cfg['vision_config'].get('cls')}, "
                               f"{str(vis.get('model_name'))[:40]}) is not one of the SigLIP towers Janus uses "
                               f"({', '.join(SIGLIP_HEADS)}); this folder cannot be imported")
    for section in ("aligner_config", "gen_aligner_config"):
        kind = _params(cfg, section, file).get("projector_type", "mlp_gelu")
        if kind != "mlp_gelu":
            raise ModelImportError(f"'{file}': {section} uses the projector {str(kind)[:40]!r}; transformers' Janus "
                                   "has only 'mlp_gelu', so this folder cannot be imported")
    lang = {k: v for k, v in cfg["language_config"].items() if k not in _NOT_MODEL}
    # the original builds LlamaConfig(**language_config), whose default is untied: keep that meaning
    tied = bool(lang.get("tie_word_embeddings", False))
    lang.update(tie_word_embeddings=tied, bos_token_id=tokens["bos"], eos_token_id=tokens["eos"],
                pad_token_id=tokens["pad"])
    try:
        text = LlamaConfig(**lang)
    except (TypeError, ValueError) as e:
        raise ModelImportError(f"'{file}': language_config is not a Llama configuration "
                               f"({str(e).splitlines()[0][:200]})") from None

    tower = "vision_model.vision_tower."
    width, channels, patch, _ = _shape(shapes, tower + "patch_embed.proj.weight", file)
    mlp = _shape(shapes, tower + "blocks.0.mlp.fc1.weight", file)[0]
    ratio = mlp / width
    if int(width * ratio) != mlp:               # JanusVisionConfig sizes the MLP as int(hidden * ratio)
        ratio = (mlp + 0.5) / width
    image_size = vis.get("image_size", 384)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 0 < image_size <= 4096:
        raise ModelImportError(f"'{file}': vision_config.params.image_size must be a whole number of pixels")
    grid = image_size // patch
    positions = _shape(shapes, tower + "pos_embed", file)
    if positions[-2] != grid * grid:
        raise ModelImportError(f"'{file}': the understanding encoder has {positions[-2]} positions, but "
                               f"{image_size} px in {patch} px patches makes {grid * grid}; the folder is "
                               "inconsistent")
    vision = JanusVisionConfig(
        hidden_size=width, num_channels=channels, patch_size=patch, image_size=image_size,
        num_hidden_layers=_count(shapes, rf"{re.escape(tower)}blocks\.(\d+)\.norm1\.weight"),
        num_attention_heads=SIGLIP_HEADS[vis["model_name"]], mlp_ratio=ratio,
        attention_bias=tower + "blocks.0.attn.qkv.bias" in shapes,
        projection_dim=_shape(shapes, "aligner.layers.0.weight", file)[0], depth=_mlp_depth(shapes, "aligner"),
        num_image_tokens=grid * grid)

    vq = "gen_vision_model."
    codes, code_dim = _shape(shapes, vq + "quantize.embedding.weight", file)
    base, in_ch = _shape(shapes, vq + "encoder.conv_in.weight", file)[:2]
    levels = _count(shapes, rf"{re.escape(vq)}encoder\.conv_blocks\.(\d+)\.res\.0\.conv1\.weight")
    mult = [_shape(shapes, f"{vq}encoder.conv_blocks.{i}.res.0.conv1.weight", file)[0] // base
            for i in range(levels)]
    head_out, head_in = _shape(shapes, "gen_head.output_mlp_projector.weight", file)
    gen = _params(cfg, "gen_vision_config", file)
    if gen.get("image_token_size", codes) != codes or gen.get("n_embed", code_dim) != code_dim:
        raise ModelImportError(f"'{file}': gen_vision_config says {gen.get('image_token_size')} codes of "
                               f"{gen.get('n_embed')} numbers, the codebook tensor holds {codes} x {code_dim}; the "
                               "folder is inconsistent")
    vq_config = JanusVQVAEConfig(
        embed_dim=code_dim, num_embeddings=codes, in_channels=in_ch, base_channels=base, channel_multiplier=mult,
        latent_channels=_shape(shapes, vq + "encoder.conv_out.weight", file)[0],
        num_res_blocks=_count(shapes, rf"{re.escape(vq)}encoder\.conv_blocks\.0\.res\.(\d+)\.conv1\.weight"),
        out_channels=_shape(shapes, vq + "decoder.conv_out.weight", file)[0],
        projection_dim=head_out, image_token_embed_dim=head_in, num_hidden_layers=_mlp_depth(shapes, "gen_aligner"))
    config = JanusConfig(text_config=text, vision_config=vision, vq_config=vq_config, image_token_id=tokens["image"],
                         tie_word_embeddings=tied)
    return config


def expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """Every tensor transformers saves for `config` (tied copies left out), with its shape; built on the meta device,
    so nothing is allocated."""
    import torch
    from transformers import JanusForConditionalGeneration
    with torch.device("meta"):
        model = JanusForConditionalGeneration(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    return shapes


def generation_settings(config, tokens: dict[str, int]):
    """The `GenerationConfig` the library's own image generation reads (it fails without `boi_token_id`); guidance
    5 is Janus-Pro's published default."""
    from transformers import GenerationConfig
    return GenerationConfig(bos_token_id=tokens["bos"], eos_token_id=tokens["eos"], pad_token_id=tokens["pad"],
                            guidance_scale=5.0, generation_kwargs={"boi_token_id": tokens["boi"]},
                            num_image_tokens=config.vision_config.num_image_tokens)
