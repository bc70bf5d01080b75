"""The demo model's format: configuration, tokenizer and processor of a real `JanusForConditionalGeneration`, only
small. The engine builds test models with it (`engine.tiny`); training writes the shipped one (`training.demo_config`).

Geometry: 64 x 64 px images, VQ downsampling 8, so an 8 x 8 grid of 64 image tokens (2 token rows per quarter band).
The understanding encoder sees the same 64 px image in 8 px patches, so `image_size // patch_size == 8` is also the
grid Janus's config derives for the VQ (`JanusConfig.__post_init__` sets `vq_config.num_patches` from it).
"""
from __future__ import annotations


from ..shapes.grammar import VOCABULARY
from ..shapes.scene import IMAGE_SIZE

GRID = 8                                   # token rows and columns
PATCH = IMAGE_SIZE // GRID
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>", "<image_placeholder>", "<begin_of_image>", "<end_of_image>"]
# Words the understanding path (verifier, scorer, reformulator) answers or asks with; reserved tokens leave room for
# later roles without changing the embedding size of a shipped checkpoint.
ROLE_WORDS = ["yes", "no", "possible", "impossible", "verify", "score", "layout", "edit", "source", "target",
              "?", ":", ".", "describe"]
RESERVED = [f"<reserved_{i}>" for i in range(23)]      # "describe" took the first of 24
TEXT_VOCAB: list[str] = SPECIAL_TOKENS + list(VOCABULARY) + ROLE_WORDS + RESERVED
PAD, BOS, EOS, UNK, IMAGE, BOI, EOI = range(7)

CODEBOOK = 512


def janus_config(hidden: int = 256, layers: int = 5, heads: int = 4, codebook: int = CODEBOOK):
    """The demo model's `JanusConfig` (text: Llama; vision: tiny SigLIP; VQ: 8x downsampling, 64 px)."""
    from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

    text = LlamaConfig(vocab_size=len(TEXT_VOCAB), hidden_size=hidden, intermediate_size=hidden * 3,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                       max_position_embeddings=256, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
                       rope_theta=10000.0, tie_word_embeddings=True)
    vision = JanusVisionConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=IMAGE_SIZE,
                               patch_size=PATCH, projection_dim=hidden, num_image_tokens=GRID * GRID, mlp_ratio=2.0)
    vq = JanusVQVAEConfig(embed_dim=8, num_embeddings=codebook, latent_channels=64, base_channels=32,
                          channel_multiplier=[1, 2, 2, 4], num_res_blocks=1, projection_dim=hidden,
                          image_token_embed_dim=hidden)
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=IMAGE)


def build_processor():
    """An offline `JanusProcessor`: a word-level tokenizer over the grammar's vocabulary, plus the image processor."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import JanusImageProcessorPil, JanusProcessor, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TEXT_VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens={"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>",
                              "eoi_token": "<end_of_image>"}, padding_side="left")
    improc = JanusImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3,
                                    image_std=[0.5] * 3, do_pad=False)
    return JanusProcessor(image_processor=improc, tokenizer=fast, num_image_tokens=GRID * GRID,
                          use_default_system_prompt=False)


def set_generation_config(model) -> None:
    """Fields the library's `generate(generation_mode="image")` reads (it fails without `boi_token_id`)."""
    gc = model.generation_config
    gc.bos_token_id, gc.pad_token_id, gc.eos_token_id = BOS, PAD, EOS
    gc.generation_kwargs = {"boi_token_id": BOI}
    gc.num_image_tokens = GRID * GRID
