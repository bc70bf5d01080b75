"""The engine on tiny random Janus models built in-process."""
import json
from dataclasses import replace
import socket

import numpy as np
import pytest
import torch

from gridar_desktop.engine.backend import JanusBackend, resolve_device
from gridar_desktop.engine.cancel import CancelToken
from gridar_desktop.engine.cost import CostRecord
from gridar_desktop.engine.decode import (concat_candidates, copy_stream, decode, decode_to_row, drop_streams, fork,
                                          merge_streams, new_generator, prefill, select, start)
from gridar_desktop.engine.errors import Cancelled, ModelLoadError, PromptNotUnderstood
from gridar_desktop.engine.sampling import (SamplingParams, cfg_three_way, cfg_two_way, orthogonal_part, sample,
                                            warp)
from gridar_desktop.engine.tiny import DEMO_META, save_tiny_janus, tiny_backend

PROMPT = "a red circle above a blue square"
TOTAL = 64


@pytest.fixture(scope="module")
def backend():
    torch.set_num_threads(1)
    return tiny_backend(seed=1)


def fresh_logits(backend, prompt_ids, tokens, stream="cond"):
    """Reference without any carried cache: one forward over prompt + all image tokens, last position's logits."""
    ids = prompt_ids if stream == "cond" else backend.uncond_ids(prompt_ids)
    st = prefill(backend, {stream: [ids]}, tokens.unsqueeze(0))
    return backend.image_logits(st.hidden)[0]


def test_shapes_and_decode(backend):
    st = decode(backend, start(backend, PROMPT, 3), TOTAL, SamplingParams(), new_generator(0))
    assert st.tokens.shape == (3, TOTAL) and st.tokens.max() < backend.info.codebook
    img = backend.decode_tokens(st.tokens)
    assert img.shape == (3, 64, 64, 3) and img.dtype == np.uint8
    part = backend.decode_tokens(st.tokens[:, :16])              # top quarter: 2 of 8 token rows
    assert part.shape == (3, 64, 64, 3)


def test_seed_reproduces_exactly(backend):
    p = SamplingParams(cfg=3.0, temperature=1.0, top_k=50)
    a = decode(backend, start(backend, PROMPT, 2), TOTAL, p, new_generator(7)).tokens
    b = decode(backend, start(backend, PROMPT, 2), TOTAL, p, new_generator(7)).tokens
    c = decode(backend, start(backend, PROMPT, 2), TOTAL, p, new_generator(8)).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])     # branches sample independently


