"""The Help menu's windows: what the loaded model understands, every keyboard shortcut, and About.

All three are non-modal (the artist keeps working beside them), close with Esc, and are returned so the window can
keep them alive. Their contents are read from where the truth lives: the language sheet from the model's declared
prompt language, the shortcut table from the window's own actions and buttons, About from the paths the window
uses, so none of them can go stale.
"""
from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractButton, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QListWidget, QPushButton, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from ... import __version__

ANY_TEXT = ("This model takes any text: describe the picture in your own words. There is no fixed list of words "
            "it knows.")


def _reuse(parent: QWidget | None, name: str, key: object = None) -> QDialog | None:
    """An open help window of this kind (and for the same `key`), raised to the front instead of a second copy."""
    if parent is None:
        return None
    for d in parent.findChildren(QDialog, name):
        if d.isVisible() and d.property("help_key") == key:
            d.raise_()
            d.activateWindow()
            return d
    return None


def _dialog(parent: QWidget | None, name: str, title: str, key: object = None) -> QDialog:
    d = QDialog(parent)
    d.setObjectName(name)
    d.setWindowTitle(title)
    d.setModal(False)
    d.setProperty("help_key", key)
    return d


def _close_row(d: QDialog, layout: QVBoxLayout, *extra: QPushButton) -> None:
    box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    for b in extra:
        box.addButton(b, QDialogButtonBox.ButtonRole.ActionRole)
    box.rejected.connect(d.reject)                    # Close and Esc both reject: the dialog only hides
    layout.addWidget(box)


# -- What can I type? ------------------------------------------------------------------------------------------
class LanguageSheet(QDialog):
    """The cheat-sheet of a model's prompt language. A click on an example emits `example_chosen` with its text
    (the window puts it into the prompt box); Copy (or Ctrl+C) puts it on the clipboard."""

    example_chosen = Signal(str)

    def __init__(self, parent: QWidget | None, language: str | None) -> None:
        super().__init__(parent)
        self.setObjectName("language-sheet")
        self.setWindowTitle("What can I type?")
        self.setModal(False)
        self.setProperty("help_key", language)
        self.language = language
        intro, rows, examples = _parse_sheet(_describe(language))
        layout = QVBoxLayout(self)
        self.intro = QLabel("\n".join(intro) if (intro or rows or examples) else ANY_TEXT)
        self.intro.setWordWrap(True)
        self.intro.setTextFormat(Qt.TextFormat.PlainText)      # the sheet writes <count>, which is not HTML
        self.intro.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.intro)
        form = QFormLayout()
        self.rows: dict[str, QLabel] = {}
        for name, text in rows:
            value = QLabel(text)
            value.setTextFormat(Qt.TextFormat.PlainText)
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            title = QLabel(name)
            title.setObjectName("heading")
            form.addRow(title, value)
            self.rows[name] = value
        layout.addLayout(form)
        self.examples = QListWidget()
        self.examples.addItems(examples)
        self.examples.setToolTip("Click an example to put it in the prompt box; Copy (Ctrl+C) copies it")
        self.examples.setWordWrap(True)
        self.examples.itemClicked.connect(lambda item: self.example_chosen.emit(item.text()))
        self.examples.itemActivated.connect(lambda item: self.example_chosen.emit(item.text()))
        self.copy_btn = QPushButton("Copy")
        self.copy_btn.setToolTip("Copy the selected example to the clipboard")
        self.copy_btn.clicked.connect(self.copy_example)
        QShortcut(QKeySequence.StandardKey.Copy, self.examples, activated=self.copy_example,
                  context=Qt.ShortcutContext.WidgetShortcut)
        if examples:
            layout.addWidget(QLabel("<b>Examples</b> (click one to use it)"))
            layout.addWidget(self.examples, 1)
            self.examples.setCurrentRow(0)
        else:
            self.examples.hide()
            self.copy_btn.hide()
        _close_row(self, layout, self.copy_btn)
        self.resize(560, 520)

    def copy_example(self) -> None:
        item = self.examples.currentItem()
        if item is not None:
            QGuiApplication.clipboard().setText(item.text())


