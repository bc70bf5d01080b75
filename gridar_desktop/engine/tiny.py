"""Tiny random Janus models built in-process, for tests and benchmarks (no downloads, no training)."""
from __future__ import annotations

import torch

from .demo_format import build_processor, janus_config, set_generation_config
from .backend import JanusBackend

DEMO_META = {"prompt_format": "plain", "prompt_language": "shapes", "canvas_colour": [235, 233, 226]}


def tiny_janus(seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4):
    """(model, processor): the demo model's architecture at a toy size, random weights."""
    from transformers import JanusForConditionalGeneration
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(janus_config(hidden=hidden, layers=layers, heads=heads)).eval()
    set_generation_config(model)
    return model, build_processor()


def save_tiny_janus(path, seed: int = 0):
    """Save a tiny random demo-architecture model folder (weights, processor, gridar.json) to `path`."""
    import json
    from pathlib import Path

    from ..io.atomic import atomic_write_text
    model, processor = tiny_janus(seed)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    atomic_write_text(Path(path) / "gridar.json", json.dumps(DEMO_META))
    return model


def tiny_backend(seed: int = 0, **kw) -> JanusBackend:
    model, processor = tiny_janus(seed, **kw)
    return JanusBackend(model, processor, "cpu", meta=dict(DEMO_META))


def tiny_llava_folder(path, seed: int = 0, chat_template: bool = True):
    """Save a tiny random LLaVA (an AutoModelForImageTextToText architecture) with an offline word-level tokenizer
    and a chat template to `path`, for testing the generic VLM roles without downloads."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)
    words = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "USER", "ASSISTANT", ":", "?", ",", ".", '"', "yes", "Yes",
             "no", "possible", "impossible", "with", "at", "the", "top", "bottom", "a", "red", "circle", "blue",
             "square", "above"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", extra_special_tokens={"image_token": "<image>"},
                                   padding_side="left")
    template = ("{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}{% if c['type'] == "
                "'image' %}<image> {% else %}{{ c['text'] }}{% endif %}{% endfor %} {% endfor %}"
                "{% if add_generation_prompt %}ASSISTANT:{% endif %}") if chat_template else None
    proc = LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                                crop_size={"height": 32, "width": 32}),
                          tokenizer=fast, patch_size=8, vision_feature_select_strategy="default",
                          chat_template=template, num_additional_image_tokens=1)
    torch.manual_seed(seed)
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                     num_attention_heads=2, image_size=32, patch_size=8),
                      text_config=LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                              bos_token_id=1, eos_token_id=2, pad_token_id=0),
                      image_token_id=4, vision_feature_select_strategy="default")
    LlavaForConditionalGeneration(cfg).eval().save_pretrained(path)
    proc.save_pretrained(path)
    return path
