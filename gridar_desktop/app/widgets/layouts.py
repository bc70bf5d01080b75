"""The layout panel: each live candidate's reformulated prompt, editable before the next band grows. The original
prompt is shown once above; each row holds only its candidate's layout clause (what the reformulator appended), so
long prompts stay readable; the full prompt is in the row's tooltip. The rows scroll, and no text asks for more
width than the panel has, so layouts appearing never make the window grow."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFormLayout, QFrame, QHBoxLayout, QLabel, QLineEdit, QPushButton, QScrollArea,
                               QSizePolicy, QVBoxLayout, QWidget)

from .elided import ElidedLabel


class LayoutPanel(QWidget):
    continue_clicked = Signal(list)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        self.heading = ElidedLabel("Layout")
        self.heading.setObjectName("heading")
        self.continue_btn = QPushButton("Grow next band")
        self.continue_btn.setToolTip("Use these prompts for the next band (Ctrl+G)")
        self.continue_btn.setShortcut("Ctrl+G")
        head.addWidget(self.heading, 1)
        head.addWidget(self.continue_btn)
        outer.addLayout(head)
        self.original_label = QLabel("")
        self.original_label.setWordWrap(True)
        self.original_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        outer.addWidget(self.original_label)
        self.original: str | None = None
        rows = QWidget()
        self.form = QFormLayout(rows)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        scroll = QScrollArea()
        scroll.setWidget(rows)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Expanding)
        outer.addWidget(scroll, 1)
        self.edits: list[QLineEdit] = []
        self.continue_btn.setEnabled(False)
        self.continue_btn.clicked.connect(lambda: self.continue_clicked.emit(self.prompts()))

    def show_layouts(self, stage: int, prompts: list[str], editable: bool, original: str | None = None) -> None:
        if original is not None and not all(p.startswith(original) for p in prompts):
            original = None
        self.original = original
        self.original_label.setText(f"Prompt: {original}" if original else "")
        self.original_label.setVisible(bool(original))
        while len(self.edits) < len(prompts):
            e = QLineEdit()
            e.setPlaceholderText("no layout clause")
            e.setMinimumWidth(40)
            self.form.addRow(f"{len(self.edits) + 1}", e)
            self.edits.append(e)
        for i, e in enumerate(self.edits):
            visible = i < len(prompts)
            self.form.setRowVisible(i, visible)
            if visible:
                e.setText(prompts[i][len(original):].lstrip(", ") if original else prompts[i])
                e.setToolTip(prompts[i])
                e.setReadOnly(not editable)
                e.setCursorPosition(0)
        what = "Edit the layout of each candidate" if editable else "Reformulated prompts"
        self.heading.setText(f"{what} (after band {stage + 1})")
        self.continue_btn.setEnabled(editable)

    def clear(self) -> None:
        for i in range(len(self.edits)):
            self.form.setRowVisible(i, False)
        self.original_label.setText("")
        self.original_label.setVisible(False)
        self.heading.setText("Layout")
        self.continue_btn.setEnabled(False)

    def set_idle(self) -> None:
        self.continue_btn.setEnabled(False)
        for e in self.edits:
            e.setReadOnly(True)

    def prompts(self) -> list[str]:
        """Full prompts: the original plus each row's clause (a row may also hold a whole prompt)."""
        out = []
        for i, e in enumerate(self.edits):
            if not self.form.isRowVisible(i):
                continue
            text = e.text().strip()
            if self.original is None or text.startswith(self.original):
                out.append(text)
            else:
                out.append(f"{self.original}, {text}" if text else self.original)
        return out
