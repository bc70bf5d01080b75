"""Random-weight Janus-Pro models at their REAL configuration, built in-process (nothing is downloaded).

The people this app is for run Janus-Pro-1B / -7B (384 px, 24 x 24 = 576 image tokens, codebook 16384, SigLIP-L
understanding encoder). No weights can be downloaded here, so tests and benchmarks build the same architecture with
random weights: the published dimensions (deepseek-ai/Janus-Pro-1B and -7B config.json; the SigLIP and VQ-16 tables
of the original code, see `importer.janus_config` and `benchmarks/memory_table.py`), a byte-level BPE tokenizer with
Janus-Pro's special tokens trained here on English text, and the Janus-Pro chat template and processor that
`gridar import-model` writes, so the backend reads prompts in the "janus-pro" format exactly as for an imported
official folder.

Depth may be reduced (`layers`, `vision_layers`) and, for CI speed only, the VQ's base width (`vq_channels`); every
report that uses such a model must say so (`describe`). Everything else is the real size.
"""
from __future__ import annotations

import ast
import os
import sysconfig
from pathlib import Path

import torch

from .backend import JanusBackend

# Janus-Pro's language models (config.json "language_config"): full multi-head attention, head size 128, untied head.
LANGUAGE = {
    "1B": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24, "num_attention_heads": 16},
    "7B": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 30, "num_attention_heads": 32},
}
VOCAB = 102400                  # the language model's vocabulary (the tokenizer uses fewer ids; the rest is padding)
MAX_POSITIONS = 16384
# SigLIP-L/16 at 384 px ("siglip_large_patch16_384"): width 1024, 24 blocks, 16 heads, MLP 4096 -> 576 features
VISION = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 384,
          "patch_size": 16, "mlp_ratio": 4.0, "num_image_tokens": 576}
# VQ-16: 16384 codes x 8 dims, base 128 x (1, 1, 2, 2, 4) (16x down: 24 x 24 tokens <-> 384 px), 2 res blocks,
# latent 256
VQ = {"embed_dim": 8, "num_embeddings": 16384, "base_channels": 128, "channel_multiplier": [1, 1, 2, 2, 4],
      "num_res_blocks": 2, "latent_channels": 256}

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
SPECIAL = [BOS, EOS, PAD, "<image_placeholder>", "<begin_of_image>", "<end_of_image>", "<|User|>", "<|Assistant|>",
           "<patch_placeholder>"]
BPE_VOCAB = 6000                # a few thousand merges: real words become one or two tokens, as with the real one
# Janus-Pro's image processor (preprocessor_config.json): 384 px, mean / std 0.5, grey background
IMAGE_MEAN = [0.5, 0.5, 0.5]
META = {"prompt_format": "janus-pro"}

# Phrases the app itself writes (judging prompts, layout clauses) and typical prompts: they belong in the corpus so
# they tokenize like ordinary English, as they would with the real tokenizer.
_SEED_TEXT = [
    "a red fox in the snow", "a photo of a cat sitting on a wooden table", "two dogs playing on the beach at sunset",
    "with the fox at the top and the snow at the bottom", "a red circle above a blue square",
    "Could the finished image still match the prompt exactly? Answer possible or impossible.",
    "Does it accurately show the prompt? Answer yes or no.", "Rewrite the prompt so that it describes the layout.",
    "You are a helpful language and vision assistant. You are able to understand the visual content that the user "
    "provides, and assist the user with a variety of tasks using natural language.",
]
_CORPUS_MODULES = ["argparse", "textwrap", "json/__init__", "collections/__init__", "logging/__init__", "pathlib",
                   "unittest/case", "email/message", "http/client", "subprocess", "shutil", "tarfile", "zipfile/__init__",
                   "datetime", "decimal", "fractions", "random", "statistics", "string", "difflib", "inspect",
                   "typing", "dataclasses", "functools", "threading", "asyncio/events", "urllib/parse", "csv",
                   "calendar", "locale", "gettext", "pydoc", "doctest", "pickle", "heapq", "bisect"]


def describe(size: str = "1B", layers: int | None = None, vision_layers: int | None = None,
             vq_channels: int | None = None) -> str:
    """One line naming the shape and every reduction from the real one, for reports and benchmark output."""
    lm = LANGUAGE[_size(size)]
    cut = []
    if layers is not None and layers != lm["num_hidden_layers"]:
        cut.append(f"{layers} of {lm['num_hidden_layers']} language layers")
    if vision_layers is not None and vision_layers != VISION["num_hidden_layers"]:
        cut.append(f"{vision_layers} of {VISION['num_hidden_layers']} SigLIP layers")
    if vq_channels is not None and vq_channels != VQ["base_channels"]:
        cut.append(f"VQ base width {vq_channels} instead of {VQ['base_channels']} (CI speed only)")
    return (f"Janus-Pro-{_size(size)} shape (hidden {lm['hidden_size']}, MLP {lm['intermediate_size']}, vocabulary "
            f"{VOCAB}, SigLIP-L 384 px, VQ 16384 x 8, 24 x 24 tokens -> 384 px), random weights"
            + (": " + ", ".join(cut) if cut else ""))


