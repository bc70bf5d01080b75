"""Training data of the demo model: labels come from the scene specification and agree with what they claim."""
import random
from collections import Counter

import numpy as np
import torch

from gridar_desktop.shapes.grammar import parse_prompt
from gridar_desktop.shapes.judge import judge
from gridar_desktop.shapes.partial import Seen, contradictions, judge_partial, seen_in_scene, visible_area
from gridar_desktop.shapes.scene import SceneObject, make_scene, render_scene
from gridar_desktop.training.demo_config import TEXT_VOCAB
from gridar_desktop.training.gen import WORD_ID, make_batch, three_group_rows
from gridar_desktop.training.understand import (FINE_TUNE_MIX, SCORE_ERRORS, describe, imitate_generation,
                                                 layout_target, make_example, patch_labels, perturb, satisfies)


def test_score_labels_agree_with_the_judge_on_renders():
    rng = random.Random(0)
    agree = 0
    for i in range(150):
        prompt = ["two red circles", "a blue square above a green triangle", "a yellow circle and two red squares"][i % 3]
        _, objs = make_scene(prompt, i)
        if i % 2:
            objs = perturb(objs, rng)
        agree += satisfies(objs, parse_prompt(prompt)) == bool(judge(render_scene(objs), prompt).strict)
    assert agree >= 147            # the judge measures the same thing the labels state


def test_layout_targets_parse_and_keep_the_objects():
    rng = random.Random(1)
    for i in range(100):
        prompt = "a red circle, two blue squares and a yellow triangle"
        spec = parse_prompt(prompt)
        _, objs = make_scene(prompt, i)
        clause = layout_target(objs, spec, rng.choice([16, 32]))
        if clause:
            full = parse_prompt(prompt + clause)
            assert full.without_layout() == spec and full.layout


def test_visible_contradictions():
    spec = parse_prompt("a red circle above a blue square")
    blue_top = Seen("blue", "square", (30, 8), 2, 14)
    assert contradictions([blue_top], spec, cut=16, size=64)          # the red circle can no longer be above
    assert not contradictions([Seen("red", "circle", (30, 8), 2, 14)], spec, cut=16, size=64)
    green = Seen("green", "circle", (10, 8), 2, 14)
    assert contradictions([green], spec, cut=16, size=64)             # not in the prompt
    partly = Seen("green", "circle", (10, 14), 8, 20)
    assert contradictions([partly], spec, cut=16, size=64)            # colour already wrong
    assert not contradictions([Seen("red", "square", (10, 14), 8, 20)], spec, cut=16, size=64)  # shape unknown yet


def test_judge_partial_on_renders():
    objs = [SceneObject("green", "triangle", 20, 10, 12), SceneObject("red", "circle", 40, 50, 16)]
    img = render_scene(objs)
    assert judge_partial(img, "a red circle", 2, 8)                  # a green triangle is visible in the top
    assert not judge_partial(img, "a red circle and a green triangle", 2, 8)


def test_examples_are_balanced_and_in_vocabulary():
    rng = random.Random(2)
    tasks = {}
    for _ in range(200):
        task, img, cut, q, a, _, _ = make_example(rng)
        assert img.shape == (64, 64, 3) and 0 < cut <= 64
        assert all(0 <= t < len(TEXT_VOCAB) for t in q + a)
        tasks.setdefault(task, []).append(TEXT_VOCAB[a[0]])
    assert set(tasks) == {"describe", "score", "verify", "layout"}
    v = tasks["verify"]
    assert 0.2 < v.count("impossible") / len(v) < 0.6


def test_describe_lists_what_was_drawn_in_a_fixed_order():
    objs = [SceneObject("red", "circle", 10, 10, 10), SceneObject("blue", "square", 40, 40, 10),
            SceneObject("red", "circle", 50, 12, 10)]
    assert describe(objs) == "two red circles and a blue square"
    assert describe(objs[::-1]) == describe(objs)
    assert parse_prompt(describe(objs))          # a caption is a prompt the model can read back


