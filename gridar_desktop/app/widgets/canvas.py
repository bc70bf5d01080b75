"""The canvas: the current image, painted band by band, with zoom, pan and crisp pixel scaling."""
from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ..images import to_qimage


class CanvasView(QWidget):
    painted = Signal(float)            # perf_counter time at the end of each paint

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
        self._drag = e.position()

    def mouseMoveEvent(self, e) -> None:  # noqa: N802
        if self._drag is not None:
            self.pan += e.position() - self._drag
            self._drag = e.position()
            self.update()

    def mouseReleaseEvent(self, _e) -> None:  # noqa: N802
        self._drag = None

    def mouseDoubleClickEvent(self, _e) -> None:  # noqa: N802
        self.reset_view()