def _size(size: str) -> str:
    s = str(size).upper().removeprefix("JANUS-PRO-")
    if s not in LANGUAGE:
        raise ValueError(f"unknown Janus-Pro size '{size}'; use 1B or 7B")
    return s


def _depth(value: int | None, full: int, what: str) -> int:
    if value is None:
        return full
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= full:
        raise ValueError(f"{what} must be a whole number from 1 to {full} (got {value!r})")
    return value


def janus_pro_config(size: str = "1B", layers: int | None = None, vision_layers: int | None = None,
                     vq_channels: int | None = None, token_ids: dict[str, int] | None = None):
    """The `JanusConfig` of Janus-Pro-`size` as `gridar import-model` derives it from the official folder, with
    optionally fewer language / SigLIP layers and (CI only) a narrower VQ. `token_ids` {bos, eos, pad, image}: the
    tokenizer's (default: `real_shape_tokenizer`'s)."""
    from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

    lm = dict(LANGUAGE[_size(size)])
    lm["num_hidden_layers"] = _depth(layers, lm["num_hidden_layers"], "layers")
    hidden = lm["hidden_size"]
    ids = token_ids or _token_ids(real_shape_tokenizer())
    text = LlamaConfig(vocab_size=VOCAB, num_key_value_heads=lm["num_attention_heads"],
                       max_position_embeddings=MAX_POSITIONS, rope_theta=10000.0, rms_norm_eps=1e-6,
                       tie_word_embeddings=False, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
                       pad_token_id=ids["pad"], **lm)
    vis = dict(VISION, num_hidden_layers=_depth(vision_layers, VISION["num_hidden_layers"], "vision_layers"))
    vision = JanusVisionConfig(projection_dim=hidden, depth=2, attention_bias=True, **vis)
    base = VQ["base_channels"] if vq_channels is None else vq_channels
    # the VQ's GroupNorms have 32 groups: its widths are multiples of 32
    if isinstance(base, bool) or not isinstance(base, int) or not 32 <= base <= VQ["base_channels"] or base % 32:
        raise ValueError(f"vq_channels must be a multiple of 32 from 32 to {VQ['base_channels']} (got {base!r})")
    vq = JanusVQVAEConfig(**dict(VQ, base_channels=base), projection_dim=hidden, image_token_embed_dim=hidden,
                          num_hidden_layers=2)
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=ids["image"],
                       tie_word_embeddings=False)


def _corpus() -> list[str]:
    """English text every Python install has: the interpreter's licence and the docstrings of a fixed set of
    standard-library modules (so the same tokenizer is trained on any machine with the same Python)."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    texts = list(_SEED_TEXT) * 20
    licence = lib / "LICENSE.txt"
    if licence.is_file():
        texts.append(licence.read_text(encoding="utf-8", errors="replace"))
    for name in _CORPUS_MODULES:
        file = lib / f"{name}.py"
        if not file.is_file():
            continue
        try:
            tree = ast.parse(file.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    texts.append(doc)
    return texts


_TOKENIZER = None


def real_shape_tokenizer():
    """A byte-level BPE (`tokenizers.Tokenizer`) of BPE_VOCAB entries with Janus-Pro's special tokens, trained on
    `_corpus` (about a second; cached per process)."""
    global _TOKENIZER
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    if _TOKENIZER is None:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(_corpus(), trainers.BpeTrainer(
            vocab_size=BPE_VOCAB, special_tokens=SPECIAL, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        _TOKENIZER = tok
    return Tokenizer.from_str(_TOKENIZER.to_str())          # a fresh copy: callers may change it


def _token_ids(tok) -> dict[str, int]:
    v = tok.get_vocab()
    return {"bos": v[BOS], "eos": v[EOS], "pad": v[PAD], "image": v["<image_placeholder>"],
            "boi": v["<begin_of_image>"], "eoi": v["<end_of_image>"]}


def real_shape_processor(tok=None):
    """The Janus-Pro `JanusProcessor` as `gridar import-model` writes it: the tokenizer with its special tokens and
    BOS rule, 384 px image processor, DeepSeek's chat template and understanding system prompt."""
    from tokenizers import processors
    from transformers import JanusImageProcessorPil, PreTrainedTokenizerFast

    from .importer.processor import IMAGE_TOKENS, make_processor
    tok = tok or real_shape_tokenizer()
    ids = _token_ids(tok)
    # the original loads it as a Llama tokenizer, which starts every text with BOS (`importer.processor`)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, ids["bos"])])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=MAX_POSITIONS,
        padding_side="left", clean_up_tokenization_spaces=False,
        additional_special_tokens=["<image_placeholder>", "<patch_placeholder>", "<|User|>", "<|Assistant|>"],
        extra_special_tokens=dict(IMAGE_TOKENS))
    size = VISION["image_size"]
    improc = JanusImageProcessorPil(size={"height": size, "width": size}, image_mean=IMAGE_MEAN, image_std=IMAGE_MEAN,
                                    min_size=14, rescale_factor=1 / 255, do_normalize=True)
    return make_processor(improc, fast, VISION["num_image_tokens"])


