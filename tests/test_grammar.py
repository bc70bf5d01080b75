import random

import pytest

from gridar_desktop.shapes.grammar import (Group, Placement, PromptError, Relation, SceneSpec, format_prompt,
                                           parse_prompt, unknown_words)
from gridar_desktop.shapes.promptsets import CATEGORIES, category_of, make_prompt_set, sample_spec


def test_parses_every_form():
    assert parse_prompt("two red circles") == SceneSpec((Group(2, "red", "circle"),))
    s = parse_prompt("a red circle and two green triangles")
    assert s.groups == (Group(1, "red", "circle"), Group(2, "green", "triangle")) and s.form == "pair"
    s = parse_prompt("a red circle to the left of a blue square")
    assert s.relation == Relation(0, "left of", 1) and s.form == "relation"
    s = parse_prompt("A red circle, two blue squares and a yellow triangle.")
    assert s.form == "triple" and s.n_objects == 4
    s = parse_prompt("three red circles, with two red circles at the top and one red circle at the bottom")
    assert s.layout == (Placement("red", "circle", 2, "top"), Placement("red", "circle", 1, "bottom"))
    s = parse_prompt("an orange square below a green circle, with the green circle in the top left")
    assert s.layout == (Placement("green", "circle", None, "top left"),)


def test_format_round_trips_every_category():
    rng = random.Random(0)
    for _ in range(300):
        spec = sample_spec(rng.choice(CATEGORIES), rng)
        assert parse_prompt(format_prompt(spec)) == spec


@pytest.mark.parametrize("prompt, fragment", [
    ("two red dogs", "unknown word: 'dogs'"),
    ("a big shiny circle", "'big', 'shiny'"),
    ("", "empty"),
    ("two red circle", "plural"),
    ("a red circles", "singular"),
    ("red circle", "'<count> <colour> <shape>'"),
    ("two circles red", "'circles' is not a colour"),
    ("red two circles", "must start with a count"),
    ("four red circles and three blue squares", "at most 6 objects"),
    ("a red circle and a red circle", "differ in colour or shape"),
    ("a red circle, a blue square, a green circle and a yellow square", "at most 3 groups"),
    ("two red circles above a blue square", "two single objects"),
    ("a red circle and", "missing"),
    ("a red circle with the red circle at the top", "follow a comma"),
    ("a red circle, with the blue square at the top", "does not mention"),
    ("two red circles, with three red circles at the top", "places 3"),
    ("a red circle, with the red circle at the left top", "not a region"),
    ("a red circle, with the red circle the top", "expected '<object> at the <region>'"),
])
def test_errors_name_the_problem(prompt, fragment):
    with pytest.raises(PromptError) as e:
        parse_prompt(prompt)
    assert fragment in str(e.value)


def test_unknown_words_listed_once_in_order():
    assert unknown_words("a Cat and a cat and a dog") == ["cat", "dog"]


def test_prompt_sets_are_seeded_balanced_and_categorised():
    a, b = make_prompt_set(100, 3), make_prompt_set(100, 3)
    assert a == b and len({r["prompt"] for r in a}) == 100      # 20 per category: all distinct
    assert make_prompt_set(100, 4) != a
    for r in a:
        assert category_of(parse_prompt(r["prompt"])) == r["category"]
    assert {r["category"] for r in a} == set(CATEGORIES)
