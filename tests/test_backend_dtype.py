"""Precision choices (CPU: bfloat16 language model, float32 VQ and vision encoder) and the row-limited preview decode
(`JanusBackend.decode_rows`)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gridar_desktop.engine import backend
from gridar_desktop.engine.backend import (CPU_BF16_MIN_STEP_PARAMS, DTYPE_CHOICES, PREVIEW_MARGIN, JanusBackend,
                                           Precision, dtype_words, lm_step_params, resolve_dtype, resolve_precision)
from gridar_desktop.engine.errors import ModelLoadError
from gridar_desktop.engine.models import demo_model_dir
from gridar_desktop.engine.tiny import DEMO_META, tiny_backend

F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16
# Janus-Pro-1B's language model sizes (its config.json), and the demo's
JANUS_PRO_1B = {"text_config": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
                                "num_attention_heads": 16}}


def demo_config() -> dict:
    return json.loads((demo_model_dir() / "config.json").read_text())


# -- choosing the precision ------------------------------------------------------------------------------------
@pytest.fixture
def fast_bf16(monkeypatch):
    """Answer `cpu_has_fast_bf16` (this machine's own answer must not decide what the tests see)."""
    def set_to(value: bool) -> None:
        monkeypatch.setattr(backend, "cpu_has_fast_bf16", lambda: value)
    set_to(True)
    return set_to


def test_auto_on_cpu_is_mixed_bfloat16_for_a_large_model_where_bfloat16_is_fast(fast_bf16):
    assert resolve_precision("auto", "cpu", JANUS_PRO_1B) == Precision(BF16, F32)
    fast_bf16(False)                                   # an AVX2 CPU: bfloat16 steps are no faster, prefill slower
    assert resolve_precision("auto", "cpu", JANUS_PRO_1B) == Precision(F32, F32)
    assert dtype_words("auto", "cpu") == "float32"
    fast_bf16(True)
    assert resolve_precision("auto", "cpu", demo_config()) == Precision(F32, F32)
    assert resolve_precision("auto", "cpu") == Precision(F32, F32)          # no config: as before
    assert lm_step_params(demo_config()) < CPU_BF16_MIN_STEP_PARAMS <= lm_step_params(JANUS_PRO_1B)
    # one layer of Janus-Pro-1B: 4 attention products of 2048^2 and 3 MLP products of 2048 x 5632
    one = {"text_config": dict(JANUS_PRO_1B["text_config"], num_hidden_layers=1)}
    assert lm_step_params(one) == 4 * 2048 ** 2 + 3 * 2048 * 5632
    assert lm_step_params({"text_config": {"hidden_size": 8}}) is None


def test_half_precision_keeps_pixels_in_float32_on_cpu_only():
    assert resolve_precision("bfloat16", "cpu") == Precision(BF16, F32)
    assert resolve_precision("fp16", "cpu") == Precision(F16, F32)
    assert resolve_precision("bf16", "cuda") == Precision(BF16, BF16)       # torch.device("cuda") needs no GPU
    assert resolve_precision("auto", "cuda", demo_config()) == Precision(BF16, BF16)
    assert resolve_precision("auto", "mps") == Precision(F16, F16)
    assert resolve_precision("float32", "cuda") == Precision(F32, F32)
    assert resolve_dtype("bfloat16", torch.device("cpu")) is BF16           # the language model's, as callers expect


def test_every_choice_resolves_and_has_words(fast_bf16):
    names = [name for name, _ in DTYPE_CHOICES]
    assert names[0] == "auto" and {"float32", "bfloat16", "float16"} <= set(names)
    assert all(isinstance(text, str) and 20 < len(text) < 200 and "\n" not in text for _, text in DTYPE_CHOICES)
    for name in names:
        for dev in ("cpu", "cuda", "mps"):
            assert isinstance(resolve_precision(name, dev, JANUS_PRO_1B), Precision)
    assert dtype_words("bfloat16", "cpu") == "bfloat16 (image decoder and vision encoder float32)"
    assert dtype_words("auto", "cpu", demo_config()) == "float32"
    assert dtype_words("auto", "cuda") == "bfloat16"
    assert dtype_words("auto", "cpu", JANUS_PRO_1B) == "bfloat16 (image decoder and vision encoder float32)"
    # the model not known yet: both outcomes
    assert dtype_words("auto", "cpu") == ("float32 for a small model, bfloat16 (image decoder and vision encoder "
                                          "float32) for a large one")


def test_an_unknown_dtype_is_one_line_naming_the_choices():
    with pytest.raises(ModelLoadError) as e:
        resolve_precision("float7", "cpu")
    msg = str(e.value)
    assert "\n" not in msg and "'float7'" in msg and all(name in msg for name, _ in DTYPE_CHOICES)


# -- loading ---------------------------------------------------------------------------------------------------
def test_demo_loads_in_float32_under_auto_so_its_tokens_do_not_change(fast_bf16):
    """bfloat16 changes some of the demo's sampled tokens (benchmarks/cpu_precision.py), so auto keeps it float32."""
    b = JanusBackend.load(demo_model_dir(), "cpu", "auto")
    assert b.precision == Precision(F32, F32)
    assert all(p.dtype == F32 for p in b.model.parameters())


def test_bfloat16_on_cpu_runs_the_language_model_in_bfloat16_and_the_pixels_in_float32():
    from gridar_desktop.engine.decode import decode, new_generator, start
    from gridar_desktop.engine.sampling import SamplingParams
    b = JanusBackend.load(demo_model_dir(), "cpu", "bfloat16")
    inner = b.model.model
    assert b.precision == Precision(BF16, F32)
    assert all(p.dtype == BF16 for mod in (inner.language_model, inner.generation_embeddings,
                                           inner.generation_aligner, inner.generation_head)
               for p in mod.parameters())
    assert all(p.dtype == F32 for mod in (inner.vqmodel, inner.vision_model, inner.aligner)
               for p in mod.parameters())
    # two token rows through the app's loop, decoded (as a partial image) by the float32 VQ
    state = decode(b, start(b, "a red circle above a blue square", 2), 16, SamplingParams(cfg=2.0),
                   new_generator(0))
    images = b.decode_tokens(state.tokens)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8 and images[:, :16].std() > 0
    # pixels in: the encoder in float32; features out: cast to the language model's dtype where they enter it
    assert b.encode_images(images).shape == (2, 64)
    feats = b.image_features(images)
    assert feats.dtype == F32
    ids = torch.tensor([b.edit_prompt_ids("a red circle")] * 2) if b.edit_conditioned else None
    if ids is not None:
        assert b.embed_text(ids, feats).dtype == BF16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bfloat16_on_cuda_keeps_everything_in_bfloat16():
    b = JanusBackend.load(demo_model_dir(), "cuda", "bfloat16")
    assert b.precision == Precision(BF16, BF16)
    assert all(p.dtype == BF16 for p in b.model.parameters())
    assert b.decode_tokens(torch.zeros(1, 64, dtype=torch.long)).shape == (1, 64, 64, 3)


# -- the row-limited preview decode ------------------------------------------------------------------------------
def test_decode_rows_equals_the_full_decode_when_its_window_reaches_both_edges():
    b = tiny_backend(seed=1)
    R, C, f = b.info.rows, b.info.cols, b.info.image_size // b.info.rows
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, b.info.codebook, (2, R * C), generator=g)
    vq = b.model.model.vqmodel
    with torch.inference_mode():
        assert torch.equal(b._decode_latent_rows(t, R), vq.decode(t))          # the same arithmetic as vq.decode
    full = b.decode_tokens(t)
    assert np.array_equal(b.decode_rows(t, R, margin=0), full)
    # a partial candidate (3 rows and 2 codes drawn): rows 0-3 shown, the undrawn patches of row 3 painted
    k = 3 * C + 2
    part = b.decode_tokens(t[:, :k])
    shown = b.decode_rows(t[:, :k], 4, margin=R)
    assert np.array_equal(shown[:, :4 * f], part[:, :4 * f])
    assert (shown[:, 4 * f:] == b.canvas_colour).all()                       # below the shown rows: the canvas
    assert (shown[:, 3 * f:4 * f, 2 * f:] == b.canvas_colour).all()          # not drawn yet