def _describe(language: str | None) -> str:
    from ...engine.prompt_language import describe_language
    return describe_language(language) if language else ""


def _parse_sheet(text: str) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """describe_language's plain text as (intro lines, (heading, text) rows, examples): 'Name: text' lines become
    rows, the lines after 'Examples:' become examples, any other line stays prose."""
    intro: list[str] = []
    rows: list[tuple[str, str]] = []
    examples: list[str] = []
    in_examples = False
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.rstrip(":").lower() == "examples" and s.endswith(":"):
            in_examples = True
        elif in_examples:
            examples.append(s)
        elif (m := re.match(r"^([A-Z][^:]{0,40}):\s+(.+)$", s)) is not None:
            rows.append((m.group(1), m.group(2)))
        else:
            intro.append(s)
    return intro, rows, examples


def show_language_sheet(parent: QWidget | None, language: str | None) -> QDialog:
    """Show what the loaded model understands (a model with no declared language takes any text). When `parent`
    has a prompt box (`parent.controls.prompt`) a clicked example goes into it, unless a run holds it read-only."""
    again = _reuse(parent, "language-sheet", language)
    if again is not None:
        return again
    sheet = LanguageSheet(parent, language)
    prompt = getattr(getattr(parent, "controls", None), "prompt", None)
    if isinstance(prompt, QLineEdit):
        def use(text: str) -> None:
            if not prompt.isReadOnly():
                prompt.setText(text)
        sheet.example_chosen.connect(use)
    sheet.show()
    return sheet


# -- Keyboard shortcuts ----------------------------------------------------------------------------------------
def _plain(text: str) -> str:
    """Menu text without its '&' mnemonic markers and trailing dots."""
    return re.sub(r"&(.)", r"\1", text).replace("...", "").replace("\u2026", "").strip()


def _area(obj: QObject | None) -> str:
    """Where a shortcut lives, in words: the nearest of our own panels above it ('Controls', 'Edit panel'), or
    a widget's accessible name; Qt's generic containers say nothing, so they are skipped."""
    while obj is not None:
        if isinstance(obj, QWidget) and obj.accessibleName():
            return obj.accessibleName()
        cls = type(obj).__name__
        if cls == "MainWindow":
            return "Window"
        if not cls.startswith("Q"):
            return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", cls).capitalize()
        obj = obj.parent()
    return "Window"


def _button_text(text: str) -> str:
    """A button's label without the key hint it may carry ('Show mask (M)' -> 'Show mask')."""
    return re.sub(r"\s*\([^()]{1,12}\)$", "", _plain(text))


def _described_nearby(panel: QObject | None, key: str) -> str:
    """A QShortcut that carries no whatsThis is described by the control beside it whose tooltip names its key in
    brackets ('Keep this candidate (K)'), with the bracket dropped."""
    if not isinstance(panel, QWidget):
        return ""
    mark = f"({key})"
    for w in panel.findChildren(QWidget):
        tip = w.toolTip()
        if mark in tip:
            return re.sub(r"\s+", " ", tip.split(mark)[0]).strip(" .")
    return ""


def _keys(seqs: list[QKeySequence]) -> str:
    return ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in seqs if not s.isEmpty())


