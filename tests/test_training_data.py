"""Training data of the demo model: labels come from the scene specification and agree with what they claim."""
import random

from gridar_desktop.shapes.grammar import parse_prompt
from gridar_desktop.shapes.judge import judge
from gridar_desktop.shapes.partial import Seen, contradictions, judge_partial
from gridar_desktop.shapes.scene import SceneObject, make_scene, render_scene
from gridar_desktop.training.demo_config import TEXT_VOCAB
from gridar_desktop.training.understand import (describe, layout_target, make_example, patch_labels, perturb,
                                                 satisfies)


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
        task, img, cut, q, a, _ = make_example(rng)
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
