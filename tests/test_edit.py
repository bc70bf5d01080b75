"""Masked editing on a tiny random Janus: inputs, the token rule, forced decoding, paste-back, search and cost."""
import numpy as np
import pytest
import torch
from PIL import Image

from gridar_desktop.engine.decode import decode, new_generator, prefill, start
from gridar_desktop.engine.edit import (EditInputError, edit_from_metadata, edit_metadata, feather_alpha, fit_image,
                                        paste_back, prepare_edit, token_mask)
from gridar_desktop.engine.sampling import SamplingParams
from gridar_desktop.engine.search import PruneDecision, Search, SearchRequest, settle
from gridar_desktop.engine.tiny import tiny_backend
from gridar_desktop.shapes.scene import render_scene, sample_scene
from gridar_desktop.shapes.grammar import parse_prompt

from test_search import ScriptedRoles

PROMPT = "a red circle and a blue square"


@pytest.fixture(scope="module")
def backend():
    torch.set_num_threads(1)
    return tiny_backend(seed=3)


def source_image() -> Image.Image:
    import random
    return render_scene(sample_scene(parse_prompt(PROMPT), random.Random(1)))


def box_mask(size=64, box=(20, 24, 36, 40)) -> Image.Image:
    m = np.zeros((size, size), np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 255
    return Image.fromarray(m)


def test_token_rule_any_masked_pixel():
    m = np.zeros((64, 64), bool)
    m[9, 17] = True                        # one pixel in token row 1, column 2
    tm = token_mask(m, 8, 8)
    assert tm.sum() == 1 and tm[1, 2]
    m[16:32, 0:8] = True
    assert token_mask(m, 8, 8)[2:4, 0].all() and token_mask(m, 8, 8).sum() == 3


def test_fit_and_mask_notes(backend):
    big = source_image().resize((200, 100))
    img, note = fit_image(big, 64, "crop")
    assert img.size == (64, 64) and "cropped the centre 100x100" in note
    img, note = fit_image(big, 64, "resize")
    assert "aspect ratio not kept" in note
    e = prepare_edit(backend, big, box_mask(50), fit="resize")
    assert any("resampled the mask" in n for n in e.notes)
    assert e.source.shape == (64, 64, 3) and len(e.tokens) == 64


def test_empty_and_full_masks(backend):
    with pytest.raises(EditInputError, match="mask is empty"):
        prepare_edit(backend, source_image(), Image.new("L", (64, 64), 0))
    e = prepare_edit(backend, source_image(), Image.new("L", (64, 64), 255))
    assert all(e.redraw) and any("new generation" in n for n in e.notes)


def test_paste_back_keeps_outside_pixels_exactly():
    rng = np.random.default_rng(0)
    src, gen = (rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2))
    m = np.asarray(box_mask()) > 0
    out = paste_back(src, gen, m, feather=3)
    assert np.array_equal(out[~m], src[~m])
    a = feather_alpha(m, 3)
    deep = a == 1.0
    assert deep.any() and np.array_equal(out[deep], gen[deep])
    assert 0 < a[m].min() < 1                       # the seam ramps inside the mask


def test_forced_runs_keep_the_cache_exact(backend):
    """Forced tokens fed as runs give the same next-token logits as a fresh forward over everything."""
    p = SamplingParams(cfg=3.0)
    src = torch.randint(0, 64, (1, 64))
    fmask = torch.ones(64, dtype=torch.bool)
    fmask[[10, 11, 20, 33]] = False                 # sampled positions; the rest are forced
    st = decode(backend, start(backend, PROMPT, 2), 40, p, new_generator(0), forced=src.expand(2, 64),
                forced_mask=fmask)
    assert torch.equal(st.tokens[:, fmask[:40]], src.expand(2, 64)[:, :40][:, fmask[:40]])
    ids = backend.prompt_ids(PROMPT)
    for b in range(2):
        fresh = prefill(backend, {"cond": [ids]}, st.tokens[b:b + 1])
        torch.testing.assert_close(backend.image_logits(st.hidden)[b], backend.image_logits(fresh.hidden)[0],
                                   atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["gridar", "best-of-n"])