def test_patch_labels_mark_centres_and_covered_patches_of_the_visible_rows_only():
    red, blue = SceneObject("red", "circle", 12, 12, 14), SceneObject("blue", "square", 44, 52, 12)
    centre, cover = patch_labels([red, blue], cut=64)
    assert centre.tolist().count(0) == 62                      # one centre mark per object
    assert centre[1 * 8 + 1] > 0 and centre[6 * 8 + 5] > 0 and centre[1 * 8 + 1] != centre[6 * 8 + 5]
    assert cover[1 * 8 + 1] == centre[1 * 8 + 1] and cover[0] == 0      # the corner patch is background
    top_centre, top_cover = patch_labels([red, blue], cut=32)
    assert top_centre.tolist().count(0) == 63 and (top_cover[32:] == 0).all()   # the hidden rows hold nothing


def test_a_sliver_above_the_cut_is_not_seen_and_the_labels_agree_with_the_judge():
    # a purple triangle whose apex pokes 4 px above the cut: too little to see, for the labels and the judge alike
    apex = SceneObject("purple", "triangle", 40, 26, 20)             # top at 16, cut at 20
    red = SceneObject("red", "circle", 12, 8, 12)
    assert visible_area(apex, 20) < 33 <= visible_area(apex, 30)
    assert [s.colour for s in seen_in_scene([red, apex], cut=20, size=64)] == ["red"]
    spec = parse_prompt("a red circle")
    assert not contradictions(seen_in_scene([red, apex], 20, 64), spec, 20, 64)
    assert not judge_partial(render_scene([red, apex]), spec, 5, 16)  # 5 of 16 rows: the cut at 20 px
    # the same triangle with 14 px above the cut shows: its colour is already wrong
    assert contradictions(seen_in_scene([red, apex], 30, 64), spec, 30, 64)
    assert judge_partial(render_scene([red, apex]), spec, 15, 32)      # the cut at 30 px


def test_visible_area_matches_the_render():
    for o in (SceneObject("blue", "circle", 30, 20, 16), SceneObject("red", "square", 20, 30, 10),
              SceneObject("green", "triangle", 32, 32, 18)):
        a, bg = np.asarray(render_scene([o]), np.float32), np.asarray(render_scene([]), np.float32)
        diff = np.abs(a - bg).sum(-1)                                                  # (64, 64)
        coverage = diff / diff.max()                                                   # anti-aliased edges < 1
        for cut in (16, 24, 32, 40):
            assert abs(visible_area(o, cut) - coverage[:cut].sum()) <= 3 + 0.05 * coverage[:cut].sum()


def test_generator_like_score_errors_are_mostly_counts_off_by_one():
    rng = random.Random(3)
    _, objs = make_scene("two red circles and a blue square", 4)
    before = Counter((o.colour, o.shape) for o in objs)
    off_by_one = 0
    for _ in range(200):
        after = Counter((o.colour, o.shape) for o in perturb(objs, rng, SCORE_ERRORS))
        off_by_one += set(after) <= set(before) and sum(abs(after[k] - before[k]) for k in before) == 1
    assert off_by_one >= 100                                  # 6 of 10 kinds change one count by one


def test_replay_batches_favour_the_rows_asked_for():
    rng = random.Random(4)
    data = {"base": [[1, WORD_ID[","], 2]] * 10 + [[1, 2]] * 90, "layout": [[1, 2]] * 100,
            "tokens_t": torch.arange(100).unsqueeze(1).repeat(1, 64)}
    favour = three_group_rows(data)
    assert favour == list(range(10))
    _, _, tokens = make_batch(data, rng, 400, favour, 0.5)
    share = (tokens[:, 0] < 10).float().mean().item()
    assert 0.5 < share < 0.6                                  # half favoured, plus a tenth of the other half


