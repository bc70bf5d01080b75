"""Masked editing: an image and a mask become a source token grid with the tokens to redraw; the result is pasted
back over the source so nothing outside the mask changes.

The artist's mask is in pixels (any size; white = redraw, as in inpainting tools). The rule for tokens: **a token is
redrawn when any pixel of its patch is masked** (after the mask is brought to the model's resolution and cut at
half intensity). A generous rule is safe because paste-back restores every pixel outside the mask, while a token
left out would leave masked pixels unedited.

Decoding (see `engine.search`): the kept codes (the source's, or those of the source with the mask cleared, see
`CONTEXTS`) before the first redrawn token are prefilled once per context as an image prefix; inside the redrawn
span, kept codes are teacher-forced (a run per row in one forward) and the redrawn ones are sampled; after the last
redrawn token nothing is computed (the kept codes are appended). A model trained for it (gridar.json
`edit_generation`, the demo model's `editgen` stage) also reads the source itself: every generation row of the edit
starts with the understanding encoder's features of the source with the redrawn part grey (`conditioning_image`),
so the generator knows where the hole is and what surrounds it. Paste-back feathers the
seam *inside* the mask (alpha ramps from 0 at the mask edge to 1 at `feather` pixels inside), so pixels outside
the mask are the source's exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from .errors import EngineError

FITS = ("resize", "crop")
# What the kept tokens around the mask say about the old content. The VQ encoder is not local: the codes of patches
# next to the mask also encode what is under it, so a model continuing them redraws the old object ("source": the
# right start for a new colour or shape, the wrong one for a removal). Encoding the source with the masked pixels
# painted as the empty canvas ("cleared") removes the trace, and with it the hint of where an object stands.
# "mixed" gives every other candidate of a search the cleared codes, and lets the verifier and the scorer choose.
CONTEXTS = ("mixed", "source", "cleared")
# An edit-conditioned generator (a model folder whose gridar.json names `edit_generation`) also reads the source
# through its understanding encoder, with what is redrawn painted this grey: the colour the understanding path
# already reads as "not drawn yet". From it the generator knows where the hole is and what stays around it, which a
# text-to-image model continuing forced codes cannot know.
HOLE_FILL = (128, 128, 128)


class EditInputError(EngineError):
    """An edit's image or mask cannot be used as given (the message says why and what to do)."""


@dataclass(frozen=True, eq=False)
class EditTarget:
    """What an edit keeps and what it redraws, at the model's resolution (compared by identity)."""
    source: np.ndarray                  # uint8 (H, W, 3) the image being edited (after fitting)
    mask: np.ndarray                    # bool (H, W): pixels to redraw
    tokens: tuple[int, ...]             # the source's codes, raster order (rows*cols)
    redraw: tuple[bool, ...]            # per token: sampled (True) or forced from the source (False)
    feather: float = 2.0                # paste-back seam width in pixels, inside the mask
    notes: tuple[str, ...] = field(default=())   # what was done to the inputs (resampled mask, crop, ...)
    cleared: tuple[int, ...] | None = None       # the codes of the source with the masked pixels painted as the
                                                 # empty canvas (`CONTEXTS`); None: not encoded (old metadata)

    def codes(self, context: str) -> tuple[int, ...]:
        """The codes the kept tokens are forced to in `context` ('source' or 'cleared')."""
        return self.cleared if context == "cleared" and self.cleared is not None else self.tokens

    @property
    def first(self) -> int:
        return self.redraw.index(True)

    @property
    def last(self) -> int:
        return len(self.redraw) - 1 - self.redraw[::-1].index(True)

    @property
    def redrawn_tokens(self) -> int:
        return sum(self.redraw)