def test_edit_search_redraws_only_the_masked_tokens(backend, method):
    e = prepare_edit(backend, source_image(), box_mask())
    req = SearchRequest(prompt=PROMPT, method=method, n=4, seed=2, edit=e, strategy="replace")
    res = Search(backend, ScriptedRoles(), req).run()
    keep = ~torch.tensor(e.redraw)
    assert res.contexts == ["source", "cleared", "source", "cleared"]          # the default: mixed
    for c, ctx in enumerate(res.contexts):
        assert torch.equal(res.tokens[c, keep], torch.tensor(e.codes(ctx))[keep])
    assert res.cost.image_tokens == 4 * e.redrawn_tokens
    m = e.mask
    assert all(np.array_equal(img[~m], e.source[~m]) for img in res.images)
    g = res.cost.roles["generator"]
    # the prefix before the first redrawn token is prefilled; from there every position up to the last redrawn
    # token is fed once per stream (the last one is not: nothing reads it); nothing after it is computed
    if method == "best-of-n":                       # two streams (guidance) per candidate
        assert g.decode_token_rows == 4 * 2 * (e.last - e.first)
    if method == "gridar":
        assert len(res.tree) >= 1 and res.tree[0]["rows"] > e.first // 8


def test_edit_metadata_round_trip(backend):
    e = prepare_edit(backend, source_image(), box_mask())
    back = edit_from_metadata(edit_metadata(e))
    assert np.array_equal(back.source, e.source) and np.array_equal(back.mask, e.mask)
    assert back.tokens == e.tokens and back.redraw == e.redraw and back.cleared == e.cleared


def test_cleared_codes_encode_the_source_with_the_mask_painted_as_the_canvas(backend):
    e = prepare_edit(backend, source_image(), box_mask())
    img = e.source.copy()
    img[e.mask] = backend.canvas_colour
    assert list(e.cleared) == backend.encode_images(img[None])[0].tolist()
    assert e.codes("source") == e.tokens and e.codes("cleared") == e.cleared
    assert e.cleared != e.tokens                    # the masked pixels were a red circle, now the empty canvas
    old = edit_metadata(e)
    del old["cleared_tokens"]                       # a file from before contexts: both contexts read the source
    assert edit_from_metadata(old).codes("cleared") == e.tokens


@pytest.mark.parametrize("context", ["source", "cleared"])
def test_single_context_edits_force_its_codes(backend, context):
    e = prepare_edit(backend, source_image(), box_mask())
    res = Search(backend, ScriptedRoles(), SearchRequest(prompt=PROMPT, method="best-of-n", n=2, seed=1, edit=e,
                                                         context=context)).run()
    keep = ~torch.tensor(e.redraw)
    assert res.contexts == [context] * 2
    assert torch.equal(res.tokens[:, keep], torch.tensor(e.codes(context))[keep].expand(2, -1))
    assert res.metadata()["settings"]["context"] == context


def test_pruning_a_mixed_edit_refills_within_each_context(backend):
    # slots 0, 2 read the source, 1, 3 the cleared codes: a rejected slot copies a survivor of its own context, and
    # continues itself when none survived
    d = settle(PruneDecision([False, True, True, False], [-1] * 4), __import__("random").Random(0),
               ["source", "cleared", "source", "cleared"])
    assert d.keep == [False, True, True, False] and d.sources == [2, 1, 2, 1]
    d = settle(PruneDecision([True, False, True, True], [-1] * 4), __import__("random").Random(0),
               ["source", "cleared", "source", "cleared"])
    assert d.sources[1] == 3
    d = settle(PruneDecision([True, False, False, True], [-1] * 4), __import__("random").Random(0),
               ["source", "cleared", "source", "cleared"])
    assert d.keep == [True, False, False, True] and d.sources == [0, 3, 0, 3]
    d = settle(PruneDecision([True, False, True, False], [-1] * 4), __import__("random").Random(0),
               ["source", "cleared", "source", "cleared"])
    assert d.keep == [True, True, True, True] and d.sources == [0, 1, 2, 3]
    # in a search, copies carry their context's codes to the end
    e = prepare_edit(backend, source_image(), box_mask(box=(20, 8, 36, 60)))        # token rows 1-7
    roles = ScriptedRoles(verdicts=[[0.9, 0.9, 0.1, 0.1], [0.9, 0.9, 0.9, 0.9]])
    res = Search(backend, roles, SearchRequest(prompt=PROMPT, n=4, seed=3, edit=e, strategy="replace",
                                               threshold=0.5)).run()
    assert res.tree[0]["sources"] == [0, 1, 0, 1]
    keep = ~torch.tensor(e.redraw)
    assert res.contexts == ["source", "cleared", "source", "cleared"]
    for c, ctx in enumerate(res.contexts):
        assert torch.equal(res.tokens[c, keep], torch.tensor(e.codes(ctx))[keep])


