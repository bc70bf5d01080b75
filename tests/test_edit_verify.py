"""Verifying partial edits: the rules of what a partial edit rules out, their training views, the edit question on
the Janus roles, and the views and threshold the search gives them."""
import random

import numpy as np
import pytest
import torch

from gridar_desktop.engine.cost import CostRecord
from gridar_desktop.engine.janus_roles import HIDDEN_FILL, JanusRoles, masked_view
from gridar_desktop.engine.roles import PartialView
from gridar_desktop.shapes.edits import (edit_contradictions, judge_partial_edit, make_edit_set, sample_edit,
                                         seen_in_edit)
from gridar_desktop.shapes.grammar import parse_prompt
from gridar_desktop.shapes.scene import SceneObject, render_scene
from gridar_desktop.training.edit_views import make_edit_view, redrawn_rows, undrawn_pixels

PROMPT = "a green square and an orange circle"


def test_a_half_drawn_object_of_a_complete_colour_is_a_contradiction():
    spec = parse_prompt(PROMPT)
    square = SceneObject("green", "square", 12, 12, 16)
    undrawn = np.zeros((64, 64), bool)
    undrawn[40:] = True
    green_cap = SceneObject("green", "circle", 40, 40, 20)          # half of it above row 40
    orange_cap = SceneObject("orange", "circle", 40, 40, 20)
    full, part = seen_in_edit([square, green_cap], undrawn)
    assert [o.colour for o in full] == ["green"] and [o.colour for o in part] == ["green"]
    assert any("every green group is complete" in c for c in edit_contradictions(full, part, spec))
    full, part = seen_in_edit([square, orange_cap], undrawn)
    assert edit_contradictions(full, part, spec) == []               # the orange circle may still come
    # the judge's reading of the same render agrees
    assert judge_partial_edit(render_scene([square, green_cap]), spec, undrawn)
    assert judge_partial_edit(render_scene([square, orange_cap]), spec, undrawn) == []


def test_visibility_is_per_pixel_not_per_row():
    """An object beside the undrawn patches is fully visible whatever row it is in; one with only a sliver
    showing is not seen at all."""
    undrawn = np.zeros((64, 64), bool)
    undrawn[32:, 32:] = True
    left = SceneObject("red", "square", 12, 48, 12)                  # below the cut row, but outside the hidden part
    sliver = SceneObject("blue", "square", 48, 36, 16)               # 4 px of 16 above the hidden part... of width 16
    hidden = SceneObject("blue", "circle", 48, 52, 12)
    full, part = seen_in_edit([left, sliver, hidden], undrawn)
    assert [o.colour for o in full] == ["red"]
    assert [o.shape for o in part] == ["square"]                     # 16 x 4 = 64 px >= the minimum (about 33)


def test_edit_training_views_are_labelled_by_the_rules_and_hide_only_redrawn_rows_below_the_cut():
    rng = random.Random(3)
    bad = 0
    for _ in range(60):
        img, undrawn, prompt, impossible, objs = make_edit_view(rng)
        spec = parse_prompt(prompt)
        full, part = seen_in_edit(objs, undrawn)
        assert impossible == bool(edit_contradictions(full, part, spec))
        assert undrawn.any() and img.shape == (64, 64, 3)
        rows = np.flatnonzero(undrawn.any(1))
        assert rows[0] % 8 == 0 and rows[0] > 0                      # token-row aligned, not the whole span
        bad += impossible
    assert 10 < bad < 45                                              # both answers are taught


def test_undrawn_pixels_follow_the_token_rule():
    m = np.zeros((64, 64), bool)
    m[9:30, 17:20] = True                                             # rows 1-3, cols 2
    assert redrawn_rows(m) == (1, 4)
    u = undrawn_pixels(m, 2)
    assert u[16:32, 16:24].all() and u.sum() == 2 * 64


def test_the_benchmark_set_comes_from_the_package_sampler():
    a, b = make_edit_set(8, 31), make_edit_set(8, 31)
    assert [c["target_prompt"] for c in a] == [c["target_prompt"] for c in b]
    for c in a:                                                       # the mask covers the affected object
        x0, y0, x1, y1 = c["changed"].bbox
        assert c["mask"][int(y0) + 1:int(y1) - 1, int(x0) + 1:int(x1) - 1].all()
    case = next(x for x in (sample_edit("remove", random.Random(s)) for s in range(20)) if x is not None)
    assert len(case["edited"]) == len(case["objects"]) - 1


