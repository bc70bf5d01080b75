"""Image files: reading them within stated bounds, and saving with generation metadata.

A saved PNG carries two text chunks: ``parameters`` in the A1111 style that other tools read ("prompt\\nSteps: ...,
Seed: ..."), and ``gridar`` holding JSON (settings, seed, candidate tree) that restores a generation exactly. JPEG and
WebP outputs carry the ``parameters`` text only (as EXIF UserComment).

Every image we open comes from the user and may be hostile: a file is checked to be a regular file before it is
opened (a FIFO would block), its dimensions are read from the header before anything is decoded, and the ``gridar``
chunk is read by our own bounded chunk reader and validated by `io.metadata` (never trusted as it is).
"""
from __future__ import annotations

import io
import json
import os
import stat
import struct
import warnings
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin, UnidentifiedImageError

from .atomic import atomic_open
from .metadata import validate

META_KEY = "gridar"

# 64 Mi pixels (8192 x 8192): above any camera photo an artist would bring to a 64-384 px model, and a decoded
# RGBA image of that size (256 MB) plus its conversion stays well within a desktop's memory.
MAX_PIXELS = 64 * 1024 * 1024
# Images embedded in metadata (an edit's source and mask) are stored at the model's size: 2048 x 2048 is plenty.
MAX_EMBEDDED_PIXELS = 2048 * 2048
# A text chunk (decompressed) above this is not read: our own metadata of a large search is a few hundred KB.
MAX_TEXT_BYTES = 4 * 1024 * 1024
# The ``gridar`` chunk is read up to this many bytes (compressed or decompressed) so that `io.metadata` can say
# which field made it too long; anything larger is refused from its chunk header alone.
MAX_META_READ = 64 * 1024 * 1024

# PIL's own bounds on text chunks (per decompressed chunk, and all of them together): a zTXt "zip bomb" stops here.
PngImagePlugin.MAX_TEXT_CHUNK = MAX_TEXT_BYTES
PngImagePlugin.MAX_TEXT_MEMORY = 4 * MAX_TEXT_BYTES
ImageFile.LOAD_TRUNCATED_IMAGES = False

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


class ImageFileError(ValueError):
    """An image file that cannot be read; the message names the file and the problem."""


def a1111_parameters(prompt: str, settings: dict[str, Any]) -> str:
    pairs = ", ".join(f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in settings.items()
                      if isinstance(v, (str, int, float)) and not isinstance(v, bool))
    return f"{prompt}\n{pairs}"


# -- saving ------------------------------------------------------------------------------------------------------

def save_image(image: Image.Image, path: str | Path, prompt: str = "",
               metadata: dict[str, Any] | None = None) -> tuple[Path, list[str]]:
    """Save atomically in the format the suffix names: .png with both metadata chunks; .jpg/.jpeg (quality 95) and
    .webp (lossless) with the A1111 parameters only. Returns the path and notes (what the format could not keep).
    Any other suffix raises ValueError naming the supported ones, before anything is written."""
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: cannot save as '{path.suffix or '(no suffix)'}'; "
                         f"use one of {', '.join(SAVE_FORMATS)}")
    meta = dict(metadata or {})
    settings = meta.get("settings") if isinstance(meta.get("settings"), dict) else {}
    params = a1111_parameters(prompt, settings) if (prompt or meta) else ""
    notes: list[str] = []
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        if params:
            info.add_text("parameters", params)
            info.add_text(META_KEY, json.dumps({"prompt": prompt, **meta}, default=str))
        kwargs: dict[str, Any] = {"pnginfo": info}
    else:
        kwargs = {"quality": 95} if fmt == "JPEG" else {"lossless": True}
        if params:
            exif = Image.Exif()
            # UserComment in the Exif IFD: an 8-byte character-code prefix, then the text (as A1111 writes it).
            exif[0x8769] = {0x9286: b"UNICODE\x00" + params.encode("utf-16-be")}
            kwargs["exif"] = exif.tobytes()
        if meta:
            notes.append(f"{path.name}: {fmt} keeps the prompt and settings but not the candidate tree; save as .png "
                         "to be able to restore this generation exactly")
        if image.mode not in ("RGB", "L") and fmt == "JPEG":
            image = image.convert("RGB")
    with atomic_open(path, "wb") as f:
        image.save(f, format=fmt, **kwargs)
    return path, notes


