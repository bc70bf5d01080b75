"""The schema of the ``gridar`` JSON chunk, checked in one place.

Metadata read from a file is untrusted input: `validate` returns the metadata with every invalid field left out, and
a sentence per problem naming the field ("'cfg' is 'abc', not a number; ignored"), so the studio can restore what is
usable, say what was not, and still open the image. What `validate` lets through can be used as it is
(`app.studio.request_from_metadata` turns it into a request without further checks failing).
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Callable

from ..engine.defaults import REFILL, VERIFY_BY

# Our own metadata of a large search (tree, tokens, an edit's source and mask) is a few hundred KB.
MAX_META_CHARS = 4 * 1024 * 1024
# Longer than any prompt a model here reads (the demo's context is 256 tokens); the model's own limit is checked
# when it runs.
MAX_PROMPT_CHARS = 4000
MAX_TEXT_CHARS = 4096           # other free-text fields (model, device, notes)
MAX_DEPTH = 64                  # nesting of any field (our own go 4 deep)
MAX_N = 64
MAX_SEED = 2 ** 63 - 1
MAX_TOKENS = 65536              # an edit's token grid (256 x 256)
MAX_SCHEDULE = 64
# "ground truth" is what `gridar scene` records; it restores as the default method.
METHODS = ("gridar", "best-of-n", "single", "ground truth")
STRATEGIES = ("three-way", "replace")


class _Bad(Exception):
    """A field's value is unusable; the message completes "'field' is ..."."""


def _show(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _number(lo: float, hi: float, lo_open: bool = False) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Bad(f"{_show(v)}, not a number")
        x = float(v)
        if not math.isfinite(x) or x < lo or x > hi or (lo_open and x == lo):
            raise _Bad(f"{_show(v)}, not in {'(' if lo_open else '['}{lo:g}, {hi:g}]")
        return x
    return check


def _integer(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        x = int(v) if isinstance(v, float) and math.isfinite(v) and v.is_integer() else v
        if isinstance(x, bool) or not isinstance(x, int):
            raise _Bad(f"{_show(v)}, not a whole number")
        if not lo <= x <= hi:
            raise _Bad(f"{_show(v)}, not in {lo}..{hi}")
        return x
    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options or not isinstance(v, str):
            raise _Bad(f"{_show(v)}, not one of {', '.join(options)}")
        return v
    return check


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"{_show(v)}, not true or false")
    return v


def _text(limit: int) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str):
            raise _Bad(f"{_show(v)}, not text")
        if len(v) > limit:
            raise _Bad(f"{len(v):,} characters long, above the limit of {limit:,}")
        return v
    return check


def _contexts() -> tuple[str, ...]:
    from ..engine.edit import CONTEXTS
    return CONTEXTS


SETTINGS: dict[str, Callable[[Any], Any]] = {
    "method": _choice(METHODS),
    "n": _integer(1, MAX_N),
    "seed": _integer(0, MAX_SEED),
    "cfg": _number(0.0, 100.0),
    "temperature": _number(0.0, 10.0, lo_open=True),
    "top_k": _integer(0, 1_000_000),
    "top_p": _number(0.0, 1.0, lo_open=True),
    "layout_scale": _optional(_number(0.0, 100.0)),
    "strategy": _choice(STRATEGIES),
    "prune": _boolean,
    "reformulate": _boolean,
    "value_pick": _boolean,
    "threshold": _optional(_number(0.0, 1.0)),
    "verify_by": _choice(VERIFY_BY),
    "refill": _choice(REFILL),
    "context": lambda v: _choice(_contexts())(v),
    "model": _text(MAX_TEXT_CHARS),
    "device": _text(MAX_TEXT_CHARS),
}


def _depth(v: Any, limit: int) -> int:
    """Nesting depth of a parsed value, counted without recursion and stopping past `limit`."""
    deepest, stack = 0, [(v, 0)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, (dict, list)):
            d += 1
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend(((c, d) for c in (x.values() if isinstance(x, dict) else x)))
    return deepest


_PROMPT = re.compile(r'"prompt"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)"', re.S)