def fit_image(image: Image.Image, size: int, fit: str = "resize") -> tuple[Image.Image, str | None]:
    """Bring an image to size x size: 'resize' (whole image, aspect ratio not kept) or 'crop' (centre square, then
    resize). Returns the image and a note when something was changed."""
    if fit not in FITS:
        raise EditInputError(f"unknown fit '{fit}'; use resize or crop")
    w, h = image.size
    if (w, h) == (size, size):
        return image, None
    if fit == "crop" and w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
        note = f"cropped the centre {side}x{side} of the {w}x{h} image, then resized it to {size}x{size}"
    else:
        note = f"resized the {w}x{h} image to {size}x{size}" + (" (aspect ratio not kept)" if w != h else "")
    return image.resize((size, size), Image.Resampling.LANCZOS), note


def fit_mask(mask: Image.Image, size: int, image_size: tuple[int, int], fit: str = "resize") -> tuple[np.ndarray,
                                                                                                       list[str]]:
    """A mask image (any mode and size) -> bool (size, size). A mask whose size differs from the image's is first
    resampled to the image's size (and said so); then it follows the image's fit."""
    notes = []
    m = mask.convert("L")
    if m.size != image_size:
        notes.append(f"the mask is {m.size[0]}x{m.size[1]} but the image is {image_size[0]}x{image_size[1]}: "
                     "resampled the mask to the image's size")
        m = m.resize(image_size, Image.Resampling.BILINEAR)
    m, _ = fit_image(m, size, fit)
    return np.asarray(m) >= 128, notes


