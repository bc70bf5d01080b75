"""The whole path at Janus-Pro-1B's real shape (issue 27): random weights in its real configuration (hidden 2048,
MLP 5632, 16 heads, vocabulary 102400, untied head; SigLIP-L 384 px understanding encoder with 576 features;
VQ 16384 x 8 codes, 24 x 24 tokens -> 384 px), a byte-level BPE tokenizer trained in-process with Janus-Pro's special
tokens and its chat template, prompts in the "janus-pro" format.

Reduced for CI time, and only these: 2 of 24 language layers, 1 of 24 SigLIP layers, and the VQ's base width 32
instead of 128 (a 384 px decode at full width is ~18 s in float32 on a 2-core CPU). Every dimension the engine's
logic depends on (grid, codebook, image size, feature count, vocabulary, prompt format, context) is the real one.
The model is built once per module.

Through it: GridAR generation (a whole 576-token draw), single and Best-of-N (as masked edits) (bands on 24 rows, three-way guidance and prompt replacement with
layout rows in the real prompt format, partial decodes at 384 px, live previews on a budget), the Janus
understanding roles (verify, score, reformulate), an edit with a mask at 384 px, PNG metadata, and the studio
(canvas, candidate strip, layout panel) at 384 px. Reformulated clauses are capped at 8 tokens (random weights never
end one; the cap is a parameter of the same loop).
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from gridar_desktop.engine import events as ev
from gridar_desktop.engine.cancel import CancelToken
from gridar_desktop.engine.janus_roles import JanusRoles
from gridar_desktop.engine.real_shape import (LANGUAGE, VISION, VOCAB, describe, janus_pro_config, real_shape_backend,
                                              save_real_shape_folder)
from gridar_desktop.engine.sampling import SamplingParams
from gridar_desktop.engine.search import Search, SearchRequest, Stage
from gridar_desktop.io.png import read_metadata, save_png

PROMPT = "a red fox in the snow"
CLAUSE = ", with the fox at the top left and the snow at the bottom"
SHAPE = {"layers": 2, "vision_layers": 1, "vq_channels": 32}
PARAMS = SamplingParams(cfg=5.0)           # Janus-Pro's guidance


class LayoutPolicy:
    """Accept the verifier's verdicts; give every candidate the same layout clause (random weights propose none that
    passes validation, so the artist's answer is what makes the layout rows)."""

    def __init__(self, clause: str = CLAUSE) -> None:
        self.clause = clause
        self.asked: list[list[str]] = []

    def review_verdicts(self, review):
        return review.proposed

    def review_layouts(self, stage, proposals):
        self.asked.append(list(proposals))
        return [PROMPT + self.clause for _ in proposals]


@pytest.fixture(scope="module")
def backend():
    return real_shape_backend(**SHAPE)


@pytest.fixture(scope="module")
def roles(backend):
    # Clauses capped at 8 tokens instead of Janus-Pro's 80: random weights never end a clause, so every
    # reformulation would run to the cap (21 s a call here); the greedy loop is the same
    return JanusRoles(backend, max_new_tokens=8)


@pytest.fixture(scope="module")
def gridar(backend, roles):
    """GridAR N=4, three-way guidance, the default schedule (6, 12, 24 rows), live previews: (result, events)."""
    events = []
    req = SearchRequest(PROMPT, method="gridar", n=4, seed=1, params=PARAMS)
    res = Search(backend, roles, req, LayoutPolicy(), events.append, live_previews=True).run()
    return res, events


def canvas_rows(images: np.ndarray, rows: int, colour) -> bool:
    """Whether every pixel below token row `rows` (16 px each) is the empty canvas."""
    return bool((images[:, rows * 16:] == np.array(colour, np.uint8)).all())