def save_png(image: Image.Image, path: str | Path, prompt: str = "", metadata: dict[str, Any] | None = None) -> Path:
    """`save_image` for callers that only need the path (the format still follows the suffix)."""
    return save_image(image, path, prompt, metadata)[0]


# -- reading: files, chunks, bounds --------------------------------------------------------------------------------

def _check_regular(path: Path) -> os.stat_result:
    """Refuse what is not a regular file before opening it: opening a FIFO would block until a writer comes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise ImageFileError(f"{path}: is {kind}, not an image file; choose an image file")
    return st


MAX_CHUNKS = 1 << 20             # a real PNG of MAX_PIXELS has a few thousand; a file of empty chunks stops here


def _png_chunks(f: IO[bytes]):
    """(type, data offset, length) of each chunk of a PNG positioned after its signature, reading headers only.
    Stops at IEND, at a truncated header or after MAX_CHUNKS."""
    for _ in range(MAX_CHUNKS):
        head = f.read(8)
        if len(head) < 8:
            return
        length, kind = struct.unpack(">I4s", head)
        start = f.tell()
        yield kind, start, length
        if kind == b"IEND":
            return
        f.seek(start + length + 4)          # data and CRC


class _PngHeader:
    """What our chunk walk learns from a PNG without decoding it."""

    def __init__(self, size: tuple[int, int] | None, big_text: bool, meta_chunks: list[tuple[bytes, int, int]]):
        self.size, self.big_text, self.meta_chunks = size, big_text, meta_chunks


def _keyword(f: IO[bytes], start: int, length: int) -> bytes:
    f.seek(start)
    return f.read(min(length, 80)).split(b"\0", 1)[0]


def _scan_png(f: IO[bytes]) -> _PngHeader | None:
    """Walk a PNG's chunks: its size from IHDR, whether a text chunk is larger than we let PIL read, and where the
    ``gridar`` chunks are. None when the file is not a PNG."""
    f.seek(0)
    if f.read(8) != PNG_SIGNATURE:
        return None
    size, big, meta = None, False, []
    for kind, start, length in _png_chunks(f):
        if kind == b"IHDR" and length >= 8:
            pos = f.tell()
            size = struct.unpack(">II", f.read(8))
            f.seek(pos)
        elif kind in TEXT_CHUNKS:
            pos = f.tell()
            if _keyword(f, start, length) == META_KEY.encode():
                meta.append((kind, start, length))
            big = big or length > MAX_TEXT_BYTES
            f.seek(pos)
    return _PngHeader(size, big, meta)


def _without_text_chunks(f: IO[bytes]) -> io.BytesIO:
    """The PNG with its text chunks left out, for PIL: the image opens whatever its metadata holds (which
    `read_metadata_checked` reads and judges separately)."""
    out = io.BytesIO()
    f.seek(0)
    out.write(f.read(8))
    for kind, start, length in list(_png_chunks(f)):
        if kind in TEXT_CHUNKS:
            continue
        f.seek(start - 8)
        out.write(f.read(length + 12))
    out.seek(0)
    return out


def _too_big(name: str, w: int, h: int, limit: int) -> ImageFileError:
    return ImageFileError(f"{name}: the image is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), above the limit of "
                          f"{limit / 1e6:.0f} megapixels ({int(limit ** 0.5)}x{int(limit ** 0.5)}); "
                          "scale it down first")


def _to_8bit(im: Image.Image) -> Image.Image:
    """High-bit-depth greyscale to "L" by scaling its range, not clipping it (PIL's own conversion turns a 16-bit
    image all white): I;16 and I are read as 0..65535, F as 0..1 (or 0..255 when its values go above 1)."""
    a = np.asarray(im)
    if im.mode == "F":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.round(a * scale), 0, 255).astype(np.uint8), "L")
    a = np.clip(a.astype(np.int64), 0, 65535)
    return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")


def _convert(im: Image.Image, mode: str) -> Image.Image:
    """`im` (loaded) in `mode`. Transparency is composited: on white for a picture (transparent areas read as
    the empty canvas), on black for a mask (mode "L": a transparent pixel is an unpainted one)."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _to_8bit(im)
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (im.mode in ("P", "L", "RGB", "1")
                                                          and "transparency" in im.info):
        rgba = im.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (0, 0, 0, 255) if mode == "L" else (255, 255, 255, 255))
        im = Image.alpha_composite(back, rgba)
    return im if im.mode == mode else im.convert(mode)


