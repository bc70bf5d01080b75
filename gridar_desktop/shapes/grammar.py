"""The prompt language of the shapes world.

Base grammar (what users and benchmarks type)::

    object    := COUNT COLOUR SHAPE           "a red circle", "three blue squares" (plural when COUNT > 1)
    single    := object                        "two red circles"
    pair      := object "and" object           "a red circle and two green triangles"
    relation  := object RELATION object       "a red circle above a blue square" (both objects single)
    triple    := object "," object "and" object
    RELATION  := "to the left of" | "to the right of" | "above" | "below"

Layout clause (appended after a comma; what a reformulator writes)::

    prompt ", with" placement ("," placement)* ["and" placement]
    placement := REF ("at" | "in" | "on") "the" REGION
    REF       := "the" COLOUR SHAPE[s]          (the whole group)
               | COUNT COLOUR SHAPE[s]          (part of a group: "two red circles at the top")
    REGION    := top | bottom | left | right | center | top left | top right | bottom left | bottom right

At most 6 objects in a scene, at most 3 groups, and groups differ in (colour, shape).
`parse_prompt` turns text into a `SceneSpec`; `format_prompt` turns a spec back into canonical text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
PLURALS: dict[str, str] = {s + "s": s for s in SHAPES}
COUNT_WORDS: dict[str, int] = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
NUMBER_NAMES: dict[int, str] = {2: "two", 3: "three", 4: "four"}
RELATIONS: dict[tuple[str, ...], str] = {
    ("to", "the", "left", "of"): "left of",
    ("to", "the", "right", "of"): "right of",
    ("above",): "above",
    ("below",): "below",
}
RELATION_PHRASES: dict[str, str] = {v: " ".join(k) for k, v in RELATIONS.items()}
REGIONS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right", "top", "bottom", "left",
                            "right", "center")
PLACE_WORDS = ("at", "in", "on")
MAX_OBJECTS = 6
MAX_GROUPS = 3

#: Every word the grammar can use, in a fixed order (the demo model's tokenizer is built from this list).
VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys(
    list(COUNT_WORDS) + list(COLOURS) + list(SHAPES) + list(PLURALS)
    + ["and", "to", "the", "left", "right", "of", "above", "below", "with", "at", "in", "on", "top", "bottom",
       "center", ","]
))


class PromptError(ValueError):
    """A prompt the shapes world cannot read. The message names the unknown words or the unreadable construct."""


@dataclass(frozen=True)
class Group:
    count: int
    colour: str
    shape: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.colour, self.shape)


@dataclass(frozen=True)
class Relation:
    """`groups[a]` stands in `relation` to `groups[b]` ("left of", "right of", "above", "below")."""
    a: int
    relation: str
    b: int


@dataclass(frozen=True)
class Placement:
    """A layout-clause item: `count` objects of (colour, shape) lie in `region`; count None means the whole group."""
    colour: str
    shape: str
    count: int | None
    region: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.colour, self.shape)


@dataclass(frozen=True)
class SceneSpec:
    groups: tuple[Group, ...]
    relation: Relation | None = None
    layout: tuple[Placement, ...] = field(default=())

    @property
    def form(self) -> str:
        """single, pair, relation or triple: the base-grammar form of the prompt."""
        if self.relation is not None:
            return "relation"
        return {1: "single", 2: "pair", 3: "triple"}[len(self.groups)]

    @property
    def n_objects(self) -> int:
        return sum(g.count for g in self.groups)

    def without_layout(self) -> "SceneSpec":
        return SceneSpec(self.groups, self.relation, ())

    def group_for(self, key: tuple[str, str]) -> Group | None:
        return next((g for g in self.groups if g.key == key), None)


# ----------------------------------------------------------------------------------------------------------------
# Parsing

_TOKEN = re.compile(r"[a-z]+|,|[^\sa-z,]+")


def tokenize(text: str) -> list[str]:
    """Lower-case words and commas; a final full stop is ignored."""
    return _TOKEN.findall(text.strip().lower().rstrip("."))


def unknown_words(text: str) -> list[str]:
    """Words of `text` outside the shapes vocabulary, in order of first appearance."""
    return list(dict.fromkeys(t for t in tokenize(text) if t not in VOCABULARY))


def parse_prompt(text: str) -> SceneSpec:
    """Parse a prompt of the shapes grammar. Raises `PromptError` naming what could not be read."""
    tokens = tokenize(text)
    if not tokens:
        raise PromptError("the prompt is empty; try e.g. 'two red circles'")
    unknown = unknown_words(text)
    if unknown:
        raise PromptError(
            "unknown word" + ("s" if len(unknown) > 1 else "") + ": "
            + ", ".join(repr(_shown([u])) for u in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
            + f". The shapes world knows colours ({', '.join(COLOURS)}), shapes ({', '.join(SHAPES)}), counts "
            "(a, one, two, three, four), relations (above, below, to the left of, to the right of) and layout "
            "clauses (', with the red circle at the top')")
    base, clause = _split_layout(tokens)
    groups, relation = _parse_base(base)
    _check_scene(groups)
    layout = _parse_layout(clause, groups) if clause is not None else ()
    return SceneSpec(tuple(groups), relation, layout)


def _shown(words: list[str], longest: int = 80) -> str:
    """Words as quoted in a message, cut to `longest` characters: a message is one readable line."""
    text = " ".join(words)
    return text if len(text) <= longest else text[:longest - 3] + "..."


def _split_layout(tokens: list[str]) -> tuple[list[str], list[str] | None]:
    for i in range(len(tokens) - 1):
        if tokens[i] == "," and tokens[i + 1] == "with":
            return tokens[:i], tokens[i + 2:]
    if "with" in tokens:
        raise PromptError("a layout clause must follow a comma: '..., with the red circle at the top'")
    return tokens, None


def _parse_base(tokens: list[str]) -> tuple[list[Group], Relation | None]:
    if not tokens:
        raise PromptError("nothing to draw before the layout clause")
    for i in range(len(tokens)):
        for phrase, rel in RELATIONS.items():
            if tuple(tokens[i:i + len(phrase)]) == phrase:
                left = _parse_object(tokens[:i])
                right = _parse_object(tokens[i + len(phrase):])
                if left.count != 1 or right.count != 1:
                    raise PromptError(f"a relation ('{RELATION_PHRASES[rel]}') joins two single objects, "
                                      "e.g. 'a red circle above a blue square'")
                return [left, right], Relation(0, rel, 1)
    parts: list[list[str]] = [[]]
    for t in tokens:
        if t in (",", "and"):
            parts.append([])
        else:
            parts[-1].append(t)
    if any(not p for p in parts):
        raise PromptError("an object phrase is missing around ',' or 'and'")
    if len(parts) > MAX_GROUPS:
        raise PromptError(f"at most {MAX_GROUPS} groups of objects per prompt, got {len(parts)}")
    return [_parse_object(p) for p in parts], None


def _parse_object(words: list[str]) -> Group:
    phrase = _shown(words)
    if len(words) != 3:
        raise PromptError(f"cannot read '{phrase}': an object is '<count> <colour> <shape>', e.g. 'two red circles'")
    count_w, colour, shape_w = words
    if count_w not in COUNT_WORDS:
        raise PromptError(f"cannot read '{phrase}': it must start with a count (a, one, two, three, four)")
    if colour not in COLOURS:
        raise PromptError(f"cannot read '{phrase}': '{colour}' is not a colour ({', '.join(COLOURS)})")
    count = COUNT_WORDS[count_w]
    if shape_w in SHAPES:
        if count > 1:
            raise PromptError(f"'{phrase}': a count above one needs the plural '{shape_w}s'")
        return Group(count, colour, shape_w)
    if shape_w in PLURALS:
        if count == 1:
            raise PromptError(f"'{phrase}': a single object takes the singular '{PLURALS[shape_w]}'")
        return Group(count, colour, PLURALS[shape_w])
    raise PromptError(f"cannot read '{phrase}': '{shape_w}' is not a shape ({', '.join(SHAPES)})")


def _check_scene(groups: list[Group]) -> None:
    total = sum(g.count for g in groups)
    if total > MAX_OBJECTS:
        raise PromptError(f"at most {MAX_OBJECTS} objects in a scene, the prompt asks for {total}")
    keys = [g.key for g in groups]
    if len(set(keys)) != len(keys):
        raise PromptError("each group must differ in colour or shape; merge repeated groups into one count")


def _parse_layout(tokens: list[str], groups: list[Group]) -> tuple[Placement, ...]:
    items: list[list[str]] = [[]]
    for t in tokens:
        if t in (",", "and"):
            items.append([])
        else:
            items[-1].append(t)
    if any(not it for it in items):
        raise PromptError("a placement is missing in the layout clause, around ',' or 'and'")
    placements = tuple(_parse_placement(it) for it in items)
    placed: dict[tuple[str, str], int] = {}
    whole: set[tuple[str, str]] = set()
    for p in placements:
        g = next((g for g in groups if g.key == p.key), None)
        name = f"{p.colour} {p.shape}"
        if g is None:
            raise PromptError(f"the layout clause places a {name}, which the prompt does not mention")
        if p.count is None:
            if p.key in whole or p.key in placed:
                raise PromptError(f"the layout clause places the {name}s twice")
            whole.add(p.key)
        else:
            if p.key in whole:
                raise PromptError(f"the layout clause places the {name}s twice")
            placed[p.key] = placed.get(p.key, 0) + p.count
            if placed[p.key] > g.count:
                raise PromptError(f"the layout clause places {placed[p.key]} {name}s but the prompt asks for "
                                  f"{g.count}")
    return placements


def _parse_placement(words: list[str]) -> Placement:
    phrase = _shown(words)
    where = next((i for i, w in enumerate(words) if w in PLACE_WORDS), None)
    if where is None or where + 1 >= len(words) or words[where + 1] != "the":
        raise PromptError(f"cannot read layout item '{phrase}': expected '<object> at the <region>'")
    region = " ".join(words[where + 2:])
    if region not in REGIONS:
        raise PromptError(f"cannot read layout item '{phrase}': '{_shown(words[where + 2:])}' is not a region "
                          f"({', '.join(REGIONS)})")
    ref = words[:where]
    if len(ref) != 3:
        raise PromptError(f"cannot read layout item '{phrase}': expected 'the red circle' or 'two red circles'")
    if ref[0] == "the":
        colour, shape_w = ref[1], ref[2]
        count = None
    else:
        g = _parse_object(ref)
        return Placement(g.colour, g.shape, g.count, region)
    if colour not in COLOURS:
        raise PromptError(f"cannot read layout item '{phrase}': '{colour}' is not a colour")
    shape = PLURALS.get(shape_w, shape_w)
    if shape not in SHAPES:
        raise PromptError(f"cannot read layout item '{phrase}': '{shape_w}' is not a shape")
    return Placement(colour, shape, count, region)


# ----------------------------------------------------------------------------------------------------------------
# Formatting

def object_phrase(count: int, colour: str, shape: str) -> str:
    if count == 1:
        article = "an" if colour[0] in "aeiou" else "a"
        return f"{article} {colour} {shape}"
    return f"{NUMBER_NAMES[count]} {colour} {shape}s"


def placement_phrase(p: Placement) -> str:
    if p.count is None:
        g_ref = f"the {p.colour} {p.shape}"
    else:
        g_ref = object_phrase(p.count, p.colour, p.shape)
    return f"{g_ref} {'in' if p.region == 'center' else 'at'} the {p.region}"


def format_base(spec: SceneSpec) -> str:
    phrases = [object_phrase(g.count, g.colour, g.shape) for g in spec.groups]
    if spec.relation is not None:
        r = spec.relation
        return f"{phrases[r.a]} {RELATION_PHRASES[r.relation]} {phrases[r.b]}"
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def format_layout_clause(layout: tuple[Placement, ...] | list[Placement]) -> str:
    """', with A at the top and B at the bottom' (empty string for no placements)."""
    if not layout:
        return ""
    items = [placement_phrase(p) for p in layout]
    body = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return ", with " + body


def format_prompt(spec: SceneSpec) -> str:
    """Canonical text of a spec; `parse_prompt(format_prompt(s)) == s` for every valid spec."""
    return format_base(spec) + format_layout_clause(spec.layout)