def test_the_model_has_janus_pro_1b_dimensions(backend):
    cfg = backend.model.config
    t, v, q = cfg.text_config, cfg.vision_config, cfg.vq_config
    lm = LANGUAGE["1B"]
    assert (t.hidden_size, t.intermediate_size, t.num_attention_heads, t.num_key_value_heads, t.vocab_size) == (
        lm["hidden_size"], lm["intermediate_size"], lm["num_attention_heads"], lm["num_attention_heads"], VOCAB)
    assert not cfg.tie_word_embeddings and backend.model.lm_head.weight.data_ptr() != \
        backend.model.get_input_embeddings().weight.data_ptr()
    assert (v.hidden_size, v.num_attention_heads, v.image_size, v.patch_size, v.num_image_tokens) == (
        VISION["hidden_size"], 16, 384, 16, 576)
    assert (q.num_embeddings, q.embed_dim, q.channel_multiplier) == (16384, 8, [1, 1, 2, 2, 4])
    info = backend.info
    assert (info.rows, info.cols, info.image_size, info.codebook, info.prompt_format) == (24, 24, 384, 16384,
                                                                                      "janus-pro")
    assert "2 of 24 language layers" in describe(**SHAPE) and "VQ base width 32" in describe(**SHAPE)
    # the full configuration builds on the meta device: 24 layers, full SigLIP and VQ (nothing allocated)
    from transformers import JanusForConditionalGeneration
    with torch.device("meta"):
        full = JanusForConditionalGeneration(janus_pro_config("1B"))
    assert 2.0e9 < sum(p.numel() for p in full.parameters()) < 2.2e9            # Janus-Pro-1B: 2.08B
    # a prompt reads as Janus-Pro's chat format, BPE tokens (not words, not bytes), ending with begin-of-image
    ids = backend.prompt_ids(PROMPT)
    tok = backend.tokenizer
    assert ids[0] == backend.bos_id and ids[-1] == backend.boi_id
    assert tok.convert_ids_to_tokens(ids[1:3]) == ["<|User|>", ":"] and "<|Assistant|>" in tok.convert_ids_to_tokens(ids)
    assert len(ids) < 20 and tok.decode(ids[1:-1]) == "<|User|>: a red fox in the snow\n\n<|Assistant|>:"
    assert backend.defaults.get("guidance") == 5.0                      # Janus-Pro's, not the demo's 2


def test_gridar_three_way_at_real_shape(gridar, backend):
    res, events = gridar
    bands = [(e.from_row, e.to_row) for e in events if isinstance(e, ev.BandStarted)]
    assert bands == [(0, 6), (6, 12), (12, 24)]
    colour = backend.canvas_colour
    for e in (e for e in events if isinstance(e, (ev.BandCandidates, ev.BandAccepted))):
        assert e.previews.shape == (4, 384, 384, 3) and canvas_rows(e.previews, e.rows, colour)   # partial decodes
    assert res.images.shape == (4, 384, 384, 3) and res.tokens.shape == (4, 576)
    assert int(res.tokens.max()) < 16384
    # the judging roles at real shape: 576 image features per view, counted
    c = res.cost.roles
    assert (c["verifier"].calls, c["reformulator"].calls, c["scorer"].calls) == (2, 2, 1)
    assert c["verifier"].prefill_token_rows >= 2 * 4 * 576 and c["scorer"].prefill_token_rows >= 4 * 576
    for node in res.tree:
        assert len(node["p_possible"]) == 4 and all(0.0 <= p <= 1.0 for p in node["p_possible"])
        # the reformulator's proposals are validated (the original prompt, or it plus a clause)
        assert all(p.startswith(PROMPT) for p in node["proposed_layouts"])
        assert node["layouts"] == [PROMPT + CLAUSE] * 4
        assert [p["stream"] for p in node["prefilled"]] == ["layout"]          # three-way: layout rows prefilled
    assert sorted(res.ranking) == [0, 1, 2, 3] and all(0.0 <= s <= 1.0 for s in res.scores)


