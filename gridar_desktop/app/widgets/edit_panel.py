"""The edit mode's tools: source image, fit, brush / eraser, size, feather, context, mask tint, token grid, invert,
clear, undo, redo, show / hide the mask."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout,
                               QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget)

from .controls import label_tips

SOURCE_CHARS = 60
NO_RESULT_TIP = "Nothing to edit yet: generate an image first"
RESULT_TIP = "Make the image on the canvas the new image to edit"


class EditPanel(QWidget):
    open_clicked = Signal()
    use_result_clicked = Signal()
    fit_changed = Signal(str)
    tool_changed = Signal(str)
    brush_changed = Signal(float)
    opacity_changed = Signal(float)
    invert_clicked = Signal()
    clear_clicked = Signal()
    undo_clicked = Signal()
    redo_clicked = Signal()
    show_mask_clicked = Signal()        # the mask is to be shown (the button was turned on)
    mask_visible_changed = Signal(bool)  # show / hide the mask overlay (M toggles)
    token_grid_changed = Signal(bool)   # show / hide the token grid while painting

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(9, 0, 9, 9)
        head = QLabel("Edit: paint what should change")
        head.setObjectName("heading")
        outer.addWidget(head)
        self.source = QLabel("No image yet: open or drop one")
        self.source.setWordWrap(True)
        outer.addWidget(self.source)
        row = QHBoxLayout()
        self.open = QPushButton("Open image...")
        self.open.setToolTip("Open a picture to edit (Ctrl+O); you can also drop one on the window")
        self.use_result = QPushButton("Edit the result")
        self.set_result_available(False)
        row.addWidget(self.open)
        row.addWidget(self.use_result)
        outer.addLayout(row)
        form = QFormLayout()
        self.fit = QComboBox()
        self.fit.addItem("Resize the whole image", "resize")
        self.fit.addItem("Crop the centre square", "crop")
        self.fit.setToolTip("How a picture that is not square is made to fit the model's square")
        form.addRow("Fit", self.fit)
        self.brush = QPushButton("Brush (B)")
        self.eraser = QPushButton("Eraser (E)")
        for b, key in ((self.brush, "B"), (self.eraser, "E")):
            b.setCheckable(True)
            b.setShortcut(key)
        self.brush.setToolTip("Paint over what should be redrawn (B)")
        self.eraser.setToolTip("Take parts out of the mask again (E)")
        self.brush.setChecked(True)
        group = QButtonGroup(self)
        group.setExclusive(True)
        group.addButton(self.brush)
        group.addButton(self.eraser)
        tools = QHBoxLayout()
        tools.addWidget(self.brush)
        tools.addWidget(self.eraser)
        form.addRow("Tool", tools)
        self.size = QSlider(Qt.Orientation.Horizontal)
        self.size.setRange(1, 48)
        self.size.setValue(4)
        self.size.setToolTip("Brush radius in image pixels ([ and ] change it)")
        form.addRow("Size", self.size)
        self.feather = QDoubleSpinBox()
        self.feather.setRange(0.0, 16.0)
        self.feather.setValue(2.0)
        self.feather.setSuffix(" px")
        self.feather.setToolTip("The seam between kept and redrawn pixels, blended inside the mask")
        form.addRow("Feather", self.feather)
        self.context = QComboBox()
        self.context.addItem("Mixed: half of each", "mixed")
        self.context.addItem("Keep what was there", "source")
        self.context.addItem("Clear the masked part", "cleared")
        self.context.setToolTip("What the kept image around the mask shows the model. 'Keep what was there' helps "
                                "give an object a new colour or shape; 'Clear' helps remove one; 'Mixed' draws "
                                "every other candidate each way and lets the verifier and the scorer choose")
        form.addRow("Context", self.context)
        # the mask is outlined and hatched so the colours under it can be judged; a tint is the artist's choice
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 90)
        self.opacity.setValue(0)
        self.opacity.setToolTip("Tint the masked part red. Off (all the way left) keeps its colours true: the "
                                "mask is then shown by its outline and light hatching")
        form.addRow("Mask tint", self.opacity)
        self.token_grid = QCheckBox("Show token grid")
        self.token_grid.setToolTip("The model redraws whole squares (tokens): a square is redrawn when any of its "
                                   "pixels is masked. The squares your mask touches are outlined")
        form.addRow("", self.token_grid)
        label_tips(form, {tools: "Brush (B) paints what should be redrawn, Eraser (E) takes it out again"})
        outer.addLayout(form)
        grid = QGridLayout()
        self.invert = QPushButton("Invert (I)")
        self.invert.setShortcut("I")
        self.invert.setToolTip("Swap what is masked and what is kept (I)")
        self.clear = QPushButton("Clear")
        self.clear.setToolTip("Empty the mask")
        self.undo = QPushButton("Undo")
        self.undo.setShortcut("Ctrl+Z")
        self.undo.setToolTip("Undo the last stroke (Ctrl+Z)")
        self.redo = QPushButton("Redo")
        self.redo.setShortcut("Ctrl+Shift+Z")
        self.redo.setToolTip("Redo (Ctrl+Shift+Z)")
        self.show_mask = QPushButton("Show mask (M)")
        self.show_mask.setCheckable(True)
        self.show_mask.setChecked(True)
        self.show_mask.setShortcut("M")
        self.show_mask.setToolTip("Show or hide the mask over the picture (M)")
        for i, b in enumerate((self.invert, self.clear, self.undo, self.redo)):
            grid.addWidget(b, i // 2, i % 2)
        grid.addWidget(self.show_mask, 2, 0, 1, 2)
        outer.addLayout(grid)
        self.coverage = QLabel("")
        outer.addWidget(self.coverage)
        # shortcuts on hidden buttons never fire: these are window-wide shortcuts instead
        self.smaller = QShortcut(QKeySequence("["), self, context=Qt.ShortcutContext.WindowShortcut)
        self.bigger = QShortcut(QKeySequence("]"), self, context=Qt.ShortcutContext.WindowShortcut)

        self.open.clicked.connect(self.open_clicked)
        self.use_result.clicked.connect(self.use_result_clicked)
        self.fit.currentIndexChanged.connect(lambda _: self.fit_changed.emit(self.fit.currentData()))
        self.brush.toggled.connect(lambda on: on and self.tool_changed.emit("brush"))
        self.eraser.toggled.connect(lambda on: on and self.tool_changed.emit("eraser"))
        self.size.valueChanged.connect(lambda v: self.brush_changed.emit(float(v)))
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100))
        self.invert.clicked.connect(self.invert_clicked)
        self.clear.clicked.connect(self.clear_clicked)
        self.undo.clicked.connect(self.undo_clicked)
        self.redo.clicked.connect(self.redo_clicked)
        self.show_mask.toggled.connect(self._on_show_mask)
        self.token_grid.toggled.connect(self.token_grid_changed)
        self.smaller.activated.connect(lambda: self.size.setValue(self.size.value() - self.size.singleStep()))
        self.bigger.activated.connect(lambda: self.size.setValue(self.size.value() + self.size.singleStep()))
        self.image_size = 64                # the model's resolution the brush's numbers are meant for

    def set_image_size(self, size: int) -> None:
        """The loaded model's resolution: the brush keeps its size relative to the image (4 px at the demo's 64 px
        is 24 px at Janus-Pro's 384), and its range and [ ] steps grow with it, so a 384 px image is not painted
        with a pen."""
        size = max(8, int(size))
        if size == self.image_size:
            return
        value = self.size.value() * size / self.image_size
        self.image_size = size
        self.size.setRange(1, max(48, size // 2))
        self.size.setSingleStep(max(1, size // 64))
        self.size.setPageStep(max(4, size // 16))
        self.size.setValue(max(1, round(value)))

    def _on_show_mask(self, on: bool) -> None:
        self.mask_visible_changed.emit(on)
        if on:
            self.show_mask_clicked.emit()

    def set_result_available(self, on: bool) -> None:
        """'Edit the result' only when there is a result to edit."""
        self.use_result.setEnabled(on)
        self.use_result.setToolTip(RESULT_TIP if on else NO_RESULT_TIP)

    def set_source(self, text: str) -> None:
        # a long file name cannot wrap: its middle is cut so the column keeps its width; the whole is in the tooltip
        half = SOURCE_CHARS // 2
        shown = text if len(text) <= SOURCE_CHARS else text[:half - 1] + "..." + text[-(half - 2):]
        self.source.setText(shown)
        self.source.setToolTip(text if shown != text else "")

    def set_state(self, can_undo: bool, can_redo: bool, coverage: float | None) -> None:
        self.undo.setEnabled(can_undo)
        self.redo.setEnabled(can_redo)
        self.coverage.setText("" if coverage is None else f"Mask covers {100 * coverage:.0f}% of the image")
