"""The history panel: every finished generation of this and past sessions (PNG files with metadata in the
platform data folder), each captioned with its prompt and time; click one to show it."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from ...io.png import ImageFileError, read_metadata

THUMB = 72
# the selected thumbnail is framed, never tinted: a tint over the image would misreport its colours
SELECTION_STYLE = ("QListWidget::item { border: 2px solid transparent; } "
                   "QListWidget::item:selected { border: 2px solid palette(highlight); background: transparent; "
                   "color: palette(text); }")


def framed_icon(pm: QPixmap) -> QIcon:
    """An icon that looks the same selected or not (Qt tints the selected mode's pixmap unless it is given)."""
    icon = QIcon()
    for mode in (QIcon.Mode.Normal, QIcon.Mode.Selected, QIcon.Mode.Active):
        icon.addPixmap(pm, mode)
    return icon


def entry_time(path: Path) -> dt.datetime:
    """When a history entry was made: its name is the time stamp; a renamed file falls back to its mtime."""
    try:
        return dt.datetime.strptime(path.stem[:15], "%Y%m%d-%H%M%S")
    except ValueError:
        return dt.datetime.fromtimestamp(path.stat().st_mtime)


def describe_entry(path: Path) -> tuple[str, str]:
    """(caption, tooltip) of a history entry: its prompt (shortened for the caption) and its time."""
    try:
        meta = read_metadata(path)
    except ImageFileError:
        meta = {}
    prompt = str(meta.get("prompt", "")) if isinstance(meta, dict) else ""
    settings = meta.get("settings", {}) if isinstance(meta, dict) else {}
    edit = isinstance(settings, dict) and "edit" in settings
    when = entry_time(path)
    short = prompt if len(prompt) <= 22 else prompt[:20] + "..."
    kind = "Edit" if edit else "Generated"
    tip = f"{kind} {when:%d %b %Y, %H:%M}\n{prompt or '(no prompt recorded)'}\nClick to show it"
    return f"{when:%H:%M}  {short}", tip


class HistoryPanel(QListWidget):
    open_requested = Signal(str)

    def __init__(self, folder: Path, parent=None) -> None:
        super().__init__(parent)
        self.folder = folder
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 40, THUMB + 40))
        self.setWordWrap(True)
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMovement(QListWidget.Movement.Static)
        self.setStyleSheet(SELECTION_STYLE)
        self.setToolTip("Past generations: click one to show it")
        self.itemClicked.connect(lambda it: self.open_requested.emit(it.data(Qt.ItemDataRole.UserRole)))
        self.reload()

    def reload(self, limit: int = 200) -> None:
        self.clear()
        files = sorted(self.folder.glob("*.png"), reverse=True)[:limit] if self.folder.exists() else []
        for f in files:
            self._append(f)

    def _thumb(self, path: Path) -> QPixmap | None:
        # read through QImage: QPixmap's file cache keys on the modification second and would show the old
        # thumbnail of an entry rewritten within the same second
        img = QImage(str(path))
        if img.isNull():
            return None
        return QPixmap.fromImage(img).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)

    def _append(self, path: Path, front: bool = False) -> None:
        pm = self._thumb(path)
        if pm is None:
            return
        caption, tip = describe_entry(path)
        item = QListWidgetItem(framed_icon(pm), caption)
        item.setData(Qt.ItemDataRole.UserRole, str(path))
        item.setToolTip(tip)
        if front:
            self.insertItem(0, item)
        else:
            self.addItem(item)

    def add(self, path: Path) -> None:
        self._append(path, front=True)

    def item_for(self, path: Path) -> QListWidgetItem | None:
        for i in range(self.count()):
            if self.item(i).data(Qt.ItemDataRole.UserRole) == str(path):
                return self.item(i)
        return None

    def refresh(self, path: Path) -> None:
        """The entry's file was rewritten (the artist chose another candidate): show its new image."""
        item, pm = self.item_for(path), self._thumb(path)
        if item is not None and pm is not None:
            item.setIcon(framed_icon(pm))
            caption, tip = describe_entry(path)
            item.setText(caption)
            item.setToolTip(tip)
