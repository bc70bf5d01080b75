"""The canvas: the current image, painted band by band, with zoom, pan and crisp pixel scaling; in edit mode it
also shows the mask (red, with adjustable opacity) and paints it with the brush or eraser (left button; the right or
middle button pans)."""
from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ..images import to_qimage


class CanvasView(QWidget):
    painted = Signal(float)            # perf_counter time at the end of each paint
    mask_changed = Signal()            # a stroke changed the mask

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 320)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.image: QImage | None = None
        self.rows_drawn: int | None = None
        self.total_rows = 1
        self.caption = ""
        self.crisp = True
        self.zoom = 1.0
        self.pan = QPointF(0, 0)
        self._drag: QPointF | None = None
        self.mask_state = None         # app.mask_state.MaskState while editing a mask
        self.show_mask = False
        self.tool = "brush"            # brush | eraser
        self.brush = 4.0               # radius in image pixels
        self.mask_opacity = 0.5
        self._stroking = False
        self._hover: QPointF | None = None
        self.setMouseTracking(True)

    def set_mask(self, state, show: bool = True) -> None:
        self.mask_state, self.show_mask = state, show and state is not None
        self.update()

    def _to_image(self, pos: QPointF) -> tuple[float, float]:
        r, size = self._target(), self.mask_state.size
        return ((pos.x() - r.left()) / r.width() * size, (pos.y() - r.top()) / r.height() * size)

    def set_image(self, arr: np.ndarray | None, rows_drawn: int | None = None, total_rows: int = 1,
                  caption: str = "") -> None:
        self.image = None if arr is None else to_qimage(arr)
        self.rows_drawn, self.total_rows, self.caption = rows_drawn, total_rows, caption
        self.update()

    def set_crisp(self, crisp: bool) -> None:
        self.crisp = crisp
        self.update()

    def reset_view(self) -> None:
        self.zoom, self.pan = 1.0, QPointF(0, 0)
        self.update()

    def _target(self) -> QRectF:
        side = min(self.width(), self.height()) * 0.92 * self.zoom
        c = QPointF(self.width() / 2, self.height() / 2) + self.pan
        return QRectF(c.x() - side / 2, c.y() - side / 2, side, side)

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt naming)
        p = QPainter(self)
        pal = self.palette()
        p.fillRect(self.rect(), pal.window().color().darker(110))
        r = self._target()
        if self.image is None:
            p.setPen(pal.text().color())
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Type a prompt and press Generate (Ctrl+Return)")
        else:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not self.crisp)
            p.drawImage(r, self.image)
            if self.rows_drawn is not None and self.rows_drawn < self.total_rows:
                y = r.top() + r.height() * self.rows_drawn / self.total_rows
                p.fillRect(QRectF(r.left(), y, r.width(), r.bottom() - y), QColor(0, 0, 0, 110))
                p.setPen(QPen(QColor(255, 196, 0), 2, Qt.PenStyle.DashLine))
                p.drawLine(QPointF(r.left(), y), QPointF(r.right(), y))
            if self.show_mask and self.mask_state is not None:
                m = self.mask_state.mask
                rgba = np.zeros(m.shape + (4,), np.uint8)
                rgba[m] = (230, 40, 60, int(255 * self.mask_opacity))
                h, w = m.shape
                overlay = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
                p.drawImage(r, overlay)
                if self._hover is not None:
                    rad = self.brush * r.width() / self.mask_state.size
                    p.setPen(QPen(QColor(255, 255, 255), 1))
                    p.setBrush(Qt.BrushStyle.NoBrush)
                    p.drawEllipse(self._hover, rad, rad)
            p.setPen(QPen(pal.mid().color(), 1))
            p.drawRect(r)
        if self.caption:
            p.setPen(pal.text().color())
            p.drawText(self.rect().adjusted(8, 6, -8, -6), Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft,
                       self.caption)
        p.end()
        self.painted.emit(time.perf_counter())

    def wheelEvent(self, e) -> None:  # noqa: N802
        self.zoom = float(np.clip(self.zoom * (1.15 if e.angleDelta().y() > 0 else 1 / 1.15), 0.25, 16))
        self.update()

    def mousePressEvent(self, e) -> None:  # noqa: N802
        if self.show_mask and self.mask_state is not None and e.button() == Qt.MouseButton.LeftButton:
            x, y = self._to_image(e.position())
            self.mask_state.begin_stroke(x, y, self.brush, erase=self.tool == "eraser")
            self._stroking = True
            self.mask_changed.emit()
            self.update()
            return
        self._drag = e.position()

    def mouseMoveEvent(self, e) -> None:  # noqa: N802
        if self.show_mask:
            self._hover = e.position()
        if self._stroking:
            x, y = self._to_image(e.position())
            self.mask_state.paint(x, y, self.brush, erase=self.tool == "eraser")
            self.mask_changed.emit()
            self.update()
        elif self._drag is not None:
            self.pan += e.position() - self._drag
            self._drag = e.position()
            self.update()
        elif self.show_mask:
            self.update()

    def mouseReleaseEvent(self, _e) -> None:  # noqa: N802
        if self._stroking and self.mask_state is not None:
            self.mask_state.end_stroke()
        self._stroking = False
        self._drag = None

    def mouseDoubleClickEvent(self, _e) -> None:  # noqa: N802
        self.reset_view()