def collect_shortcuts(window: QWidget) -> list[tuple[str, str, str]]:
    """Every keyboard shortcut reachable in `window`, as (keys, what it does, where), read from its QActions (menus
    included), QShortcuts and buttons. A QShortcut describes itself with its whatsThis text."""
    rows: list[tuple[str, str, str]] = []
    seen: set[int] = set()

    def ours(w: QObject | None) -> bool:         # not the help windows' own keys (they are children too)
        return isinstance(w, QWidget) and w.window() is window

    actions = list(window.findChildren(QAction))
    for w in [window, *window.findChildren(QWidget)]:
        if ours(w):
            actions += w.actions()
    for a in actions:
        if id(a) in seen or not _keys(a.shortcuts()):
            continue
        seen.add(id(a))
        what = _plain(a.text()) or a.toolTip() or a.statusTip()
        menus = [w for w in a.associatedObjects() if type(w).__name__ == "QMenu"]
        where = f"{_plain(menus[0].title())} menu" if menus else _area(a.parent())
        rows.append((_keys(a.shortcuts()), what, where))
    for s in window.findChildren(QShortcut):
        if not _keys([s.key()]) or not ours(s.parent()):
            continue
        key = _keys([s.key()])
        what = s.whatsThis() or _described_nearby(s.parent(), key) or "(no description)"
        rows.append((key, what, _area(s.parent())))
    for b in window.findChildren(QAbstractButton):
        if not _keys([b.shortcut()]) or not ours(b):
            continue
        what = _button_text(b.text()) or b.toolTip() or b.accessibleName()
        rows.append((_keys([b.shortcut()]), what, _area(b.parent())))
    return sorted(rows, key=lambda r: (r[2], r[0]))


def show_shortcuts(parent: QWidget) -> QDialog:
    """A table of every shortcut of `parent`'s window, collected from its widgets when opened."""
    again = _reuse(parent, "shortcuts")
    if again is not None:
        return again
    d = _dialog(parent, "shortcuts", "Keyboard shortcuts")
    layout = QVBoxLayout(d)
    rows = collect_shortcuts(parent.window() if parent is not None else parent)
    table = QTableWidget(len(rows), 3)
    table.setObjectName("shortcut-table")
    table.setHorizontalHeaderLabels(["Keys", "What it does", "Where"])
    table.verticalHeader().hide()
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            table.setItem(r, c, item)
    table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
    table.resizeColumnToContents(0)
    table.resizeColumnToContents(2)
    table.resizeRowsToContents()
    layout.addWidget(QLabel("Keys that only work in one place (the review keys, the brush keys) work while that "
                            "panel is showing."))
    layout.addWidget(table, 1)
    _close_row(d, layout)
    d.table = table
    d.resize(620, 560)
    d.show()
    return d


# -- About -----------------------------------------------------------------------------------------------------
def _open_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass                                     # opening will then fail visibly in the file manager
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


def show_about(parent: QWidget | None, details: dict) -> QDialog:
    """Version, the model loaded, the device, and where history, settings and logs live (selectable paths with a
    button to open each folder). `details` maps a plain name to its value; names ending in 'folder' or 'file'
    are paths."""
    again = _reuse(parent, "about")
    if again is not None:
        again.close()
    d = _dialog(parent, "about", "About GridAR Desktop")
    layout = QVBoxLayout(d)
    head = QLabel(f"<b>GridAR Desktop</b> {details.get('version', __version__)}<br>Draws and edits images with "
                  "an image model on this computer, band by band, with you choosing what to keep.")
    head.setWordWrap(True)
    layout.addWidget(head)
    form = QFormLayout()
    d.fields: dict[str, QLineEdit] = {}
    d.open_buttons: dict[str, QPushButton] = {}
    for name, value in details.items():
        if name == "version":
            continue
        text = "" if value is None else str(value)
        field = QLineEdit(text)
        field.setReadOnly(True)                       # selectable and copyable, never edited here
        field.setCursorPosition(0)
        field.setToolTip(text)
        d.fields[name] = field
        if name.endswith(("folder", "file")) and text:
            row = QHBoxLayout()
            row.addWidget(field, 1)
            folder = Path(text) if name.endswith("folder") else Path(text).parent
            btn = QPushButton("Open folder")
            btn.setToolTip(f"Show {folder} in the file manager")
            btn.clicked.connect(lambda _=False, f=folder: _open_folder(f))
            d.open_buttons[name] = btn
            row.addWidget(btn)
            form.addRow(name[:1].upper() + name[1:], row)
        else:
            form.addRow(name[:1].upper() + name[1:], field)
    layout.addLayout(form)
    layout.addStretch(1)
    _close_row(d, layout)
    d.resize(640, 300)
    d.show()
    return d