def _decode(f: IO[bytes], name: str, mode: str, max_side: int | None, max_pixels: int) -> Image.Image:
    """Decode an image file object within the bounds; raise ImageFileError naming `name` otherwise."""
    png = _scan_png(f)
    if png is not None:
        if png.size is None:
            raise ImageFileError(f"{name}: not a readable image (a PNG without its IHDR header)")
        if png.size[0] * png.size[1] > max_pixels:
            raise _too_big(name, *png.size, max_pixels)
    f.seek(0)
    src: IO[bytes] = _without_text_chunks(f) if png is not None and png.big_text else f
    for attempt in (1, 2):
        try:
            with warnings.catch_warnings():
                # We check the size ourselves against a lower limit; PIL's warning would only add noise.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(src) as im:
                    w, h = im.size
                    if w * h > max_pixels:
                        raise _too_big(name, w, h, max_pixels)
                    if max_side and im.format == "JPEG":
                        im.draft(im.mode, (max_side, max_side))   # decode at 1/2, 1/4 or 1/8 scale
                    im.load()
                    out = _convert(im, mode)
            break
        except ImageFileError:
            raise
        except Image.DecompressionBombError:
            raise ImageFileError(f"{name}: the image is too large to open safely (above {max_pixels / 1e6:.0f} "
                                 "megapixels); scale it down first") from None
        except ValueError as e:
            # A text chunk past PIL's limits: open the image without its text (the metadata is judged elsewhere).
            if png is None or attempt == 2:
                raise ImageFileError(f"{name}: not a readable image ({e})") from None
            src = _without_text_chunks(f)
        except MemoryError:
            raise ImageFileError(f"{name}: not enough memory to open this image; scale it down first") from None
        except Exception as e:        # hostile files reach odd corners of the decoders: one line, never a traceback
            raise ImageFileError(f"{name}: not a readable image ({e.__class__.__name__}: {e})") from None
    if max_side and min(out.size) > max_side:
        w, h = out.size
        k = max_side / min(w, h)
        out = out.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return out


def load_image(path: str | Path, mode: str = "RGB", max_side: int | None = None) -> Image.Image:
    """Open an image file in `mode` ("RGB"; "L" for masks), or raise `ImageFileError` naming the file and the
    problem: not a regular file, not an image, above `MAX_PIXELS` (checked from the header, before decoding).
    `max_side`: the caller uses at most max_side x max_side pixels (the judge 64, a model its image size), so an
    image whose shorter side is larger is scaled down (aspect ratio kept) to that shorter side -- enough for a
    resize or a centre crop to that square. JPEGs are decoded at a reduced scale directly."""
    path = Path(path)
    _check_regular(path)
    try:
        with open(path, "rb") as f:
            return _decode(f, str(path), mode, max_side, MAX_PIXELS)
    except OSError as e:
        raise ImageFileError(f"{path}: cannot be read ({e.strerror or e})") from None


