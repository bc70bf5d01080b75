"""The edit mode's mask, as plain state (no Qt): painting, erasing, invert, clear, undo and redo.

The mask lives at the model's resolution (the source image is fitted to it when opened), True = redraw. A stroke is
one undo step however many points it has: `begin_stroke` snapshots, `paint` stamps discs along the segment.
"""
from __future__ import annotations

import numpy as np

MAX_UNDO = 100


class MaskState:
    def __init__(self, size: int) -> None:
        self.size = size
        self.mask = np.zeros((size, size), bool)
        self._undo: list[np.ndarray] = []
        self._redo: list[np.ndarray] = []
        self._last: tuple[float, float] | None = None
        yy, xx = np.mgrid[0:size, 0:size]
        self._grid = (xx + 0.5, yy + 0.5)          # pixel centres

    # -- history -----------------------------------------------------------------------------------------------
    def _snapshot(self) -> None:
        self._undo.append(self.mask.copy())
        del self._undo[:-MAX_UNDO]
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> None:
        if self._undo:
            self._redo.append(self.mask)
            self.mask = self._undo.pop()

    def redo(self) -> None:
        if self._redo:
            self._undo.append(self.mask)
            self.mask = self._redo.pop()

    # -- edits -------------------------------------------------------------------------------------------------
    def begin_stroke(self, x: float, y: float, radius: float, erase: bool = False) -> None:
        self._snapshot()
        self._last = None
        self.paint(x, y, radius, erase)

    def paint(self, x: float, y: float, radius: float, erase: bool = False) -> None:
        """Stamp discs of `radius` pixels from the previous point of the stroke to (x, y) (image pixels)."""
        x0, y0 = self._last if self._last is not None else (x, y)
        steps = max(1, int(np.ceil(np.hypot(x - x0, y - y0) / max(0.5, radius / 2))))
        gx, gy = self._grid
        hit = np.zeros_like(self.mask)
        for t in np.linspace(0.0, 1.0, steps + 1):
            cx, cy = x0 + (x - x0) * t, y0 + (y - y0) * t
            hit |= (gx - cx) ** 2 + (gy - cy) ** 2 <= radius * radius
        self.mask = self.mask & ~hit if erase else self.mask | hit
        self._last = (x, y)

    def end_stroke(self) -> None:
        self._last = None

    def invert(self) -> None:
        self._snapshot()
        self.mask = ~self.mask

    def clear(self) -> None:
        if self.mask.any():
            self._snapshot()
            self.mask = np.zeros_like(self.mask)

    def set(self, mask: np.ndarray) -> None:
        """Replace the mask (e.g. restored from a file) as one undo step."""
        if mask.shape != self.mask.shape:
            raise ValueError(f"mask is {mask.shape}, the canvas is {self.mask.shape}")
        self._snapshot()
        self.mask = mask.astype(bool).copy()

    @property
    def coverage(self) -> float:
        return float(self.mask.mean())