def test_live_previews_are_on_a_budget_and_in_order(gridar, backend):
    """Previews at 384 px are decoded in the background, one at a time, latest wins: at most one per row, each
    inside its band (after BandStarted, before BandCandidates), rows rising, the undrawn rows the empty canvas."""
    _, events = gridar
    stage, last_rows, band_end, seen = None, 0, 0, []
    for e in events:
        if isinstance(e, ev.BandStarted):
            stage, last_rows, band_end = e.stage, e.from_row, e.to_row
        elif isinstance(e, ev.RowPreview):
            assert e.stage == stage and last_rows < e.rows < band_end
            assert e.previews.shape == (4, 384, 384, 3) and canvas_rows(e.previews, e.rows, backend.canvas_colour)
            last_rows = e.rows
            seen.append(e.rows)
        elif isinstance(e, ev.BandCandidates):
            stage = None
    assert seen, "no live preview arrived in three bands"
    assert len(seen) <= 5 + 5 + 11                       # at most one per row drawn before each band's end


def test_prompt_replacement_at_real_shape(backend, roles):
    """The replacement strategy: the layout text replaces the conditioning row, prefilled in the real prompt
    format (a short schedule, stopped after the first band drawn with it)."""
    token, events = CancelToken(), []

    def emit(e):
        events.append(e)
        if isinstance(e, ev.BandStarted) and e.stage == 1:
            token.stop_after_band()
    one_row = 1 / 24
    req = SearchRequest(PROMPT, method="gridar", n=4, seed=3, params=PARAMS, strategy="replace",
                        schedule=(Stage(one_row, False, True), Stage(2 * one_row, False, False),
                                  Stage(1.0, False, False)))
    policy = LayoutPolicy(", with the fox in the center")
    res = Search(backend, roles, req, policy, emit, token).run()
    assert res.stopped_early and res.tokens.shape == (4, 2 * 24)
    node = res.tree[0]
    assert node["layouts"] == [PROMPT + ", with the fox in the center"] * 4
    assert node["prefilled"] == [{"stream": "cond", "rows": 4, "reused": 0}]
    assert [(e.from_row, e.to_row) for e in events if isinstance(e, ev.BandStarted)] == [(0, 1), (1, 2)]
    assert res.cost.roles["reformulator"].calls == 1
    assert res.cost.roles.get("verifier") is None or res.cost.roles["verifier"].calls == 0


def test_png_metadata_round_trip_at_real_shape(gridar, backend, tmp_path):
    res, _ = gridar
    meta = res.metadata()
    p = save_png(Image.fromarray(res.images[res.best]), tmp_path / "fox.png", PROMPT, meta)
    back = read_metadata(p)
    assert back["prompt"] == PROMPT and back["tree"] == json.loads(json.dumps(meta["tree"]))
    assert back["settings"]["strategy"] == "three-way" and back["settings"]["cfg"] == 5.0
    assert len(back["tokens"]) == 4 and len(back["tokens"][0]) == 576
    chosen = torch.tensor(back["tokens"][back["chosen"]]).unsqueeze(0)
    assert np.array_equal(backend.decode_tokens(chosen)[0], res.images[res.best])
    assert Image.open(p).size == (384, 384)