def test_branch_select_matches_recomputation(backend):
    p = SamplingParams(cfg=4.0)
    ids = backend.prompt_ids(PROMPT)
    st = decode(backend, start(backend, PROMPT, 4), 16, p, new_generator(3))
    st = select(st, [1, 3, 3, 0])                      # refill slot 2 with a copy of 3, reorder
    st = decode(backend, st, 9, p, new_generator(4))
    logits = backend.image_logits(st.hidden)
    for b in range(4):
        ref_c = fresh_logits(backend, ids, st.tokens[b], "cond")
        ref_u = fresh_logits(backend, ids, st.tokens[b], "uncond")
        torch.testing.assert_close(logits[st.stream_rows("cond")][b], ref_c, atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(logits[st.stream_rows("uncond")][b], ref_u, atol=2e-4, rtol=1e-4)
    assert torch.equal(st.tokens[1, :16], st.tokens[2, :16])      # the copy shares the anchor


def test_a_decoded_fork_leaves_its_state_as_it_was(backend):
    p = SamplingParams(cfg=4.0)
    st = decode(backend, start(backend, PROMPT, 2), 16, p, new_generator(3))
    before = backend.image_logits(st.hidden).clone()
    ahead = decode(backend, fork(st), TOTAL - 16, p, new_generator(5))          # a rollout to the end
    assert ahead.tokens.shape == (2, TOTAL) and st.tokens.shape == (2, 16)
    torch.testing.assert_close(backend.image_logits(st.hidden), before)
    # the original goes on exactly as if no fork had been decoded
    a = decode(backend, st, 8, p, new_generator(9))
    b = decode(backend, decode(backend, start(backend, PROMPT, 2), 16, p, new_generator(3)), 8, p, new_generator(9))
    assert torch.equal(a.tokens, b.tokens)
    torch.testing.assert_close(backend.image_logits(a.hidden), backend.image_logits(b.hidden))


def test_resume_from_prefix_equals_uninterrupted(backend):
    p = SamplingParams(cfg=5.0, greedy=True)
    full = decode(backend, start(backend, PROMPT), TOTAL, p).tokens
    resumed = decode(backend, start(backend, PROMPT, prefix=full[:, :24]), TOTAL - 24, p).tokens
    assert torch.equal(full, resumed)


def test_layout_stream_merge_matches_fresh_prefill(backend):
    """A new layout row, longer than the carried rows, joins them through left padding without changing them."""
    p = SamplingParams(cfg=4.0)
    ids = backend.prompt_ids(PROMPT)
    st = decode(backend, start(backend, PROMPT, 2), 16, p, new_generator(5))
    layout = [backend.prompt_ids(PROMPT + ", with the red circle at the top"),
              backend.prompt_ids(PROMPT + ", with the red circle at the top left and the blue square at the bottom")]
    cost = CostRecord()
    lay = prefill(backend, {"layout": layout}, st.tokens, cost)
    assert cost.roles["generator"].prefill_token_rows == len(layout[0]) + len(layout[1]) + 2 * 16  # new rows only
    st = merge_streams(st, lay)
    assert st.streams == ("cond", "uncond", "layout") and st.padded
    st = decode(backend, st, 8, p, new_generator(6))
    logits = backend.image_logits(st.hidden)
    for b in range(2):
        torch.testing.assert_close(logits[st.stream_rows("layout")][b],
                                   fresh_logits(backend, layout[b], st.tokens[b]), atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(logits[st.stream_rows("cond")][b], fresh_logits(backend, ids, st.tokens[b]),
                                   atol=2e-4, rtol=1e-4)
    st = drop_streams(st, ["layout"])
    assert st.streams == ("cond", "uncond") and st.hidden.shape[0] == 4


def test_copied_and_concatenated_rows_match_fresh_prefill(backend):
    """A layout stream assembled from a copied cond row (same text) and a prefilled row decodes like fresh rows."""
    p = SamplingParams(cfg=4.0)
    ids = backend.prompt_ids(PROMPT)
    layout = backend.prompt_ids(PROMPT + ", with the red circle at the top left and the blue square at the bottom")
    st = decode(backend, start(backend, PROMPT, 3), 16, p, new_generator(5))
    copied = copy_stream(st, "cond", [2, 0], "layout")          # candidates 2 and 0 keep the original text
    new = prefill(backend, {"layout": [layout]}, st.tokens[[1]])
    joined = select(concat_candidates(copied, new), [1, 2, 0])    # back to candidate order 0, 1, 2
    st = merge_streams(st, joined)
    st = decode(backend, st, 8, p, new_generator(6))
    logits = backend.image_logits(st.hidden)[st.stream_rows("layout")]
    for b, text in enumerate([ids, layout, ids]):
        torch.testing.assert_close(logits[b], fresh_logits(backend, text, st.tokens[b]), atol=2e-4, rtol=1e-4)


def test_three_way_formula():
    g = torch.Generator().manual_seed(0)
    lo, lu, lr = (torch.randn(3, 50, generator=g) for _ in range(3))
    cfg = 5.0
    out = cfg_three_way(lo, lu, lr, cfg)
    d_o, d_r = lo - lu, lr - lu
    for i in range(3):                              # per candidate, over the vocabulary
        perp = d_r[i] - (d_r[i] @ d_o[i]) / (d_o[i] @ d_o[i]) * d_o[i]
        assert abs(float(perp @ d_o[i])) < 1e-4
        torch.testing.assert_close(out[i], lo[i] + (cfg - 1) * d_o[i] + (cfg - 1) * perp)
    torch.testing.assert_close(orthogonal_part(d_r, d_o)[0], d_r[0] - (d_r[0] @ d_o[0]) / (d_o[0] @ d_o[0]) * d_o[0])
    # a layout prompt that says nothing new adds nothing: three-way equals two-way
    torch.testing.assert_close(cfg_three_way(lo, lu, lo, cfg), cfg_two_way(lo, lu, cfg))
    torch.testing.assert_close(cfg_two_way(lo, lu, cfg), lu + cfg * (lo - lu))
    torch.testing.assert_close(cfg_three_way(lo, lu, lr, cfg, layout_scale=0.0), cfg_two_way(lo, lu, cfg))


def test_warpers():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    k2 = warp(logits, SamplingParams(top_k=2))
    assert torch.isinf(k2[0, 2:]).all() and torch.isfinite(k2[0, :2]).all()
    probs = logits.softmax(-1)[0]                    # 0.636, 0.234, ...
    p = warp(logits, SamplingParams(top_p=0.8))
    assert torch.isfinite(p[0, :2]).all() and torch.isinf(p[0, 2:]).all() and probs[0] < 0.8
    assert torch.equal(sample(logits, SamplingParams(greedy=True), None), torch.tensor([0]))
    t = warp(logits, SamplingParams(temperature=2.0))
    torch.testing.assert_close(t, logits / 2)
    with pytest.raises(ValueError):
        SamplingParams(temperature=0)


def test_cancel_takes_effect_at_the_next_token(backend):
    token = CancelToken()
    seen = []

    def on_token(st):
        seen.append(st.tokens.shape[1])
        if len(seen) == 10:
            token.abort()
    with pytest.raises(Cancelled):
        decode(backend, start(backend, PROMPT, 2), TOTAL, SamplingParams(), new_generator(0), cancel=token,
               on_token=on_token)
    assert seen[-1] == 10


def test_cost_record_matches_hand_count(backend):
    """Two bands of 2 token rows (16 tokens each) for 4 candidates with 2-way guidance."""
    cost = CostRecord()
    L = len(backend.prompt_ids(PROMPT))
    st = start(backend, PROMPT, 4, cost)
    st = decode_to_row(backend, st, 2, SamplingParams(), generator=new_generator(0), cost=cost)
    st = decode_to_row(backend, st, 4, SamplingParams(), generator=new_generator(1), cost=cost)
    g = cost.roles["generator"]
    assert g.prefill_token_rows == 2 * L                # cond + uncond, once, before branching
    assert g.decode_token_rows == 32 * 4 * 2            # 32 tokens fed x 4 candidates x 2 rows
    assert cost.image_tokens == 32 * 4
    assert g.flops == 2 * backend.info.generator_params * (2 * L + 256)
    # the last token of a finished image is sampled but never fed back
    st = decode(backend, st, TOTAL - 32, SamplingParams(), new_generator(2), cost=cost)
    assert g.decode_token_rows == (TOTAL - 1) * 4 * 2 and cost.image_tokens == TOTAL * 4


def test_encode_uses_the_l2_rule(backend):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    vq = backend.model.model.vqmodel
    ours = backend.encode_images(imgs)
    assert ours.shape == (2, 64)
    saved = vq.quantize.embedding.weight.data.clone()
    try:
        with torch.no_grad():          # scaling code vectors changes a Euclidean argmin, never the cosine rule
            vq.quantize.embedding.weight.mul_(torch.rand(saved.shape[0], 1) * 3 + 0.1)
        assert torch.equal(backend.encode_images(imgs), ours)
        with torch.no_grad():          # with a normalised codebook (as the demo model ships) the library agrees
            vq.quantize.embedding.weight.copy_(torch.nn.functional.normalize(saved, dim=-1))
            x = torch.as_tensor(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
            lib = vq.encode(x).image_tokens.view(2, -1)
            z = torch.nn.functional.normalize(vq.quant_conv(vq.encoder(x)), dim=1)
            # the library compares unnormalised z; same argmin as cosine only when |z| is constant per position
            cos = torch.einsum("ndhw,kd->nhwk", z, vq.quantize.embedding.weight).argmax(-1).flatten(1)
        assert torch.equal(backend.encode_images(imgs), cos)
        assert torch.equal(lib, cos)
    finally:
        vq.quantize.embedding.weight.data.copy_(saved)


def test_prompt_with_unknown_words(backend):
    with pytest.raises(PromptNotUnderstood, match="'dragon'"):
        backend.prompt_ids("a red dragon")


# -- loading from folders -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-janus")
    return folder, save_tiny_janus(folder, seed=2)


def test_load_by_path_offline(saved_folder, monkeypatch):
    folder, model = saved_folder

    def no_network(*a, **k):
        raise AssertionError("the engine tried to open a network connection")
    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    b = JanusBackend.load(folder, device="cpu", dtype="float32")
    assert b.info.rows == 8 and b.info.prompt_format == "plain"
    mem = JanusBackend(model, b.processor, meta=dict(DEMO_META))
    p = SamplingParams(greedy=True)
    assert torch.equal(decode(b, start(b, PROMPT), TOTAL, p).tokens, decode(mem, start(mem, PROMPT), TOTAL, p).tokens)


def test_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        JanusBackend.load(tmp_path / "nope")


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        JanusBackend.load(f)


def test_other_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError, match="'llama' model"):
        JanusBackend.load(tmp_path)


def test_missing_weights_and_tokenizer(saved_folder, tmp_path):
    folder, _ = saved_folder
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="no .safetensors"):
        JanusBackend.load(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        JanusBackend.load(tmp_path)


def test_corrupt_weights(saved_folder, tmp_path):
    folder, _ = saved_folder
    for f in folder.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])     # a copy cut short
    with pytest.raises(ModelLoadError, match="incomplete or corrupt"):
        JanusBackend.load(tmp_path, device="cpu")