def test_decode_rows_shows_only_its_rows_over_the_canvas():
    b = tiny_backend(seed=1)
    R, C, f = b.info.rows, b.info.cols, b.info.image_size // b.info.rows
    t = torch.randint(0, b.info.codebook, (1, R * C), generator=torch.Generator().manual_seed(1))
    img = b.decode_rows(t, 5, first=3)
    assert (img[:, :3 * f] == b.canvas_colour).all() and (img[:, 5 * f:] == b.canvas_colour).all()
    assert not (img[:, 3 * f:5 * f] == b.canvas_colour).all(-1).all()
    assert (b.decode_rows(t, 3, first=3) == b.canvas_colour).all()           # nothing to show: no decode
    assert (b.decode_rows(t, 0) == b.canvas_colour).all()
    with pytest.raises(ValueError):
        b.decode_rows(torch.zeros(1, R * C + 1, dtype=torch.long), 2)


@pytest.fixture(scope="module")
def real_vq_backend():
    """A tiny language model on the REAL VQ (base 128 x [1, 1, 2, 2, 4], 16384 x 8 codes, 2 res blocks, latent 256:
    24 x 24 tokens -> 384 px), random weights."""
    from transformers import JanusConfig, JanusForConditionalGeneration, JanusVisionConfig, JanusVQVAEConfig

    from gridar_desktop.engine.demo_format import janus_config, set_generation_config
    small = janus_config(hidden=64, layers=1)
    vision = JanusVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=384,
                               patch_size=16, projection_dim=64, num_image_tokens=576, mlp_ratio=1.0)
    vq = JanusVQVAEConfig(num_patches=24, projection_dim=64, image_token_embed_dim=64)
    torch.manual_seed(0)
    model = JanusForConditionalGeneration(JanusConfig(text_config=small.text_config, vision_config=vision,
                                                      vq_config=vq, image_token_id=small.image_token_id)).eval()
    set_generation_config(model)
    from gridar_desktop.engine.demo_format import build_processor
    b = JanusBackend(model, build_processor(), "cpu", meta=dict(DEMO_META))
    assert (b.info.rows, b.info.image_size, b.info.codebook) == (24, 384, 16384)
    return b