@pytest.mark.parametrize("method,n", [("single", 1), ("best-of-n", 2)])
def test_an_edit_with_a_mask_at_384_px(gridar, backend, roles, method, n):
    """Single and Best-of-N generation, as edits of GridAR's best image inside a mask: only the masked token rows
    are drawn (a whole 576-token draw is GridAR's run above; single and Best-of-N differ from it only in what
    happens after the draw: nothing, or the scorer's ranking)."""
    from gridar_desktop.engine.edit import prepare_edit
    res, _ = gridar
    source = res.images[res.best]
    mask = np.zeros((384, 384), np.uint8)
    mask[200:250, 96:288] = 255                                       # token rows 12..15, columns 6..17
    target = prepare_edit(backend, Image.fromarray(source), Image.fromarray(mask))
    assert target.source.shape == (384, 384, 3) and len(target.tokens) == 576
    redrawn = np.array(target.redraw).reshape(24, 24)
    assert redrawn[12:16, 6:18].all() and redrawn.sum() == 4 * 12
    events = []
    req = SearchRequest(PROMPT + ", a small bird on the snow", method=method, n=n, seed=4, params=PARAMS,
                        edit=target, context="source")
    # Best-of-N with live previews: a partial edit's previews are decoded in the background too
    out = Search(backend, roles if n > 1 else None, req, emit=events.append, live_previews=n > 1).run()
    for e in events:
        if isinstance(e, ev.RowPreview):
            assert e.previews.shape == (n, 384, 384, 3) and 12 < e.rows < 16
    assert out.images.shape == (n, 384, 384, 3) and out.tokens.shape == (n, 576)
    if n > 1:                                                   # Best-of-N: the scorer ranks the candidates
        assert out.cost.roles["scorer"].calls == 1 and sorted(out.ranking) == list(range(n))
        assert out.scores[out.ranking[0]] == max(out.scores) and all(0.0 <= x <= 1.0 for x in out.scores)
    outside = ~target.mask
    assert (out.images[:, outside] == target.source[outside]).all()          # nothing outside the mask changes
    kept = ~np.array(target.redraw)
    assert (out.tokens[:, kept] == torch.tensor(target.tokens)[kept]).all()
    # only the redrawn span is decoded: from its first to its last redrawn token
    assert out.cost.image_tokens <= n * (target.last - target.first + 1)
    assert [e.to_row for e in events if isinstance(e, ev.BandStarted)] == [16]


def test_the_studio_at_real_shape(qtbot, loop, backend, roles, monkeypatch):
    """A GridAR run through the window on the real-shape model, stopped after its first band: live previews on the
    canvas, the four 384 px candidates in the strip, the verdicts and the reformulated prompts in the layout panel,
    and the run's end; the window's size stays."""
    pytest.importorskip("PySide6")
    from conftest import wait

    import gridar_desktop.app.studio as studio_mod
    from gridar_desktop.app.window import MainWindow
    monkeypatch.setattr(studio_mod, "_load", lambda spec, *a, **k: studio_mod.LoadedModel(spec, backend, roles))
    w = MainWindow(studio_mod.Studio(device="cpu"))
    qtbot.addWidget(w)
    w.show()
    try:
        assert wait(qtbot, w.choose_model("real-shape-1b")) is True
        s, c = w.studio, w.controls
        seen = []
        s.engine_event.connect(lambda e: seen.append(e))
        s.engine_event.connect(lambda e: isinstance(e, ev.BandStarted) and e.stage == 0 and c.stop_band.click())
        c.prompt.setText(PROMPT)
        c.method.setCurrentIndex(c.method.findData("gridar"))
        c.n.setValue(4)
        c.manual.setChecked(False)
        size = (w.width(), w.height())
        result = wait(qtbot, w.start_generation(), timeout=900000)
        assert result is not None and result.stopped_early and result.images.shape == (4, 384, 384, 3)
        assert result.tokens.shape == (4, 6 * 24)
        assert any(isinstance(e, ev.RowPreview) and e.previews.shape[1:] == (384, 384, 3) for e in seen)
        assert (w.canvas.image.width(), w.canvas.image.height()) == (384, 384)
        assert sum(1 for card in w.strip.cards if card.isVisible()) == 4
        proposals = [e for e in seen if isinstance(e, ev.LayoutProposals)]
        assert len(proposals) == 1 and all(p.startswith(PROMPT) for p in proposals[0].prompts)
        shown = [e.toolTip() for e in w.layouts.edits[:4]]
        assert shown == list(proposals[0].prompts) and "after band 1" in w.layouts.heading.text()
        assert (w.width(), w.height()) == size and not s.busy
    finally:
        w.close()
        w.studio.shutdown()