def test_broken_config_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        JanusBackend.load(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_impossible_device(saved_folder):
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        JanusBackend.load(saved_folder[0], device="cuda")
    with pytest.raises(ModelLoadError, match="unknown device|unsupported device"):
        resolve_device("tpu")


def test_lean_step_forward_matches_the_library(backend):
    """The written-out decode forward (engine.lean) against transformers' forward: one token, a forced run of
    several tokens, with and without left padding."""
    from gridar_desktop.engine import lean
    assert lean.supports(backend.model.model.language_model)
    ids = backend.prompt_ids(PROMPT)
    short = backend.prompt_ids("a red circle")
    for prompts in ([ids, ids], [ids, short]):                     # the second pads the shorter row
        a = prefill(backend, {"cond": prompts}, torch.randint(0, 64, (2, 3)))
        b = prefill(backend, {"cond": prompts}, a.tokens)
        for m in (1, 4):
            run = torch.randint(0, 64, (2, m))
            mask = torch.cat([a.mask, a.mask.new_ones(2, m)], 1)
            pos = a.pos.unsqueeze(1) + torch.arange(m)
            emb = backend.embed_image(run)
            ha = lean.forward(backend.model.model.language_model, emb, mask if a.padded else None, pos, a.cache)
            hb = backend.forward(emb, mask if b.padded else None, pos, b.cache)
            torch.testing.assert_close(ha, hb, atol=2e-5, rtol=1e-4)
            a = replace(a, mask=mask, pos=a.pos + m)
            b = replace(b, mask=mask, pos=b.pos + m)