def test_batch_of_edits_matches_each_alone(backend):
    e1 = prepare_edit(backend, source_image(), box_mask())
    e2 = prepare_edit(backend, source_image(), box_mask(box=(0, 40, 30, 60)))
    reqs = [SearchRequest(prompt=PROMPT, method="best-of-n", n=4, seed=s, edit=e) for s, e in ((1, e1), (2, e2))]
    batch = Search(backend, ScriptedRoles(), reqs).run_all()
    for req, got in zip(reqs, batch):
        assert torch.equal(got.tokens, Search(backend, ScriptedRoles(), req).run().tokens)


def test_full_mask_alpha_is_one_everywhere():
    assert (feather_alpha(np.ones((64, 64), bool), 3) == 1).all()


def test_gridar_batches_of_edits_must_share_their_rows(backend):
    e1 = prepare_edit(backend, source_image(), box_mask())
    e2 = prepare_edit(backend, source_image(), box_mask(box=(0, 40, 30, 60)))
    reqs = [SearchRequest(prompt=PROMPT, method="gridar", n=4, seed=s, edit=e) for s, e in ((1, e1), (2, e2))]
    with pytest.raises(ValueError, match="same token rows"):
        Search(backend, ScriptedRoles(), reqs)


def test_partial_edit_views_show_an_empty_canvas_where_the_mask_is_not_drawn_yet(backend):
    """The verifier's views of a partial edit: drawn tokens, then the source outside the mask and, inside it, the
    codes above for the next row and the empty-canvas code after (never the object being replaced); undrawn
    masked patches show the empty canvas; the finished image is completed with the source."""
    e = prepare_edit(backend, source_image(), box_mask(box=(8, 8, 56, 56)))
    req = SearchRequest(prompt=PROMPT, method="gridar", n=4, seed=2, edit=e, strategy="replace")
    s = Search(backend, ScriptedRoles(), req)
    seen = []
    decode = backend.decode_tokens

    def spy(tokens):
        seen.append(tokens.clone())
        return decode(tokens)
    backend.decode_tokens = spy
    try:
        res = s.run()
    finally:
        backend.decode_tokens = decode
    redraw = torch.tensor(e.redraw)
    src = torch.tensor([e.codes(x) for x in res.contexts])          # (4, 64): each candidate's kept codes
    drawn_rows = [n["rows"] for n in res.tree]
    assert drawn_rows, "the span should be long enough for a verification"
    partial = seen[0]                                      # the first stage's previews
    k = drawn_rows[0] * backend.info.cols
    after = torch.arange(64) >= k
    assert torch.equal(partial[:, ~redraw & after], src[:, ~redraw & after])
    nxt = after & (torch.arange(64) < k + 8)
    assert torch.equal(partial[:, redraw & nxt], partial[:, torch.nonzero(redraw & nxt).flatten() - 8])
    assert (partial[:, redraw & after & ~nxt] == backend.blank_token).all()
    shown = res.tree[0]["rows"] * 8                          # pixel rows drawn at the first stage (8 px per row)
    first_band = s._previews(res.tokens[:, :k])
    grown = np.kron(np.array(e.redraw).reshape(8, 8), np.ones((8, 8), bool)).astype(bool)
    grown[:shown] = False
    assert (first_band[:, grown] == np.array(backend.canvas_colour, np.uint8)).all()
    final = seen[-1]
    assert torch.equal(final[:, ~redraw], src[:, ~redraw])


# -- edit-conditioned generation (`training.edit_gen`): the source, its redrawn part grey, in every generation row --

@pytest.fixture(scope="module")
def conditioned():
    b = tiny_backend(seed=3)
    b.meta["edit_generation"] = {"format": "holed-source", "hole_fill": [128, 128, 128], "words": "target :"}
    return b


def test_conditioned_rows_hold_the_image_and_pad_only_the_prompt(conditioned, backend):
    assert conditioned.edit_conditioned and not backend.edit_conditioned
    ids = conditioned.edit_prompt_ids(PROMPT)
    words = conditioned.prompt_ids(PROMPT)[1:-1]
    head = ids[:len(ids) - len(words) - 1]
    assert head.count(conditioned.image_id) == conditioned.n_image_features == 64
    assert ids[-len(words) - 1:-1] == words and ids[-1] == conditioned.boi_id
    un = conditioned.uncond_ids(ids)
    assert un[:len(head)] == head and un[-1] == conditioned.boi_id
    assert set(un[len(head):-1]) == {conditioned.pad_id}
    plain = conditioned.prompt_ids(PROMPT)          # a plain generation row of the same model: Janus's own form
    assert conditioned.uncond_ids(plain) == backend.uncond_ids(plain)
    assert conditioned.hole_fill == (128, 128, 128)