def check_image(path: str | Path) -> tuple[int, int]:
    """The (width, height) of an image file read from its header only, after the checks `load_image` makes before
    decoding (a regular file, an image, within `MAX_PIXELS`): cheap, so a command can refuse a bad image before
    loading a model and decode it afterwards at the size the model needs."""
    path = Path(path)
    _check_regular(path)
    try:
        with open(path, "rb") as f:
            png = _scan_png(f)
            if png is not None and png.size is not None:
                size = png.size
            else:
                f.seek(0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(f) as im:
                        size = im.size
    except ImageFileError:
        raise
    except Image.DecompressionBombError:
        raise ImageFileError(f"{path}: the image is too large to open safely (above {MAX_PIXELS / 1e6:.0f} "
                             "megapixels); scale it down first") from None
    except UnidentifiedImageError:
        raise ImageFileError(f"{path}: not a readable image (not a format we know)") from None
    except OSError as e:
        raise ImageFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    except Exception as e:          # what Image.open raises on a hostile header: one line
        raise ImageFileError(f"{path}: not a readable image ({e.__class__.__name__}: {e})") from None
    if size[0] * size[1] > MAX_PIXELS:
        raise _too_big(str(path), *size, MAX_PIXELS)
    return size


def decode_png_bytes(data: bytes, what: str, mode: str = "RGB", max_pixels: int = MAX_EMBEDDED_PIXELS) -> Image.Image:
    """A PNG held in memory (an edit's source or mask in metadata) as an image in `mode`, within `max_pixels`;
    raises ImageFileError naming `what` when it is not a PNG or too large."""
    if not data.startswith(PNG_SIGNATURE):
        raise ImageFileError(f"{what}: not a PNG image")
    return _decode(io.BytesIO(data), what, mode, None, max_pixels)


# -- reading: metadata -------------------------------------------------------------------------------------------

def _chunk_text(f: IO[bytes], kind: bytes, start: int, length: int) -> tuple[str | None, str | None]:
    """The text of a ``gridar`` chunk, or (None, problem)."""
    if length > MAX_META_READ:
        return None, (f"the '{META_KEY}' metadata is {length:,} bytes, above the limit of {MAX_TEXT_BYTES:,}; "
                      "ignored")
    f.seek(start)
    data = f.read(length)
    if len(data) < length:
        return None, f"the '{META_KEY}' metadata is cut short (the file is truncated); ignored"
    body = data.split(b"\0", 1)[1] if b"\0" in data else b""
    compressed, encoding = False, "latin-1"
    if kind == b"zTXt":
        compressed, body = True, body[1:]
    elif kind == b"iTXt":
        if len(body) < 2:
            return None, f"the '{META_KEY}' metadata chunk is malformed; ignored"
        compressed, encoding = body[0] == 1, "utf-8"
        parts = body[2:].split(b"\0", 2)
        if len(parts) < 3:
            return None, f"the '{META_KEY}' metadata chunk is malformed; ignored"
        body = parts[2]
    if compressed:
        try:
            d = zlib.decompressobj()
            out = d.decompress(body, MAX_META_READ + 1)
        except zlib.error:
            return None, f"the '{META_KEY}' metadata is compressed data that cannot be read; ignored"
        if len(out) > MAX_META_READ or d.unconsumed_tail:
            return None, (f"the '{META_KEY}' metadata is more than {MAX_META_READ:,} bytes when decompressed, above "
                          f"the limit of {MAX_TEXT_BYTES:,}; ignored")
        body = out
    try:
        return body.decode(encoding), None
    except UnicodeDecodeError:
        return None, f"the '{META_KEY}' metadata is not valid {encoding} text; ignored"


def read_metadata_checked(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The ``gridar`` JSON chunk of a PNG, validated by `io.metadata.validate`: (the cleaned metadata, problems in
    plain words naming each field that was ignored). ({}, []) for a file without one (or not a PNG). Raises
    ImageFileError only when the file itself cannot be read, never for what its metadata holds."""
    path = Path(path)
    _check_regular(path)
    try:
        with open(path, "rb") as f:
            png = _scan_png(f)
            if png is None or not png.meta_chunks:
                return {}, []
            text, problem = _chunk_text(f, *png.meta_chunks[0])
    except OSError as e:
        raise ImageFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    problems = [problem] if problem else []
    if len(png.meta_chunks) > 1:
        problems.append(f"the file holds {len(png.meta_chunks)} '{META_KEY}' metadata chunks; used the first")
    if text is None:
        return {}, problems
    meta, more = validate(text)
    return meta, problems + more


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The cleaned ``gridar`` metadata of a PNG ({} when there is none or none of it is usable); see
    `read_metadata_checked` for the problems found."""
    return read_metadata_checked(path)[0]