def token_mask(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """bool (H, W) pixels -> bool (rows, cols): a token is redrawn when any pixel of its patch is masked."""
    h, w = mask.shape
    return mask.reshape(rows, h // rows, cols, w // cols).any(axis=(1, 3))


def pixel_mask(tokens: np.ndarray, rows: int, cols: int, size: int) -> np.ndarray:
    """bool (..., rows*cols) per token, raster order -> bool (..., size, size): every pixel of a marked token's patch
    (the way back from `token_mask`)."""
    t = np.asarray(tokens, bool)
    t = t.reshape(t.shape[:-1] + (rows, cols))
    return t.repeat(size // rows, axis=-2).repeat(size // cols, axis=-1)


def conditioning_image(source: np.ndarray, mask: np.ndarray, redraw, fill=HOLE_FILL) -> np.ndarray:
    """uint8 (H, W, 3): the source with every redrawn pixel (the mask, and the patches of the redrawn tokens,
    `redraw` (rows*cols,) bool) painted `fill` -- what an edit-conditioned generator is shown."""
    size = source.shape[0]
    rows = int(round(len(redraw) ** 0.5))
    out = np.array(source, dtype=np.uint8, copy=True)
    out[np.asarray(mask, bool) | pixel_mask(np.asarray(redraw, bool), rows, rows, size)] = fill
    return out


def feather_alpha(mask: np.ndarray, feather: float) -> np.ndarray:
    """float (H, W) in [0, 1]: 0 outside the mask, ramping to 1 at `feather` pixels inside it."""
    if feather <= 0 or mask.all():          # all masked: no edge to feather from (the EDT would invent one)
        return mask.astype(np.float32)
    inside = ndimage.distance_transform_edt(mask)            # distance to the nearest unmasked pixel (>= 1 inside)
    return np.clip(inside / (feather + 1.0), 0.0, 1.0).astype(np.float32) * mask


def paste_back(source: np.ndarray, generated: np.ndarray, mask: np.ndarray, feather: float) -> np.ndarray:
    """uint8 (..., H, W, 3) generated images over the source, through the feathered mask."""
    a = feather_alpha(mask, feather)[..., None]
    out = a * generated.astype(np.float32) + (1.0 - a) * source.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def edit_metadata(e: EditTarget) -> dict:
    """The edit for a PNG's JSON chunk: source and mask as small PNGs (base64), the token rule's result, notes."""
    import base64
    import io

    def png(a: np.ndarray) -> str:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", optimize=True)
        return base64.b64encode(buf.getvalue()).decode("ascii")
    return {"source_png": png(e.source), "mask_png": png(e.mask.astype(np.uint8) * 255), "feather": e.feather,
            "redraw": "".join("1" if r else "0" for r in e.redraw), "source_tokens": list(e.tokens),
            "cleared_tokens": list(e.cleared) if e.cleared is not None else None, "notes": list(e.notes)}


def edit_from_metadata(meta: dict) -> EditTarget:
    """Inverse of `edit_metadata`. The PNGs are decoded within bounds (`io.png.decode_png_bytes`): the source as RGB
    whatever its mode, the mask resampled to the source's size when it differs. Raises ValueError on an unusable
    record; `io.metadata.validate` has already checked what it lets through, so that does not happen there."""
    import base64

    from ..io.png import decode_png_bytes

    def img(key: str, mode: str) -> Image.Image:
        return decode_png_bytes(base64.b64decode(meta[key], validate=True), f"the edit's {key}", mode)
    source = img("source_png", "RGB")
    mask = img("mask_png", "L")
    if mask.size != source.size:
        mask = mask.resize(source.size, Image.Resampling.BILINEAR)
    return EditTarget(np.asarray(source, dtype=np.uint8), np.asarray(mask) >= 128,
                      tuple(int(t) for t in meta["source_tokens"]), tuple(c == "1" for c in meta["redraw"]),
                      float(meta.get("feather", 2.0)), tuple(str(n) for n in meta.get("notes") or ()),
                      tuple(int(t) for t in meta["cleared_tokens"]) if meta.get("cleared_tokens") is not None
                      else None)


def edit_prompt(backend, instruction: str, target_prompt: str | None) -> str:
    """The prompt an edit conditions on: the target prompt (the whole edited scene) when given, else the
    instruction. The demo model reads only its shapes grammar, so there an instruction must itself be a scene."""
    from .errors import PromptNotUnderstood
    prompt = (target_prompt or instruction).strip()
    if backend.info.prompt_format == "plain" and not target_prompt:
        from ..shapes.grammar import PromptError, parse_prompt
        try:
            parse_prompt(prompt)
        except PromptError as e:
            raise PromptNotUnderstood(
                f"the demo model cannot follow free instructions ('{instruction}': {e}); describe the edited scene "
                "with --target-prompt, e.g. --target-prompt \"a blue circle and a red square\"") from None
    backend.prompt_ids(prompt)                  # unknown words: a message listing them
    return prompt


def prepare_edit(backend, image: Image.Image, mask: Image.Image, fit: str = "resize",
                 feather: float = 2.0) -> EditTarget:
    """Fit the image and mask to the model, encode the source and derive the tokens to redraw. An empty mask is an
    error; a mask covering every token makes the edit a plain generation (noted)."""
    size, rows, cols = backend.info.image_size, backend.info.rows, backend.info.cols
    notes: list[str] = []
    fitted, note = fit_image(image.convert("RGB"), size, fit)
    if note:
        notes.append(note)
    pixels, mask_notes = fit_mask(mask, size, image.size, fit)
    notes += mask_notes
    if not pixels.any():
        if mask.convert("L").getextrema()[1] >= 128:     # painted, but resampling to the model's size emptied it
            raise EditInputError(
                f"the painted mask vanished when resampled to the model's {size}x{size} (the mask is "
                f"{mask.width}x{mask.height}, the image {image.width}x{image.height}): the image is too small or "
                "the stroke too thin; paint a larger area or use a larger image")
        raise EditInputError("the mask is empty: paint over the part of the image that should change (white = "
                             "redraw)")
    tm = token_mask(pixels, rows, cols).flatten()
    if tm.all():
        notes.append("the mask covers every token: the edit is a new generation from the prompt")
    src = np.array(fitted, dtype=np.uint8)
    cleared = src.copy()
    cleared[pixels] = backend.canvas_colour
    tokens, cleared_tokens = backend.encode_images(np.stack([src, cleared])).tolist()
    return EditTarget(src, pixels, tuple(int(t) for t in tokens), tuple(bool(x) for x in tm), feather, tuple(notes),
                      tuple(int(t) for t in cleared_tokens))
