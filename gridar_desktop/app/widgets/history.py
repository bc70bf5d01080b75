"""The history panel: every finished generation of this and past sessions (PNG files with metadata in the
platform data folder); click one to restore its settings and image."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem


class HistoryPanel(QListWidget):
    open_requested = Signal(str)

    def __init__(self, folder: Path, parent=None) -> None:
        super().__init__(parent)
        self.folder = folder
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setIconSize(QSize(72, 72))
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMovement(QListWidget.Movement.Static)
        self.setToolTip("Past generations: click to restore settings and image")
        self.itemClicked.connect(lambda it: self.open_requested.emit(it.data(Qt.ItemDataRole.UserRole)))
        self.reload()

    def reload(self, limit: int = 200) -> None:
        self.clear()
        files = sorted(self.folder.glob("*.png"), reverse=True)[:limit] if self.folder.exists() else []
        for f in files:
            self._append(f)

    def _append(self, path: Path, front: bool = False) -> None:
        pm = QPixmap(str(path))
        if pm.isNull():
            return
        item = QListWidgetItem(QIcon(pm.scaled(72, 72, Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.FastTransformation)), "")
        item.setData(Qt.ItemDataRole.UserRole, str(path))
        item.setToolTip(path.stem)
        if front:
            self.insertItem(0, item)
        else:
            self.addItem(item)

    def add(self, path: Path) -> None:
        self._append(path, front=True)
