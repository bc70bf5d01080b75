"""Metadata from a file is untrusted input: each crafted ``gridar`` chunk is (a) named field by field in the problems
`io.metadata.validate` returns, (b) turned into a request without an exception, and (c) opened in the studio
(offscreen) with the image shown and the problem in the banner. A seeded fuzz test does the same for random
values, types, sizes and nesting."""
import base64
import io
import json
import math
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gridar_desktop.engine.edit import EditTarget, edit_metadata
from gridar_desktop.io import png as png_io
from gridar_desktop.io.metadata import MAX_META_CHARS, SETTINGS, validate
from gridar_desktop.io.png import read_metadata, read_metadata_checked

COLOUR = (10, 200, 30)


# -- building files --------------------------------------------------------------------------------------------

def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with(*chunks: bytes) -> bytes:
    raw = b"".join(b"\0" + bytes(COLOUR) * 8 for _ in range(8))
    return (png_io.PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)) + b"".join(chunks)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def text(obj) -> bytes:
    """A tEXt ``gridar`` chunk holding `obj` as JSON (or a string as it is)."""
    s = obj if isinstance(obj, str) else json.dumps(obj)
    return chunk(b"tEXt", b"gridar\0" + s.encode("latin-1"))


def b64png(im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def huge_png(w: int, h: int) -> bytes:
    comp, row = zlib.compressobj(9), b"\0" * (1 + (w + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    return (png_io.PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def an_edit() -> dict:
    src = np.zeros((64, 64, 3), np.uint8)
    src[10:30, 10:30] = (200, 0, 0)
    mask = np.zeros((64, 64), bool)
    mask[32:, 32:] = True
    redraw = tuple(bool(r >= 4 and c >= 4) for r in range(8) for c in range(8))
    return edit_metadata(EditTarget(src, mask, tuple(range(64)), redraw, 2.0, ("a note",), tuple(range(64))))


def with_settings(**kw) -> bytes:
    return text({"prompt": "a red circle", "settings": {"method": "gridar", "n": 4, "seed": 3, **kw}})


def with_edit(**changes) -> bytes:
    e = {**an_edit(), **changes}
    for k in [k for k, v in changes.items() if v is _DROP]:
        del e[k]
    return with_settings(edit=e)


_DROP = object()


def sparse_text_file(path, length: int) -> None:
    """A PNG whose ``gridar`` tEXt chunk is `length` bytes, written as a sparse file (no disk space for the
    zeros) with a correct CRC."""
    head = b"gridar\0"
    crc = zlib.crc32(b"tEXt" + head)
    zeros, left = bytes(1 << 20), length - len(head)
    while left:
        n = min(left, len(zeros))
        crc = zlib.crc32(zeros[:n], crc)
        left -= n
    whole = png_with()
    cut = 8 + 25                                       # after the signature and IHDR
    with open(path, "wb") as f:
        f.write(whole[:cut] + struct.pack(">I", length) + b"tEXt" + head)
        f.seek(length - len(head), 1)
        f.write(struct.pack(">I", crc) + whole[cut:])


# (id, the chunk(s) or a builder of the file, a piece of text the problems must hold (None: no problem))
CASES = [
    ("nested 100000 deep", text('{"settings": ' + "[" * 100000 + "]" * 100000 + "}"), "nested"),
    ("settings as a list", text({"settings": [1, 2]}), "'settings'"),
    ("top level a list", text([1, 2, 3]), "not a record"),
    ("top level a string", text('"hello"'), "not a record"),
    ("cfg abc", with_settings(cfg="abc"), "'cfg' is 'abc', not a number"),
    ("n 1e30", with_settings(n=1e30), "'n'"),
    ("seed 2**70", with_settings(seed=2 ** 70), "'seed'"),
    ("threshold high", with_settings(threshold="high"), "'threshold'"),
    ("prompt 12345", text({"prompt": 12345, "settings": {}}), "'prompt'"),
    ("schedule evil", with_settings(schedule=[{"evil": 1}]), "'schedule"),
    ("temperature 0", with_settings(temperature=0), "'temperature'"),
    ("zTXt 1.5 MB accepted", chunk(b"zTXt", b"gridar\0\0" + zlib.compress(json.dumps(
        {"prompt": "a red circle", "pad": " " * 1_500_000}).encode())), None),
    ("zTXt over the limit", chunk(b"zTXt", b"gridar\0\0" + zlib.compress(json.dumps(
        {"prompt": "a red circle", "pad": " " * (MAX_META_CHARS + 1)}).encode())), "limit"),
    ("text chunk over 64 MB", lambda p: sparse_text_file(p, 65 * 1024 * 1024 + 1), "limit"),
    ("edit source bad base64", with_edit(source_png="not base64!"), "'edit.source_png' is not valid base64"),
    ("edit source not a PNG", with_edit(source_png=base64.b64encode(b"GIF89a" + bytes(100)).decode()),
     "'edit.source_png'"),
    ("edit source a bomb", with_edit(source_png=base64.b64encode(huge_png(20000, 20000)).decode()),
     "'edit.source_png'"),
    ("edit without mask_png", with_edit(mask_png=_DROP), "'edit.mask_png' is missing"),
    ("edit as a list", with_settings(edit=[1, 2]), "'edit'"),
    ("greyscale source_png", with_edit(source_png=b64png(Image.new("L", (64, 64), 90))), None),
    ("mask of another size", with_edit(mask_png=b64png(Image.new("L", (32, 32), 255))), "resampled"),
    ("prompt of 50 MB", text({"prompt": "x" * (50 * 1024 * 1024)}), "'prompt' is 52,428,800 characters"),
    ("cfg NaN", text('{"settings": {"cfg": NaN}}'), "'cfg'"),
    ("cfg -5", with_settings(cfg=-5), "'cfg'"),
    ("top_p 0", with_settings(top_p=0), "'top_p'"),
    ("method unknown", with_settings(method="evil"), "'method'"),
    ("n 5 for GridAR", with_settings(n=5), "'n'"),
    ("not JSON", text('{"prompt": '), "not valid JSON"),
    ("chosen 999", text({"settings": {}, "chosen": 999}), "'chosen'"),
    ("edit redraws nothing", with_edit(redraw="0" * 64), "'edit.redraw'"),
    ("settings field nested 100 deep", with_settings(x=json.loads("[" * 100 + "]" * 100)), "'x'"),
    ("iTXt compressed", chunk(b"iTXt", b"gridar\0\1\0\0\0" + zlib.compress(json.dumps(
        {"settings": {"cfg": "abc"}}).encode())), "'cfg'"),
    ("seed beyond 32 bits", with_settings(seed=2 ** 40), None),     # the CLI writes seeds up to 2**63-1
]


def write_case(path, content) -> None:
    if callable(content):
        content(path)
    else:
        path.write_bytes(png_with(content))


@pytest.fixture(scope="module")
def bare_window(qapp):
    """A studio window without a model: opening a file needs none, and one window serves the whole table."""
    from gridar_desktop.app.studio import Studio
    from gridar_desktop.app.window import MainWindow
    w = MainWindow(Studio(device="cpu"))
    w.confirm_close = False
    w.show()
    yield w
    w.close()


def open_in_studio(window, path, expected: str | None, use_settings: bool = True) -> None:
    assert window.open_image(path) is True
    assert window.canvas.image is not None                     # the image shows whatever its metadata holds
    banner = window.banner.label.text()
    if expected is not None:
        assert expected in banner, banner
    else:
        assert "problem" not in banner, banner
    if use_settings and hasattr(window, "use_settings"):
        window.use_settings()                                   # restoring what was let through raises nothing


@pytest.mark.parametrize("name,content,expected", CASES,
                         ids=[c.values[0] if hasattr(c, "values") else c[0] for c in CASES])
def test_crafted_metadata(name, content, expected, tmp_path, bare_window):
    from gridar_desktop.app.studio import request_from_metadata
    p = tmp_path / "crafted.png"
    write_case(p, content)
    meta, problems = read_metadata_checked(p)
    assert isinstance(meta, dict) and read_metadata(p) == meta
    if expected is None:
        assert problems == []
    else:
        assert any(expected in q for q in problems), problems
    req = request_from_metadata(meta)
    if name == "greyscale source_png":
        assert req.edit is not None and req.edit.source.shape == (64, 64, 3)
        assert (req.edit.source == 90).all()
    if name == "mask of another size":
        assert req.edit is not None and req.edit.mask.shape == (64, 64) and req.edit.mask.all()
    if name.startswith("edit") or name == "mask of another size":
        assert (req.edit is None) == name.startswith("edit")     # an unusable edit is dropped, a fixable one kept
    open_in_studio(bare_window, p, expected)
    if name == "seed beyond 32 bits":
        assert bare_window.controls.seed.value() == 2 ** 40      # shown whole, as the file records it


def test_the_good_fields_survive_next_to_a_bad_one():
    meta, problems = validate(json.dumps({"prompt": "a red circle", "tree": {"x": 1},
                                          "settings": {"cfg": "abc", "n": 8, "seed": 5, "threshold": None}}))
    assert meta == {"prompt": "a red circle", "tree": {"x": 1}, "settings": {"n": 8, "seed": 5, "threshold": None}}
    assert problems == ["'cfg' is 'abc', not a number; ignored"]


def test_our_own_metadata_passes_unchanged():
    edit = an_edit()
    settings = {"method": "gridar", "n": 8, "seed": 2 ** 63 - 1, "cfg": 3.0, "temperature": 1.0, "top_k": 0,
                "top_p": 1.0, "layout_scale": None, "strategy": "three-way", "prune": True, "reformulate": True,
                "threshold": 0.3, "value_pick": True, "verify_by": "view", "refill": "copy", "context": "mixed",
                "schedule": [{"until": 0.25, "verify": True, "reformulate": True},
                             {"until": 1.0, "verify": False, "reformulate": False}],
                "model": "demo", "device": "cpu", "edit": edit}
    meta = {"prompt": "a red circle", "settings": settings, "tree": [{"a": [1, 2]}], "chosen": 3}
    assert validate(json.dumps(meta)) == (meta, [])


# -- fuzz --------------------------------------------------------------------------------------------------------

def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(14)
    if kind == 0:
        return rng.choice([0, 1, -1, 4, 8, 64, 65, 2 ** 31, 2 ** 63, 2 ** 70, -(2 ** 63)])
    if kind == 1:
        return rng.choice([0.0, 0.5, 1.0, 1.5, -5.0, 3.0, 100.5, 1e30, -1e-9, math.nan, math.inf, -math.inf])
    if kind == 2:
        return rng.choice(["", "abc", "gridar", "view", "copy", "mixed", "three-way", "é" * 3, "x" * 5000])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4 and depth < 3:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 5 and depth < 3:
        return {rng.choice(["until", "verify", "a", "source_png"]): _random_value(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    if kind == 6:
        d = rng.randrange(1, 200)
        return json.loads("[" * d + "]" * d)
    if kind == 7:
        return [{"until": rng.choice([0.25, 0.5, 1.0, 2.0, "x"]), "verify": rng.choice([True, 1])}
                for _ in range(rng.randrange(1, 4))]
    return rng.choice([3, 0.25, 4, "gridar", True, None, "source"])     # often a plausible value


def _random_edit(rng: random.Random):
    e = an_edit()
    for _ in range(rng.randrange(3)):
        key = rng.choice(sorted(e))
        if rng.random() < 0.3:
            del e[key]
        else:
            e[key] = rng.choice([_random_value(rng), "AAAA", b64png(Image.new("L", (rng.randrange(1, 80),) * 2)),
                                 base64.b64encode(huge_png(5000, 5000)).decode()])
    return e if rng.random() < 0.9 else _random_value(rng)


def _random_metadata(rng: random.Random):
    r = rng.random()
    if r < 0.05:
        return _random_value(rng)                               # not a record at all
    settings: dict | object = {k: _random_value(rng) for k in rng.sample(sorted(SETTINGS) + ["schedule", "extra"],
                                                                         rng.randrange(1, 8))}
    if rng.random() < 0.2:
        settings["edit"] = _random_edit(rng)
    if rng.random() < 0.05:
        settings = _random_value(rng)
    meta = {"settings": settings}
    if rng.random() < 0.7:
        meta["prompt"] = rng.choice(["a red circle", 12345, None, "x" * 5000, ["a"]])
    if rng.random() < 0.2:
        meta["chosen"] = _random_value(rng)
    return meta


def _kept_or_named(original: dict, cleaned: dict, problems: list[str], prefix: str = "") -> None:
    """Every field either comes through as it was (integral floats may become ints; a fixable edit is rewritten)
    or is named in the problems."""
    for key, v in original.items():
        named = any(f"'{prefix}{key}" in q for q in problems)
        if key in cleaned:
            same = json.dumps(cleaned[key]) == json.dumps(v) or key == "edit" or (
                type(v) in (int, float) and type(cleaned[key]) in (int, float) and cleaned[key] == v)
            if key in SETTINGS and isinstance(v, float) and math.isnan(v):
                same = False                                    # a NaN setting must never come through
            assert same or named, (key, v, cleaned[key], problems)
        else:
            assert named, (key, v, problems)


@pytest.mark.parametrize("seed", range(6))
def test_fuzz_metadata(seed, tmp_path, bare_window):
    from gridar_desktop.app.studio import request_from_metadata
    from gridar_desktop.engine.search import SearchRequest
    rng = random.Random(seed)
    for i in range(50):
        original = _random_metadata(rng)
        raw = json.dumps(original)
        cleaned, problems = validate(raw)
        assert isinstance(cleaned, dict) and all(isinstance(q, str) and q for q in problems)
        if not isinstance(original, dict):
            assert cleaned == {} and problems
        else:
            _kept_or_named({k: v for k, v in original.items() if k != "settings"}, cleaned, problems)
            if isinstance(original["settings"], dict):
                _kept_or_named(original["settings"], cleaned.get("settings", {}), problems)
            else:
                assert any("'settings'" in q for q in problems)
        assert isinstance(request_from_metadata(cleaned), SearchRequest)
        p = tmp_path / f"f{i}.png"
        p.write_bytes(png_with(text(raw)))
        assert read_metadata_checked(p) == (cleaned, problems)
        open_in_studio(bare_window, p, problems[0] if problems else None)
