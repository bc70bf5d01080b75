"""A one-line label that never asks for more width than it is given: a long text is cut with "..." and shown whole
in the tooltip. Headings and captions use it so a long text cannot make the window grow."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy


class ElidedLabel(QLabel):
    def __init__(self, text: str = "", parent=None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._own_tip = ""
        self._sync_tip()

    def setText(self, text: str) -> None:  # noqa: N802 (Qt naming)
        super().setText(text)
        self._sync_tip()

    def setToolTip(self, tip: str) -> None:  # noqa: N802
        self._own_tip = tip
        self._sync_tip()

    def _sync_tip(self) -> None:
        # the full text is in the tooltip only when it does not fit (or a tooltip of its own was given)
        full = self.text()
        cut = self.fontMetrics().horizontalAdvance(full) > max(1, self.contentsRect().width())
        super().setToolTip(self._own_tip or (full if cut else ""))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(0, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(min(super().sizeHint().width(), 200), super().sizeHint().height())

    def resizeEvent(self, e) -> None:  # noqa: N802
        super().resizeEvent(e)
        self._sync_tip()

    def paintEvent(self, _e) -> None:  # noqa: N802
        p = QPainter(self)
        r = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, r.width())
        p.setPen(self.palette().windowText().color())
        p.drawText(r, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)
        p.end()