def _oversized(raw: str) -> list[str]:
    problems = [f"the metadata is {len(raw):,} characters long, above the limit of {MAX_META_CHARS:,}; ignored"]
    m = _PROMPT.search(raw)           # a linear scan: say so when it is the prompt that made it long
    if m and m.end(1) - m.start(1) > MAX_PROMPT_CHARS:
        problems.append(f"'prompt' is {m.end(1) - m.start(1):,} characters long, above the limit of "
                        f"{MAX_PROMPT_CHARS:,}; refused")
    return problems


def _schedule(v: Any, problems: list[str]) -> list[dict] | None:
    if not isinstance(v, list) or not v or len(v) > MAX_SCHEDULE:
        raise _Bad(f"{_show(v)}, not a list of 1 to {MAX_SCHEDULE} stages")
    out = []
    for i, st in enumerate(v):
        try:
            if not isinstance(st, dict):
                raise _Bad(f"{_show(st)}, not a stage")
            unknown = sorted(set(st) - {"until", "verify", "reformulate"})
            if unknown or "until" not in st:
                raise _Bad(f"{_show(st)}: a stage has 'until' and optionally 'verify', 'reformulate'")
            out.append({"until": _number(0.0, 1.0, lo_open=True)(st["until"]),
                        **{k: _boolean(st[k]) for k in ("verify", "reformulate") if k in st}})
        except _Bad as e:
            problems.append(f"'schedule[{i}]' is {e}; dropped")
    fr = [s["until"] for s in out]
    if not out or fr[-1] != 1.0 or any(b <= a for a, b in zip(fr, fr[1:])):
        raise _Bad("not a list of stages ending at 1.0 in increasing order")
    return out


def _b64_png(meta: dict, key: str, mode: str):
    from .png import ImageFileError, decode_png_bytes
    v = meta.get(key)
    if not isinstance(v, str):
        raise _Bad(f"'edit.{key}' is {'missing' if v is None else _show(v) + ', not a base64 PNG'}")
    try:
        data = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"'edit.{key}' is not valid base64") from None
    try:
        return decode_png_bytes(data, f"'edit.{key}'", mode)
    except ImageFileError as e:
        raise _Bad(str(e)) from None


def _encode_png(im) -> str:
    import io
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _edit(v: Any, problems: list[str]) -> dict:
    """An edit's record, with its source (RGB) and mask (the source's size) checked by decoding them within
    bounds. Any unusable required part makes the whole edit unusable (raises _Bad, a complete message)."""
    if not isinstance(v, dict):
        raise _Bad(f"'edit' is {_show(v)}, not an edit record; the edit is ignored")
    from PIL import Image
    out = dict(v)
    try:
        src = _b64_png(v, "source_png", "RGB")
        mask = _b64_png(v, "mask_png", "L")
        toks = v.get("source_tokens")
        if not isinstance(toks, list) or not 1 <= len(toks) <= MAX_TOKENS or any(
                isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < 2 ** 31 for t in toks):
            raise _Bad(f"'edit.source_tokens' is {_show(toks)}, not a list of token codes")
        side = math.isqrt(len(toks))
        if side * side != len(toks):
            raise _Bad(f"'edit.source_tokens' holds {len(toks)} codes, not a square grid")
        red = v.get("redraw")
        if not isinstance(red, str) or len(red) != len(toks) or set(red) - {"0", "1"} or "1" not in red:
            raise _Bad(f"'edit.redraw' is {_show(red)}, not {len(toks)} marks of 0 and 1 with at least one 1")
        cleared = v.get("cleared_tokens")
        if cleared is not None and (not isinstance(cleared, list) or len(cleared) != len(toks) or any(
                isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < 2 ** 31 for t in cleared)):
            problems.append(f"'edit.cleared_tokens' is {_show(cleared)}, not {len(toks)} token codes; ignored")
            out["cleared_tokens"] = None
    except _Bad as e:
        raise _Bad(f"{e}; the edit is ignored") from None
    if mask.size != src.size:
        problems.append(f"'edit.mask_png' is {mask.size[0]}x{mask.size[1]} but its source is "
                        f"{src.size[0]}x{src.size[1]}: resampled the mask to the source's size")
        mask = mask.resize(src.size, Image.Resampling.BILINEAR)
        out["mask_png"] = _encode_png(mask)
    if not _is_plain_rgb_png(v["source_png"]):
        out["source_png"] = _encode_png(src)      # greyscale, palette or alpha sources become plain RGB
    try:
        out["feather"] = _number(0.0, 64.0)(v.get("feather", 2.0))
    except _Bad as e:
        problems.append(f"'edit.feather' is {e}; used 2")
        out["feather"] = 2.0
    notes = v.get("notes", [])
    if not isinstance(notes, list) or any(not isinstance(n, str) or len(n) > MAX_TEXT_CHARS for n in notes):
        problems.append(f"'edit.notes' is {_show(notes)}, not a list of text; ignored")
        out["notes"] = []
    for key in ("instruction", "target_prompt", "image", "mask", "fit"):
        if key in v and v[key] is not None and not (isinstance(v[key], str) and len(v[key]) <= MAX_PROMPT_CHARS):
            problems.append(f"'edit.{key}' is {_show(v[key])}, not text; ignored")
            del out[key]
    return out


