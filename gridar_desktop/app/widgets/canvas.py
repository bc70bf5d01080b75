"""The canvas: the current image, painted band by band, with zoom, pan and crisp pixel scaling; in edit mode it
also shows the mask (outlined and hatched so the colours under it stay true, with an optional red tint) and paints
it with the brush or eraser (left button), optionally over the model's token grid. The right or middle button pans;
dragging with the left button (outside edit mode, or with Alt held) drags the image out to another application."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QMimeData, QPointF, QRect, QRectF, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDrag, QImage, QPainter, QPainterPath, QPen, QPixmap, QRegion
from PySide6.QtWidgets import QApplication, QSizePolicy, QWidget

from ...engine.edit import token_mask
from ..images import to_qimage

MASK_RED = QColor(230, 40, 60)
# a two-tone line (dark under light) stays visible on any colour
DARK, LIGHT = QColor(0, 0, 0), QColor(255, 255, 255)
_drag_dir: tempfile.TemporaryDirectory | None = None


def drag_folder() -> Path:
    """A temporary folder for the PNGs handed to other applications by drag and drop (removed at exit)."""
    global _drag_dir
    if _drag_dir is None:
        _drag_dir = tempfile.TemporaryDirectory(prefix="gridar-drag-")
    return Path(_drag_dir.name)



class CanvasView(QWidget):
    painted = Signal(float)            # perf_counter time at the end of each paint
    mask_changed = Signal()            # a stroke changed the mask

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)    # small enough for a 1024x700 screen beside the panels
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
        self.mask_opacity = 0.0        # the red tint over the mask; 0: outline and hatching only
        self.mask_visible = True       # the artist's "Show mask (M)": the overlay, not the editing
        self.token_grid: tuple[int, int] | None = None     # the model's token rows and columns
        self.show_token_grid = False
        self._stroking = False
        self._hover: QPointF | None = None
        self._press: QPointF | None = None          # where a left-button drag out may start
        self.setMouseTracking(True)

    def set_mask(self, state, show: bool = True) -> None:
        self.mask_state, self.show_mask = state, show and state is not None
        self.update()

    def set_mask_visible(self, on: bool) -> None:
        self.mask_visible = on
        self.update()

    def set_mask_opacity(self, opacity: float) -> None:
        self.mask_opacity = opacity
        self.update()

    def set_token_grid(self, rows: int, cols: int) -> None:
        """The loaded model's token grid (rows x cols over the image)."""
        self.token_grid = (rows, cols)
        self.update()

    def set_token_grid_visible(self, on: bool) -> None:
        self.show_token_grid = on
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
        # the caption has a band of its own above the image, so it never hides the image's top rows
        top = self.fontMetrics().height() + 10 if self.caption else 0
        h = self.height() - top
        side = min(self.width(), h) * 0.92 * self.zoom
        c = QPointF(self.width() / 2, top + h / 2) + self.pan
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
                if self.mask_visible:
                    self._paint_mask(p, r, self.mask_state.mask)
                if self.show_token_grid and self.token_grid is not None:
                    self._paint_token_grid(p, r, self.mask_state.mask)
                if self._hover is not None:
                    rad = self.brush * r.width() / self.mask_state.size
                    p.setBrush(Qt.BrushStyle.NoBrush)
                    p.setPen(QPen(DARK, 3))
                    p.drawEllipse(self._hover, rad, rad)
                    p.setPen(QPen(LIGHT, 1))
                    p.drawEllipse(self._hover, rad, rad)
            p.setPen(QPen(pal.mid().color(), 1))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(r)
        if self.caption:
            # on a plate of the canvas colour: readable over a light or a dark image
            fm = p.fontMetrics()
            text = fm.elidedText(self.caption, Qt.TextElideMode.ElideRight, self.width() - 24)
            plate = QRectF(6, 4, fm.horizontalAdvance(text) + 12, fm.height() + 4)
            p.setPen(Qt.PenStyle.NoPen)
            bg = pal.window().color().darker(110)
            p.setBrush(QColor(bg.red(), bg.green(), bg.blue(), 210))
            p.drawRoundedRect(plate, 4, 4)
            p.setPen(pal.text().color())
            p.drawText(plate, Qt.AlignmentFlag.AlignCenter, text)
        p.end()
        self.painted.emit(time.perf_counter())

    def _paint_mask(self, p: QPainter, r: QRectF, m: np.ndarray) -> None:
        """The mask as a region: an optional tint, light diagonal hatching and a two-tone outline, so the colours of
        most masked pixels are seen as they are."""
        h, w = m.shape
        sx, sy = r.width() / w, r.height() / h
        region = QRegion()
        for y in range(h):
            row = np.flatnonzero(np.diff(np.concatenate(([0], m[y].astype(np.int8), [0]))))
            for x0, x1 in zip(row[::2], row[1::2]):
                region += QRect(round(r.left() + x0 * sx), round(r.top() + y * sy),
                                round(r.left() + x1 * sx) - round(r.left() + x0 * sx),
                                round(r.top() + (y + 1) * sy) - round(r.top() + y * sy))
        if region.isEmpty():
            return
        p.save()
        p.setClipRegion(region)
        if self.mask_opacity > 0:
            p.fillRect(r, QColor(MASK_RED.red(), MASK_RED.green(), MASK_RED.blue(), int(255 * self.mask_opacity)))
        p.setPen(QPen(QColor(MASK_RED.red(), MASK_RED.green(), MASK_RED.blue(), 150), 1))
        step = 9
        top, left, side = r.top(), r.left(), int(r.width() + r.height())
        for k in range(0, side, step):
            p.drawLine(QPointF(left + k, top), QPointF(left + k - r.height(), top + r.height()))
        p.restore()
        # the outline: the mask's edges, dark under light
        path = QPainterPath()
        edges_v = np.diff(np.pad(m, ((0, 0), (1, 1))).astype(np.int8), axis=1) != 0    # (h, w + 1)
        edges_h = np.diff(np.pad(m, ((1, 1), (0, 0))).astype(np.int8), axis=0) != 0    # (h + 1, w)
        for y, x in zip(*np.nonzero(edges_v)):
            path.moveTo(left + x * sx, top + y * sy)
            path.lineTo(left + x * sx, top + (y + 1) * sy)
        for y, x in zip(*np.nonzero(edges_h)):
            path.moveTo(left + x * sx, top + y * sy)
            path.lineTo(left + (x + 1) * sx, top + y * sy)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(DARK, 3))
        p.drawPath(path)
        p.setPen(QPen(MASK_RED.lighter(140), 1))
        p.drawPath(path)

    def _paint_token_grid(self, p: QPainter, r: QRectF, m: np.ndarray) -> None:
        """The model's token grid, with the tokens the mask touches outlined (they are redrawn whole)."""
        rows, cols = self.token_grid
        p.save()
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(QColor(255, 255, 255, 70), 1))
        for i in range(1, cols):
            x = r.left() + r.width() * i / cols
            p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        for j in range(1, rows):
            y = r.top() + r.height() * j / rows
            p.drawLine(QPointF(r.left(), y), QPointF(r.right(), y))
        tw, th = r.width() / cols, r.height() / rows
        for j, i in zip(*np.nonzero(token_mask(m, rows, cols))):
            cell = QRectF(r.left() + i * tw, r.top() + j * th, tw, th).adjusted(1.5, 1.5, -1.5, -1.5)
            p.setPen(QPen(DARK, 3))
            p.drawRect(cell)
            p.setPen(QPen(QColor(255, 196, 0), 1))
            p.drawRect(cell)
        p.restore()

    # -- drag out ----------------------------------------------------------------------------------------------
    def drag_mime(self) -> QMimeData | None:
        """The image on the canvas for another application: the image itself and a PNG file in a temp folder."""
        if self.image is None:
            return None
        path = drag_folder() / f"gridar-{int(time.time() * 1000)}.png"
        if not self.image.save(str(path), "PNG"):
            path = None
        data = QMimeData()
        data.setImageData(self.image)
        if path is not None:
            data.setUrls([QUrl.fromLocalFile(str(path))])
        return data

    def _drag_out(self) -> None:
        data = self.drag_mime()
        if data is None:
            return
        drag = QDrag(self)
        drag.setMimeData(data)
        drag.setPixmap(QPixmap.fromImage(self.image.scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio)))
        drag.exec(Qt.DropAction.CopyAction)

    def wheelEvent(self, e) -> None:  # noqa: N802
        self.zoom = float(np.clip(self.zoom * (1.15 if e.angleDelta().y() > 0 else 1 / 1.15), 0.25, 16))
        self.update()

    def _can_drag_out(self, e) -> bool:
        # in edit mode the left button paints: a drag out then needs Alt
        alt = bool(e.modifiers() & Qt.KeyboardModifier.AltModifier)
        return self.image is not None and e.button() == Qt.MouseButton.LeftButton and (not self.show_mask or alt)

    def mousePressEvent(self, e) -> None:  # noqa: N802
        if self._can_drag_out(e):
            self._press = e.position()
            return
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
        if self._press is not None:
            if (e.position() - self._press).manhattanLength() >= QApplication.startDragDistance():
                self._press = None
                self._drag_out()
            return
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
        self._press = None

    def leaveEvent(self, _e) -> None:  # noqa: N802
        self._hover = None
        self.update()

    def mouseDoubleClickEvent(self, _e) -> None:  # noqa: N802
        self.reset_view()