def test_conditioning_image_greys_the_mask_and_the_redrawn_patches(conditioned):
    from gridar_desktop.engine.edit import HOLE_FILL, conditioning_image, pixel_mask
    e = prepare_edit(conditioned, source_image(), box_mask())
    img = conditioning_image(e.source, e.mask, e.redraw)
    hole = pixel_mask(np.array(e.redraw), 8, 8, 64)
    assert hole[e.mask].all() and (img[hole] == HOLE_FILL).all()
    assert np.array_equal(img[~hole], e.source[~hole])


def test_conditioned_forced_decoding_keeps_the_cache_exact(conditioned):
    """Prefill with image features, then forced runs and samples: the next-token logits equal a fresh forward of
    (conditioned row, every token so far)."""
    from gridar_desktop.engine.edit import conditioning_image
    e = prepare_edit(conditioned, source_image(), box_mask())
    feats = conditioned.image_features(conditioning_image(e.source, e.mask, e.redraw)[None])
    ids = conditioned.edit_prompt_ids(PROMPT)
    src = torch.tensor(e.tokens).unsqueeze(0)
    fmask = ~torch.tensor(e.redraw)
    st = prefill(conditioned, {"cond": [ids], "uncond": [conditioned.uncond_ids(ids)]}, None, None, feats)
    st = decode(conditioned, st, 40, SamplingParams(cfg=3.0), new_generator(0), forced=src, forced_mask=fmask)
    fresh = prefill(conditioned, {"cond": [ids]}, st.tokens, None, feats)
    torch.testing.assert_close(conditioned.image_logits(st.hidden)[0], conditioned.image_logits(fresh.hidden)[0],
                               atol=2e-4, rtol=1e-4)
    blind = prefill(conditioned, {"cond": [ids]}, st.tokens, None, torch.zeros_like(feats))
    assert not torch.allclose(conditioned.image_logits(blind.hidden), conditioned.image_logits(fresh.hidden))


def test_conditioned_edit_searches_read_each_jobs_source(conditioned):
    e1 = prepare_edit(conditioned, source_image(), box_mask())
    e2 = prepare_edit(conditioned, source_image(), box_mask(box=(0, 40, 30, 60)))
    reqs = [SearchRequest(prompt=PROMPT, method="best-of-n", n=2, seed=s, edit=e) for s, e in ((1, e1), (2, e2))]
    batch = Search(conditioned, ScriptedRoles(), reqs).run_all()
    for req, got in zip(reqs, batch):
        alone = Search(conditioned, ScriptedRoles(), req).run()
        assert torch.equal(got.tokens, alone.tokens)
        keep = ~torch.tensor(req.edit.redraw)
        for c, ctx in enumerate(got.contexts):
            assert torch.equal(got.tokens[c, keep], torch.tensor(req.edit.codes(ctx))[keep])
    # the conditioning reaches the rows: the plain model (same weights) starts from other hidden states (a random
    # model's near-flat logits would often sample the same tokens, so the states are compared, not the draws)
    from gridar_desktop.engine.backend import JanusBackend
    plain = JanusBackend(conditioned.model, conditioned.processor, "cpu", meta={"prompt_format": "plain",
                                                                                "canvas_colour": [235, 233, 226]})
    assert not torch.allclose(Search(plain, ScriptedRoles(), reqs[0])._start().hidden,
                              Search(conditioned, ScriptedRoles(), reqs[0])._start().hidden)


def test_conditioned_gridar_reformulates_with_the_source_in_the_new_rows(conditioned):
    e = prepare_edit(conditioned, source_image(), box_mask(box=(20, 8, 36, 60)))        # token rows 1-7
    roles = ScriptedRoles(verdicts=[[0.9, 0.9, 0.1, 0.1], [0.9, 0.9, 0.9, 0.9]],
                          layouts=[PROMPT + ", with the red circle at the top"] * 4)
    res = Search(conditioned, roles, SearchRequest(prompt=PROMPT, n=4, seed=3, edit=e, strategy="replace",
                                                   threshold=0.5)).run()
    assert res.tree[0]["sources"] == [0, 1, 0, 1]
    assert any(p["rows"] for node in res.tree for p in node.get("prefilled", []))   # new cond rows were prefilled
    keep = ~torch.tensor(e.redraw)
    for c, ctx in enumerate(res.contexts):
        assert torch.equal(res.tokens[c, keep], torch.tensor(e.codes(ctx))[keep])
    assert res.cost.roles["generator"].extra_flops > 0                              # the encoder's pass is counted