def _is_plain_rgb_png(b64: str) -> bool:
    """Whether a base64 PNG is 8-bit RGB already (IHDR bit depth 8, colour type 2), so it is kept byte for byte."""
    try:
        head = base64.b64decode(b64[:44], validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(head) >= 26 and head[24] == 8 and head[25] == 2


def _settings(s: dict, problems: list[str]) -> dict:
    out = {}
    for key, v in s.items():
        try:
            if key in SETTINGS:
                out[key] = SETTINGS[key](v)
            elif key == "schedule":
                out[key] = _schedule(v, problems)
            elif key == "edit":
                out[key] = _edit(v, problems)
            elif _depth(v, MAX_DEPTH) > MAX_DEPTH:
                raise _Bad(f"nested more than {MAX_DEPTH} levels deep")
            else:
                out[key] = v                    # not ours to judge (kept so a re-save keeps it)
        except _Bad as e:
            msg = str(e)
            problems.append(msg if msg.startswith("'edit") else f"'{key}' is {msg}; ignored")
    if out.get("method") == "gridar" and "n" in out and out["n"] % 4:
        problems.append(f"'n' is {out.pop('n')}, not a multiple of 4 as GridAR needs; ignored")
    return out


def validate(raw: str | bytes | Any) -> tuple[dict[str, Any], list[str]]:
    """The ``gridar`` metadata (its JSON text, or an already parsed value) -> (the cleaned metadata, problems).
    Never raises: an unusable field is left out and named in the problems; unusable metadata as a whole gives
    ({}, problems)."""
    problems: list[str] = []
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", "replace")
    if isinstance(raw, str):
        if len(raw) > MAX_META_CHARS:
            return {}, _oversized(raw)
        try:
            raw = json.loads(raw)
        except RecursionError:
            return {}, ["the metadata is nested too deeply to read; ignored"]
        except ValueError as e:
            return {}, [f"the metadata is not valid JSON ({str(e)[:80]}); ignored"]
    if not isinstance(raw, dict):
        return {}, [f"the metadata is {_show(raw)}, not a record of fields; ignored"]
    out: dict[str, Any] = {}
    for key, v in raw.items():
        try:
            if key == "prompt":
                out[key] = _text(MAX_PROMPT_CHARS)(v)
            elif key == "settings":
                if not isinstance(v, dict):
                    raise _Bad(f"{_show(v)}, not a record of settings")
                out[key] = _settings(v, problems)
            elif key == "chosen":
                out[key] = _integer(0, MAX_N - 1)(v)
            elif _depth(v, MAX_DEPTH) > MAX_DEPTH:
                raise _Bad(f"nested more than {MAX_DEPTH} levels deep")
            else:
                out[key] = v
        except _Bad as e:
            problems.append(f"'{key}' is {e}; {'refused' if key == 'prompt' and isinstance(v, str) else 'ignored'}")
    return out, problems


__all__ = ["validate", "MAX_META_CHARS", "MAX_PROMPT_CHARS", "MAX_DEPTH", "MAX_N", "MAX_SEED"]