@pytest.mark.slow
def test_decode_rows_is_close_to_the_full_decode_on_the_real_vq(real_vq_backend):
    """The top 12 of 24 rows, decoded from 12 + PREVIEW_MARGIN latent rows, against the same rows of the full 384 px
    decode of the same codes. Random weights mix the whole image far more than a trained decoder does (changing
    rows 18-23 moved rows 0-11 by 1.8 of 255 on average), so the window is close at the top and drifts towards
    its cut. Measured (margin 3): mean difference 7.0 of 255, 1.4 in the first row, 3.4 in the first four; pasting
    the rows one row off would differ by 47."""
    b = real_vq_backend
    f = 16
    t = torch.randint(0, 16384, (1, 576), generator=torch.Generator().manual_seed(0))
    full = b.decode_tokens(t).astype(int)
    top = b.decode_rows(t, 12, margin=PREVIEW_MARGIN).astype(int)
    d = np.abs(top[:, :12 * f] - full[:, :12 * f])
    assert d.mean() < 12 and d[:, :4 * f].mean() < 6, (d.mean(), d[:, :4 * f].mean())
    assert (top[:, 12 * f:] == b.canvas_colour).all()
    shifted = np.abs(top[:, f:12 * f] - full[:, :11 * f])                     # what a one-row offset would show
    assert shifted.mean() > 3 * d.mean()
