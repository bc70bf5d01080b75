"""The Help menu's windows on the real studio window: what can I type, keyboard shortcuts, About."""
import pytest

pytest.importorskip("PySide6")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QKeySequence, QShortcut  # noqa: E402
from PySide6.QtWidgets import QLabel, QLineEdit  # noqa: E402

from gridar_desktop import __version__  # noqa: E402
from gridar_desktop.app.widgets import help_dialogs  # noqa: E402
from gridar_desktop.shapes import grammar  # noqa: E402


def dialog_text(d) -> str:
    parts = [lbl.text() for lbl in d.findChildren(QLabel)] + [f.text() for f in d.findChildren(QLineEdit)]
    sheet_examples = getattr(d, "examples", None)
    if sheet_examples is not None:
        parts += [sheet_examples.item(i).text() for i in range(sheet_examples.count())]
    return "\n".join(parts)


def click_item(qtbot, lst, row: int) -> None:
    rect = lst.visualItemRect(lst.item(row))
    qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_language_sheet_names_every_word_and_an_example_click_fills_the_prompt(qtbot, window):
    w = window
    d = help_dialogs.show_language_sheet(w, "shapes")
    qtbot.waitExposed(d)
    assert d.isVisible() and not d.isModal()
    text = dialog_text(d)
    for word in (*grammar.COLOURS, *grammar.SHAPES, *grammar.COUNT_WORDS, *grammar.REGIONS,
                 *grammar.RELATION_PHRASES.values()):
        assert word in text, f"{word!r} missing from the language sheet"
    examples = [d.examples.item(i).text() for i in range(d.examples.count())]
    assert len(examples) >= 3
    for e in examples:
        grammar.parse_prompt(e)               # every example is itself a prompt the model understands
    w.controls.prompt.setText("")
    click_item(qtbot, d.examples, 1)
    assert w.controls.prompt.text() == examples[1]
    d.examples.setCurrentRow(2)
    qtbot.mouseClick(d.copy_btn, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == examples[2]
    # asking again raises the open sheet instead of stacking a second one
    assert help_dialogs.show_language_sheet(w, "shapes") is d
    qtbot.keyClick(d, Qt.Key.Key_Escape)
    assert not d.isVisible()


def test_language_sheet_of_a_model_without_a_language_says_any_text(qtbot, window):
    d = help_dialogs.show_language_sheet(window, None)
    assert help_dialogs.ANY_TEXT in dialog_text(d)
    assert d.examples.isHidden() and not any(c in dialog_text(d) for c in grammar.COLOURS)
    d.close()


def test_shortcut_table_lists_every_key_of_the_window_read_from_its_widgets(qtbot, window):
    w = window
    d = help_dialogs.show_shortcuts(w)
    qtbot.waitExposed(d)
    assert not d.isModal()
    rows = [tuple(d.table.item(r, c).text() for c in range(3)) for r in range(d.table.rowCount())]
    keys = {r[0] for r in rows}
    for k in ("Ctrl+S", "Ctrl+O", "Esc", "Ctrl+Return", "Ctrl+Z", "1", "8", "K", "A", "[", "]"):
        assert any(k in key.split(", ") for key in keys), f"{k} missing from {sorted(keys)}"
    by_key = {r[0]: r for r in rows}
    assert by_key["Ctrl+S"][1] == "Save" and by_key["Ctrl+S"][2] == "File menu"
    assert by_key["Esc"][1] == "Abort now"
    assert all(r[1] for r in rows), "every shortcut says what it does"
    qtbot.keyClick(d, Qt.Key.Key_Escape)
    assert not d.isVisible()
    # not a hard-coded list: a shortcut added to the window shows up the next time the table opens
    w.addAction(QAction("Frobnicate", w, shortcut="Ctrl+Alt+J"))
    QShortcut(QKeySequence("Ctrl+Alt+K"), w.controls, whatsThis="Knit the prompt")
    d2 = help_dialogs.show_shortcuts(w)
    rows2 = [tuple(d2.table.item(r, c).text() for c in range(3)) for r in range(d2.table.rowCount())]
    assert ("Ctrl+Alt+J", "Frobnicate", "Window") in rows2
    assert ("Ctrl+Alt+K", "Knit the prompt", "Controls") in rows2
    # the help windows' own keys (the sheet's Copy) are not the window's
    help_dialogs.show_language_sheet(w, "shapes")
    help_dialogs.show_shortcuts(w).close()
    d3 = help_dialogs.show_shortcuts(w)
    assert d3.table.rowCount() == d2.table.rowCount()
    d3.close()


def test_about_shows_version_model_device_and_where_files_live(qtbot, window, tmp_path, monkeypatch):
    w = window
    details = w.about_details() if hasattr(w, "about_details") else {
        "model": "demo", "device": "cpu", "history folder": str(tmp_path / "history"),
        "settings file": str(tmp_path / "config" / "settings.json"), "log folder": str(tmp_path / "log")}
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    d = help_dialogs.show_about(w, details)
    qtbot.waitExposed(d)
    assert not d.isModal()
    text = dialog_text(d)
    assert __version__ in text
    for name in ("history folder", "settings file", "log folder", "model", "device"):
        assert str(details[name]) in text, name
        assert d.fields[name].isReadOnly()
    qtbot.mouseClick(d.open_buttons["settings file"], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(d.open_buttons["history folder"], Qt.MouseButton.LeftButton)
    from pathlib import Path
    assert [Path(p) for p in opened] == [Path(details["settings file"]).parent, Path(details["history folder"])]
    assert Path(details["history folder"]).is_dir()     # made if missing, so the file manager can show it
    qtbot.keyClick(d, Qt.Key.Key_Escape)
    assert not d.isVisible()


def test_help_menu_opens_each_window(qtbot, window):
    w = window
    names = {"act_language": "language-sheet", "act_shortcuts": "shortcuts", "act_about": "about"}
    if not all(hasattr(w, a) for a in names):
        pytest.skip("the window's Help menu is not wired yet")
    for action, name in names.items():
        getattr(w, action).trigger()
        assert [d for d in w.findChildren(help_dialogs.QDialog, name) if d.isVisible()], name