def test_the_fine_tuning_mix_cuts_partial_views_at_any_row():
    rng = random.Random(5)
    cuts = {make_example(rng, FINE_TUNE_MIX)[2] for _ in range(300)}
    assert cuts <= {8 * r for r in range(1, 9)} and len(cuts - {16, 32, 64}) >= 4
    rng = random.Random(5)
    assert {make_example(rng)[2] for _ in range(300)} == {16, 32, 64}     # the first mix: quarter and half only


def test_generation_artifacts_add_no_object():
    # blur, specks and noise imitate a small generator; the judge (which defines what an object is) reads the
    # scene exactly as before, so the labels of the scene stay true
    rng = random.Random(6)
    same = 0
    for i in range(60):
        prompt = ["two red circles", "a blue square above a green triangle", "a yellow circle and two red squares",
                  "three purple triangles"][i % 4]
        img, _ = make_scene(prompt, i)
        same += judge(imitate_generation(np.array(img), rng), prompt).strict
    assert same >= 57


def test_calibration_views_are_reproducible_and_labelled_from_the_specification():
    from gridar_desktop.training.calibrate import VERIFY_ROWS, calibration_views
    a, b = calibration_views(40, seed=0), calibration_views(40, seed=0)
    assert all(x.prompt == y.prompt and np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert {v.rows for v in a} <= set(VERIFY_ROWS)
    assert 0 < sum(v.feasible for v in a) < len(a)          # both labels occur
    assert [v.prompt for v in calibration_views(40, seed=1)] != [v.prompt for v in a]
    for v in a:
        parse_prompt(v.prompt)                              # every prompt is in the grammar


def test_threshold_rejects_the_stated_share_of_feasible_views():
    from gridar_desktop.training.calibrate import threshold_for
    p = np.linspace(0.0, 1.0, 201)[1:]                       # 200 distinct values
    t = threshold_for(p, 0.05)
    assert (p < t).sum() == 10
    assert threshold_for(p, 0.0) == p.min()


def test_objects_across_the_cut_start_above_it_and_are_labelled_by_the_rules():
    import random

    from gridar_desktop.shapes.grammar import parse_prompt
    from gridar_desktop.shapes.scene import sample_scene
    from gridar_desktop.training.understand import across_cut
    spec = parse_prompt("a red circle and a blue square")
    rng = random.Random(2)
    wrong_seen = 0
    for _ in range(40):
        objs = sample_scene(spec, rng)
        new = across_cut(objs, spec, 32, True, rng)
        if len(new) == len(objs):
            continue                                    # no free place: unchanged
        o = new[-1]
        assert o.bbox[1] < 32 and (o.colour, o.shape) not in {g.key for g in spec.groups}
        wrong_seen += bool(contradictions(seen_in_scene(new, 32, 64), spec, 32, 64))
        ok = across_cut(objs, spec, 32, False, rng)
        assert (ok[-1].colour, ok[-1].shape) in {g.key for g in spec.groups}
        # a kind the prompt has: only a count can be contradicted (when it ends above the cut)
        assert all("visible, the prompt asks" in c for c in contradictions(seen_in_scene(ok, 32, 64), spec, 32, 64))
    assert wrong_seen > 5


def test_edit_mix_examples_ask_the_edit_question_and_hide_their_undrawn_patches():
    import random

    from gridar_desktop.training.understand import EDIT_MIX, make_example, patch_labels
    rng = random.Random(0)
    ex = [make_example(rng, EDIT_MIX) for _ in range(80)]
    edits = [e for e in ex if e[0] == "edit"]
    assert 8 < len(edits) < 40 and all(e[6] is not None and e[2] == 64 for e in edits)
    assert all(e[6] is None for e in ex if e[0] != "edit")
    e = edits[0]
    centre, cover = patch_labels(e[5], e[2], e[6])
    hidden = e[6].reshape(8, 8, 8, 8)[:, 4, :, 4].reshape(-1)          # each patch's centre pixel
    assert (cover[torch.from_numpy(hidden)] == 0).all()