def test_a_saved_folder_loads_like_an_imported_one(tmp_path, backend):
    """`save_real_shape_folder` writes what `gridar import-model` writes; `JanusBackend.load` reads it back (here at
    one layer and the narrow VQ: the folder format does not depend on depth)."""
    from gridar_desktop.engine.backend import JanusBackend
    folder = save_real_shape_folder(tmp_path / "Janus-Pro-1B-shaped", layers=1, vision_layers=1, vq_channels=32)
    assert (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()
    assert not (folder / "gridar.json").exists()
    import os
    umask = os.umask(0o022)
    os.umask(umask)
    assert all((f.stat().st_mode & 0o777) == 0o666 & ~umask for f in folder.iterdir())      # the umask, not 0600
    b = JanusBackend.load(folder, device="cpu", dtype="float32")
    assert b.info.prompt_format == "janus-pro" and b.info.image_size == 384 and b.info.codebook == 16384
    assert b.prompt_ids(PROMPT) == backend.prompt_ids(PROMPT)
    assert b.defaults.get("guidance") == 5.0


def test_the_preview_worker_keeps_one_decode_in_flight_and_the_latest_request():
    """The budget itself, with scripted decodes: while one decodes, later requests replace each other (latest wins);
    finished previews are handed out once, to their own band only; a band's end and closing stop a decode in flight
    at its next checkpoint."""
    import threading
    import time

    from gridar_desktop.engine.cancel import checkpoint
    from gridar_desktop.engine.search import _PreviewWorker
    started, release, ran = threading.Event(), threading.Event(), []

    def render(name, block=False):
        def go():
            ran.append(name)
            started.set()
            while block and not release.is_set():
                checkpoint()                       # a decoder layer: where an abort takes effect
                time.sleep(0.001)
            return np.full((1, 2, 2, 3), len(ran), np.uint8)
        return go
    w = _PreviewWorker(backend=None, rest=0.0)
    try:
        w.submit(0, 1, render("row 1", block=True))
        assert started.wait(5)
        w.submit(0, 2, render("row 2"))
        w.submit(0, 3, render("row 3"))           # replaces row 2, which never starts
        assert w.take(0) is None                   # row 1 still decoding
        release.set()
        deadline = time.time() + 5
        got = []
        while 3 not in got and time.time() < deadline:
            done = w.take(0)
            if done is not None:
                got.append(done[0])
            time.sleep(0.002)
        # row 1's preview is handed out unless row 3's finished before the search asked (latest wins there too)
        assert got in ([1, 3], [3]) and ran == ["row 1", "row 3"] and w.decoded == 2
        # a finished preview of another band is not handed out
        w.submit(0, 4, render("row 4"))
        while w.decoded < 3 and time.time() < deadline:
            time.sleep(0.002)
        assert w.take(1) is None and w.take(0) is None
        # the band ends while a decode runs: it stops at its next checkpoint and drop() waits for it
        release.clear()
        started.clear()
        w.submit(1, 1, render("row 1 of band 2", block=True))
        assert started.wait(5)
        t0 = time.perf_counter()
        w.drop()
        assert time.perf_counter() - t0 < 1.0 and w.take(1) is None and w.decoded == 3
    finally:
        t0 = time.perf_counter()
        w.close()
        assert time.perf_counter() - t0 < 1.0


def test_the_preview_worker_rests_after_each_decode():
    """After a decode of d seconds the next one starts no sooner than rest * d later, and the request that waited
    through the rest is the latest one."""
    import time

    from gridar_desktop.engine.search import _PreviewWorker
    starts = []

    def render(name, seconds):
        def go():
            starts.append((name, time.monotonic()))
            time.sleep(seconds)
            return np.zeros((1, 2, 2, 3), np.uint8)
        return go
    w = _PreviewWorker(backend=None, rest=2.0)
    try:
        w.submit(0, 1, render("a", 0.2))
        deadline = time.time() + 5
        while w.decoded < 1 and time.time() < deadline:
            time.sleep(0.005)
        w.submit(0, 2, render("b", 0.0))
        w.submit(0, 3, render("c", 0.0))                  # replaces b during the rest
        while w.decoded < 2 and time.time() < deadline:
            time.sleep(0.005)
        assert [n for n, _ in starts] == ["a", "c"]
        assert starts[1][1] - starts[0][1] >= 0.2 + 2.0 * 0.2 - 0.02
    finally:
        w.close()