# -- the roles ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def edit_roles():
    from gridar_desktop.engine.tiny import tiny_backend
    torch.set_num_threads(1)
    b = tiny_backend(seed=4)
    b.meta = dict(b.meta, edit_verify=True, verify_threshold_edit={"value": 0.3}, verify_threshold={"value": 0.1})
    return JanusRoles(b)


def edit_views(n):
    rng = np.random.default_rng(0)
    undrawn = np.zeros((64, 64), bool)
    undrawn[24:40, 16:40] = True
    return [PartialView(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), 3, 8, undrawn) for _ in range(n)]


def test_edit_question_reads_the_whole_canvas_with_only_undrawn_pixels_grey(edit_roles):
    v = edit_views(1)[0]
    img = masked_view(v, edit=True)
    assert (img[v.undrawn] == HIDDEN_FILL).all() and (img[~v.undrawn] == v.image[~v.undrawn]).all()
    cost = CostRecord()
    p = edit_roles.verify(PROMPT, edit_views(3), cost)
    assert len(p) == 3 and all(0 <= x <= 1 for x in p)
    q = len(edit_roles._question("edit", PROMPT))
    assert cost.roles["verifier"].prefill_token_rows == 3 * (3 + 64 + q)       # every image feature is read
    plain = PartialView(v.image, 3, 8)                                          # a generation view: top rows only
    c2 = CostRecord()
    edit_roles.verify(PROMPT, [plain], c2)
    assert c2.roles["verifier"].prefill_token_rows == 3 + 24 + len(edit_roles._question("verify", PROMPT))


def test_weights_without_the_edit_question_verify_edits_as_generations():
    from gridar_desktop.engine.tiny import tiny_backend
    r = JanusRoles(tiny_backend(seed=4))
    assert not r.edit_verify and r.prune_threshold_edit is None
    cost = CostRecord()
    r.verify(PROMPT, edit_views(1), cost)
    assert cost.roles["verifier"].prefill_token_rows == 3 + 24 + len(r._question("verify", PROMPT))


def test_edits_are_pruned_at_the_edit_threshold_and_shown_with_their_undrawn_pixels(edit_roles):
    from PIL import Image

    from gridar_desktop.engine.edit import prepare_edit
    from gridar_desktop.engine.search import Search, SearchRequest, pruning_threshold
    assert pruning_threshold(edit_roles, edit=True) == 0.3 and pruning_threshold(edit_roles) == 0.1
    m = np.zeros((64, 64), np.uint8)
    m[8:56, 8:56] = 255
    src = render_scene([SceneObject("green", "square", 20, 20, 16)])
    e = prepare_edit(edit_roles.b, src, Image.fromarray(m))
    seen = []
    verify = edit_roles.verify

    def spy(prompt, views, cost):
        seen.append(views)
        return verify(prompt, views, cost)
    edit_roles.verify = spy
    try:
        res = Search(edit_roles.b, edit_roles, SearchRequest(prompt=PROMPT, n=4, seed=1, edit=e)).run()
    finally:
        del edit_roles.verify
    assert [n["threshold"] for n in res.tree] == [0.3] * len(res.tree)     # the edit threshold at every band
    v = seen[0][0]
    redraw = np.kron(np.array(e.redraw).reshape(8, 8), np.ones((8, 8), bool)).astype(bool)
    expect = redraw.copy()
    expect[:v.rows * 8] = False
    assert np.array_equal(v.undrawn, expect)


def test_edit_threshold_is_calibrated_on_held_out_edit_views_of_weights_that_know_the_question(tmp_path):
    import json

    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.search import pruning_threshold
    from gridar_desktop.engine.tiny import save_tiny_janus
    from gridar_desktop.training.calibrate import calibrate_edit, edit_calibration_views, write_threshold
    save_tiny_janus(tmp_path, seed=2)
    with pytest.raises(ValueError, match="not trained on the edit question"):
        calibrate_edit(tmp_path, views=4)
    meta = json.loads((tmp_path / "gridar.json").read_text())
    (tmp_path / "gridar.json").write_text(json.dumps(dict(meta, edit_verify=True)))
    a, b = edit_calibration_views(6, 1), edit_calibration_views(6, 1)
    assert all(np.array_equal(x.image, y.image) and x.feasible == y.feasible for x, y in zip(a, b))
    rec = calibrate_edit(tmp_path, views=24)
    assert 0.0 <= rec["value"] <= 1.0
    write_threshold(tmp_path, rec, "verify_threshold_edit")
    roles = JanusRoles(JanusBackend.load(tmp_path, device="cpu", dtype="float32"))
    assert pruning_threshold(roles, edit=True) == rec["value"]