def real_shape_model(size: str = "1B", layers: int | None = None, vision_layers: int | None = None,
                     vq_channels: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float32):
    """(model, processor): `JanusForConditionalGeneration` of `janus_pro_config(...)`, random weights from `seed`,
    in eval mode, with the generation settings `gridar import-model` writes (guidance 5)."""
    from transformers import JanusForConditionalGeneration

    from .importer.janus_config import generation_settings
    tok = real_shape_tokenizer()
    ids = _token_ids(tok)
    config = janus_pro_config(size, layers, vision_layers, vq_channels, ids)
    torch.manual_seed(seed)
    # built directly in the target dtype: a 7B model in float32 first would need twice the memory
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = _build(JanusForConditionalGeneration, config, seed)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config = generation_settings(config, ids)
    return model, real_shape_processor(tok)


# Every weight matrix of a million entries or more (all but the norms, biases and small layers) is filled from one
# pool of normal draws instead of one draw per weight: the library's init draws every weight twice (torch's default,
# then its own), 8 of 14 s of building a 2-layer 1B model on this CPU. The pool's length is prime, so the rows of a
# matrix are different windows of it, never repeats.
_POOL = 16777259
_BIG = 1 << 20


def _build(cls, config, seed: int):
    """`cls(config)` in eval mode with random weights: the library's initialisation (std `initializer_range`)
    everywhere except the matrices over _BIG entries, which take shifted windows of one pool of normal draws at the
    same std."""
    from transformers.initialization import no_init_weights
    with no_init_weights():
        model = cls(config)
    std = getattr(config.get_text_config(), "initializer_range", 0.02)
    gen = torch.Generator().manual_seed(seed)
    pool = None
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(module, (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv2d)) or weight is None or weight.numel() < _BIG:
            continue
        if pool is None:
            pool = (torch.randn(_POOL, generator=gen) * std).to(weight.dtype)
        flat = weight.data.view(-1)
        at = int(torch.randint(0, _POOL, (1,), generator=gen))
        done = 0
        while done < flat.numel():                      # the pool from `at`, round and round
            take = min(_POOL - at, flat.numel() - done)
            flat[done:done + take] = pool[at:at + take]
            done, at = done + take, 0
        if getattr(module, "bias", None) is not None:
            module.bias.data.zero_()
        if getattr(module, "padding_idx", None) is not None:        # as the library: the pad row is zero
            weight.data[module.padding_idx] = 0
        module._is_hf_initialized = True                # the library's init leaves it alone
    model.init_weights()
    return model.eval()


def real_shape_backend(size: str = "1B", layers: int | None = None, vision_layers: int | None = None,
                       vq_channels: int | None = None, seed: int = 0, device: str = "cpu",
                       dtype: torch.dtype = torch.float32) -> JanusBackend:
    """A `JanusBackend` on `real_shape_model(...)`, reading prompts in the "janus-pro" format."""
    model, processor = real_shape_model(size, layers, vision_layers, vq_channels, seed, dtype)
    model.to(device)
    return JanusBackend(model, processor, device, folder=f"<{describe(size, layers, vision_layers, vq_channels)}>",
                        meta=dict(META))


def save_real_shape_folder(path: str | Path, size: str = "1B", layers: int | None = None,
                           vision_layers: int | None = None, vq_channels: int | None = None, seed: int = 0,
                           dtype: torch.dtype = torch.float32) -> Path:
    """Write a transformers-format folder like `gridar import-model` writes (config, generation config, processor
    and tokenizer files, model.safetensors; no gridar.json, as for an imported official folder), atomically: the
    folder appears whole or not at all. It loads with `JanusBackend.load` and `gridar generate --model PATH`.
    Returns the folder."""
    from ..io.atomic import _umask, atomic_folder, atomic_write_text
    model, processor = real_shape_model(size, layers, vision_layers, vq_channels, seed, dtype)
    path = Path(path).expanduser()
    with atomic_folder(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        # what this folder is, for whoever finds it later (not read by the app)
        atomic_write_text(tmp / "README.txt", describe(size, layers, vision_layers, vq_channels) + "\n")
        # the weights file comes out 0600 from the library; every file the project writes follows the umask
        mode = 0o666 & ~_umask()
        for file in tmp.iterdir():
            if file.is_file():
                os.chmod(file, mode)
    return path


def token_ids() -> dict[str, int]:
    """The special token ids of `real_shape_tokenizer` (bos, eos, pad, image, boi, eoi)."""
    return _token_ids(real_shape_tokenizer())


__all__ = ["janus_pro_config", "real_shape_model", "real_shape_backend", "save_real_shape_folder", "describe",
           "real_shape_tokenizer", "real_shape_processor", "token_ids", "LANGUAGE", "VISION", "VQ", "VOCAB"]
