"""Draw resources/icons/gridar-desktop.png (256x256), the raster twin of the hand-written gridar-desktop.svg.

    python installer/make_icon.py [--out PATH]

Desktop environments without SVG support (and the installer's Icon= line) need a PNG; drawing it here with Pillow
keeps it reproducible without an SVG renderer. Keep the geometry in step with the SVG.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256
SCALE = 4  # draw 4x larger, then downsample: Pillow's shapes are not anti-aliased
BACKGROUND = "#1e2330"
DONE, GROWING, EMPTY = "#ff8a3d", "#3dc9b0", "#3a4152"
MARGIN, CELL, GAP, CELL_RADIUS, CANVAS_RADIUS = 36, 40, 8, 8, 48
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "resources" / "icons" / "gridar-desktop.png"


def cell_colour(row: int, col: int) -> str:
    """Top band finished, second band half grown, the rest empty (same as the SVG)."""
    if row == 0:
        return DONE
    if row == 1 and col < 2:
        return GROWING
    return EMPTY


def draw_icon() -> Image.Image:
    s = SCALE
    img = Image.new("RGBA", (SIZE * s, SIZE * s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((0, 0, SIZE * s - 1, SIZE * s - 1), radius=CANVAS_RADIUS * s, fill=BACKGROUND)
    for row in range(4):
        for col in range(4):
            x, y = MARGIN + col * (CELL + GAP), MARGIN + row * (CELL + GAP)
            d.rounded_rectangle((x * s, y * s, (x + CELL) * s - 1, (y + CELL) * s - 1), radius=CELL_RADIUS * s,
                                fill=cell_colour(row, col))
    return img.resize((SIZE, SIZE), Image.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write the PNG (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    from gridar_desktop.io.atomic import atomic_open   # the project's one writer (never a half-written icon)
    with atomic_open(args.out, "wb") as f:
        draw_icon().save(f, format="PNG", optimize=True)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
