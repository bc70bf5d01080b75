"""What a prompt means to a model: the prompt language a model folder declares (gridar.json "prompt_language") and
the one check every entry point (CLI, studio, bench) runs on a prompt before any work starts.

A language name maps to a checker. "shapes" is the shapes grammar (`shapes.grammar.parse_prompt`, whose message is
the refusal's); a model that declares no language (Janus-Pro) takes any non-empty text. Nothing here needs weights,
so a bad prompt is refused before a model loads.
"""
from __future__ import annotations

from typing import Callable

from .errors import PromptNotUnderstood

SHAPES = "shapes"
# No model's context holds a prompt this long (Janus-Pro reads 4,096 tokens); refusing it by its length first keeps
# a pasted file from being tokenized or parsed for minutes.
MAX_PROMPT_CHARS = 100_000


def _check_shapes(text: str) -> str:
    from ..shapes.grammar import PromptError, parse_prompt, tokenize
    try:
        parse_prompt(text)
    except PromptError as e:
        raise PromptNotUnderstood(str(e)) from None
    # The grammar reads lower case without a final full stop; hand the model the same words it parsed, so the
    # tokenizer path agrees with the grammar ("A Red Circle." -> "a red circle").
    return " ".join(tokenize(text)).replace(" ,", ",")


_CHECKERS: dict[str, Callable[[str], str]] = {SHAPES: _check_shapes}

#: Language names a gridar.json may declare.
LANGUAGES: tuple[str, ...] = tuple(_CHECKERS)


def has_undecodable_bytes(text: str) -> bool:
    """True when `text` carries bytes that were not UTF-8 (Python keeps them as lone surrogates, e.g. in argv)."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def check_prompt(language: str | None, text: str) -> str:
    """The prompt as the model will read it (normalised), or `PromptNotUnderstood` with the reason: empty text,
    bytes that are not text, a text far longer than any model reads, or (for a declared language) the language's
    own message. The model's own context length is checked by `JanusBackend.check_prompt`."""
    if not isinstance(text, str):
        raise PromptNotUnderstood(f"the prompt must be text, got {type(text).__name__}")
    if has_undecodable_bytes(text):
        raise PromptNotUnderstood("the prompt holds bytes that are not UTF-8 text; type it again or save the file "
                                  "as UTF-8")
    if not text.strip():
        raise PromptNotUnderstood("the prompt is empty; type what the image should show")
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptNotUnderstood(f"the prompt is {len(text):,} characters long; at most {MAX_PROMPT_CHARS:,} are "
                                  "read: shorten it")
    if language is None:
        return text.strip()
    checker = _CHECKERS.get(language)
    if checker is None:
        raise PromptNotUnderstood(f"unknown prompt language '{language}'; known: {', '.join(LANGUAGES)}")
    return checker(text)


def describe_language(language: str | None) -> str:
    """A short plain-text cheat-sheet of what a model understands; "" when the model declares no language."""
    if language != SHAPES:
        return ""
    from ..shapes import grammar as g
    counts = ", ".join(g.COUNT_WORDS)
    relations = ", ".join(g.RELATION_PHRASES[r] for r in g.RELATIONS.values())
    examples = [
        g.format_prompt(g.parse_prompt(p)) for p in (
            f"a {g.COLOURS[0]} {g.SHAPES[0]}",
            f"three {g.COLOURS[2]} {g.SHAPES[1]}s",
            f"a {g.COLOURS[0]} {g.SHAPES[0]} and two {g.COLOURS[1]} {g.SHAPES[2]}s",
            f"a {g.COLOURS[3]} {g.SHAPES[2]} {g.RELATION_PHRASES['above']} a {g.COLOURS[4]} {g.SHAPES[1]}",
            f"a {g.COLOURS[0]} {g.SHAPES[0]}, a {g.COLOURS[2]} {g.SHAPES[1]} and a {g.COLOURS[5]} {g.SHAPES[2]}",
            f"a {g.COLOURS[0]} {g.SHAPES[0]} and a {g.COLOURS[2]} {g.SHAPES[1]}, with the {g.COLOURS[0]} "
            f"{g.SHAPES[0]} at the top left and the {g.COLOURS[2]} {g.SHAPES[1]} at the bottom right",
        )]
    return "\n".join([
        "This model draws the shapes world. A prompt names objects as <count> <colour> <shape>.",
        "",
        f"Colours: {', '.join(g.COLOURS)}",
        f"Shapes: {', '.join(g.SHAPES)} (plural with 's' for more than one: {', '.join(g.PLURALS)})",
        f"Counts: {counts}",
        f"Forms: one group; two groups joined by 'and'; three groups ('A, B and C'); or two single objects joined "
        f"by a relation. At most {g.MAX_OBJECTS} objects and {g.MAX_GROUPS} groups, each group a different colour "
        "or shape.",
        f"Relations: {relations}",
        f"Layout (after a comma): ', with the <colour> <shape> at the <region>'; regions: {', '.join(g.REGIONS)}",
        "",
        "Examples:",
        *(f"  {e}" for e in examples),
    ])


def language_vocabulary(language: str | None) -> list[str]:
    """The words a model's language uses, for completion as the artist types ([] for any text)."""
    if language != SHAPES:
        return []
    from ..shapes.grammar import VOCABULARY
    return [w for w in VOCABULARY if w.isalpha()]
