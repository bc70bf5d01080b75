"""The final view: the N finished candidates ranked by the scorer (for a GridAR edit with a value head, by the
scorer and the verdicts along each candidate's path); the artist may pick another."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from ..images import to_pixmap
from .history import SELECTION_STYLE, framed_icon


class FinalView(QListWidget):
    chosen = Signal(int)              # candidate index

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setIconSize(QSize(96, 96))
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setWrapping(False)
        self.setFixedHeight(150)
        self.setMovement(QListWidget.Movement.Static)
        self.setStyleSheet(SELECTION_STYLE)
        self.currentItemChanged.connect(self._on_current)

    def show_ranking(self, images: np.ndarray, scores: list[float], ranking: list[int],
                     value_weight: float = 0.0, chosen: int | None = None) -> None:
        """Show the ranking; `chosen` (a candidate index) is selected, else the best."""
        self.blockSignals(True)
        self.clear()
        for rank, i in enumerate(ranking):
            pm = to_pixmap(images[i]).scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio,
                                             Qt.TransformationMode.FastTransformation)
            item = QListWidgetItem(framed_icon(pm), f"#{rank + 1}  cand {i + 1}\nscore {scores[i]:.2f}")
            item.setData(Qt.ItemDataRole.UserRole, i)
            item.setToolTip(f"Score {scores[i]:.2f}: how sure the scorer is that this image matches the prompt" + (
                f"\nRanked by the score and the verifier's verdicts along this candidate's path (weight "
                f"{value_weight:g}): the verifier predicts how an edit ends" if value_weight > 0 else ""))
            self.addItem(item)
        row = list(ranking).index(chosen) if chosen in list(ranking) else 0
        self.setCurrentRow(row)
        self.blockSignals(False)

    def clear_quietly(self) -> None:
        """Empty the ranking without announcing a choice (what is shown belongs to something else now)."""
        self.blockSignals(True)
        self.clear()
        self.blockSignals(False)

    def _on_current(self, item, _prev) -> None:
        if item is not None:
            self.chosen.emit(int(item.data(Qt.ItemDataRole.UserRole)))