def test_edit_generation_training_rows_are_the_rows_the_engine_feeds(conditioned, tmp_path):
    """The editgen stage's rows (training.edit_gen) and the engine's (JanusBackend.edit_prompt_ids / uncond_ids)
    are the same ids, and a tiny training batch has the shapes and masks the loss expects."""
    import random

    from gridar_desktop.training.edit_gen import (build_edit_dataset, edit_generation_ids, edit_generation_loss,
                                                  make_edit_batch)
    from gridar_desktop.training.gen import words_to_ids
    words = words_to_ids(PROMPT)
    ids = conditioned.edit_prompt_ids(PROMPT)
    assert edit_generation_ids(words, len(words)) == ids
    assert edit_generation_ids(None, len(words)) == conditioned.uncond_ids(ids)
    data = build_edit_dataset(conditioned.model.model.vqmodel, 8, tmp_path / "edits.pt", chunk=8)
    assert len(data["kind"]) == 8 and all(r.any() for r in data["redraw"])
    for i in range(8):               # each conditioning image is grey where its edit redraws
        assert data["holed"][i].shape == (64, 64, 3)
        hole = (data["holed"][i] == 128).all(-1).numpy()
        assert hole.any()
    ids, mask, images, codes, redraw = make_edit_batch(data, random.Random(0), 4)
    assert (ids == conditioned.image_id).sum(-1).tolist() == [64] * 4
    assert images.shape == (4, 3, 64, 64) and codes.shape == redraw.shape == (4, 64)
    loss = edit_generation_loss(conditioned.model, ids, mask, images, codes, redraw)
    assert torch.isfinite(loss) and loss.requires_grad


def test_rollout_verdicts_of_an_edit_read_pasted_back_completions(backend):
    e = prepare_edit(backend, source_image(), box_mask(box=(20, 8, 36, 60)))        # token rows 1-7
    roles = ScriptedRoles(scores=[[0.9, 0.8, 0.2, 0.4], [0.6] * 4, [0.1, 0.2, 0.3, 0.4]])
    req = SearchRequest(prompt=PROMPT, n=4, seed=2, edit=e, strategy="replace", verify_by="rollout")
    res = Search(backend, roles, req).run()
    m = e.mask
    assert len(roles.scored) == 3 and all(np.array_equal(im[~m], e.source[~m]) for ims in roles.scored
                                          for im in ims)
    # the completions of slots 2 and 3 fail; each continues the survivor of its own context (mixed: source,
    # cleared, source, cleared)
    assert res.tree[0]["keep"] == [True, True, False, False] and res.tree[0]["sources"] == [0, 1, 0, 1]
    bon = Search(backend, ScriptedRoles(), SearchRequest(prompt=PROMPT, method="best-of-n", n=4, seed=2, edit=e,
                                                         strategy="replace")).run()
    np.testing.assert_array_equal(roles.scored[0], bon.images)
    keep = ~torch.tensor(e.redraw)
    for c, ctx in enumerate(res.contexts):
        assert torch.equal(res.tokens[c, keep], torch.tensor(e.codes(ctx))[keep])


def test_redrawn_slots_of_a_mixed_edit_start_over_in_their_own_context(backend):
    e = prepare_edit(backend, source_image(), box_mask())
    req = SearchRequest(prompt=PROMPT, n=4, seed=2, edit=e, strategy="replace", refill="redraw")
    roles = ScriptedRoles(verdicts=[[0.9, 0.1, 0.1, 0.8], [0.9] * 4])
    res = Search(backend, roles, req).run()
    assert res.tree[0]["redraw"] == [False, True, True, False]
    assert res.contexts == ["source", "cleared", "source", "cleared"]       # a redraw keeps its slot's context
    keep = ~torch.tensor(e.redraw)
    for c, ctx in enumerate(res.contexts):
        assert torch.equal(res.tokens[c, keep], torch.tensor(e.codes(ctx))[keep])
    assert all(np.array_equal(img[~e.mask], e.source[~e.mask]) for img in res.images)
    plain = Search(backend, ScriptedRoles(), SearchRequest(prompt=PROMPT, n=4, seed=2, edit=e, strategy="replace",
                                                          prune=False)).run()
    k = res.tree[0]["rows"] * 8
    redrawn_here = torch.tensor(e.redraw[:k])
    for c in (1, 2):
        assert not torch.equal(res.tokens[c, :k][redrawn_here], plain.tokens[c, :k][redrawn_here])
    assert res.cost.image_tokens > plain.cost.image_tokens
