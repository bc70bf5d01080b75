"""PNG files with generation metadata.

Two text chunks: ``parameters`` in the A1111 style that other tools read ("prompt\\nSteps: ..., Seed: ..."), and
``gridar`` holding JSON (settings, seed, candidate tree) that restores a generation exactly.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .atomic import atomic_open

META_KEY = "gridar"


class ImageFileError(ValueError):
    """An image file that cannot be read; the message names the file and the problem."""


def a1111_parameters(prompt: str, settings: dict[str, Any]) -> str:
    pairs = ", ".join(f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in settings.items()
                      if isinstance(v, (str, int, float)) and not isinstance(v, bool))
    return f"{prompt}\n{pairs}"


def save_png(image: Image.Image, path: str | Path, prompt: str = "", metadata: dict[str, Any] | None = None) -> Path:
    """Save atomically with metadata chunks; returns the path written."""
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    meta = dict(metadata or {})
    if prompt or meta:
        info.add_text("parameters", a1111_parameters(prompt, meta.get("settings", {})))
        info.add_text(META_KEY, json.dumps({"prompt": prompt, **meta}, default=str))
    with atomic_open(path, "wb") as f:
        image.save(f, format="PNG", pnginfo=info)
    return path


def load_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Open an image file in `mode` (RGB; "L" for masks), or raise `ImageFileError` naming the file and the
    problem."""
    path = Path(path)
    if not path.exists():
        raise ImageFileError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageFileError(f"{path}: not a readable image ({e.__class__.__name__}: {e})") from None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``gridar`` JSON chunk of a PNG, or {} when there is none."""
    try:
        with Image.open(path) as im:
            raw = im.info.get(META_KEY) or getattr(im, "text", {}).get(META_KEY)
    except (UnidentifiedImageError, OSError) as e:
        raise ImageFileError(f"{path}: not a readable image ({e})") from None
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ImageFileError(f"{path}: its '{META_KEY}' metadata is not valid JSON") from None
