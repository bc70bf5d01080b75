"""The layout panel: each live candidate's reformulated prompt, editable before the next band grows."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget


class LayoutPanel(QWidget):
    continue_clicked = Signal(list)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        self.heading = QLabel("Layout")
        self.heading.setObjectName("heading")
        self.continue_btn = QPushButton("Grow next band")
        self.continue_btn.setToolTip("Use these prompts for the next band (Ctrl+G)")
        self.continue_btn.setShortcut("Ctrl+G")
        head.addWidget(self.heading, 1)
        head.addWidget(self.continue_btn)
        outer.addLayout(head)
        self.form = QFormLayout()
        outer.addLayout(self.form)
        self.edits: list[QLineEdit] = []
        self.continue_btn.setEnabled(False)
        self.continue_btn.clicked.connect(lambda: self.continue_clicked.emit(self.prompts()))

    def show_layouts(self, stage: int, prompts: list[str], editable: bool) -> None:
        while len(self.edits) < len(prompts):
            e = QLineEdit()
            self.form.addRow(f"{len(self.edits) + 1}", e)
            self.edits.append(e)
        for i, e in enumerate(self.edits):
            visible = i < len(prompts)
            self.form.setRowVisible(i, visible)
            if visible:
                e.setText(prompts[i])
                e.setReadOnly(not editable)
                e.setCursorPosition(0)
        what = "Edit the layout of each candidate" if editable else "Reformulated prompts"
        self.heading.setText(f"{what} (after band {stage + 1})")
        self.continue_btn.setEnabled(editable)

    def clear(self) -> None:
        for i in range(len(self.edits)):
            self.form.setRowVisible(i, False)
        self.heading.setText("Layout")
        self.continue_btn.setEnabled(False)

    def set_idle(self) -> None:
        self.continue_btn.setEnabled(False)
        for e in self.edits:
            e.setReadOnly(True)

    def prompts(self) -> list[str]:
        return [e.text() for i, e in enumerate(self.edits) if self.form.isRowVisible(i)]
