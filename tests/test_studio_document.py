"""The document on screen, files, history and the window's wiring (issue 25), driven through the real window: key
presses and clicks on the real widgets, menu actions triggered. File dialogs and questions are the window's small
`_ask_*` / `_confirm` methods, replaced here so no modal dialog blocks a test."""
import json

import numpy as np
import pytest

pytest.importorskip("PySide6")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402

from conftest import wait  # noqa: E402
from gridar_desktop.app.studio import Studio  # noqa: E402
from gridar_desktop.app.window import MainWindow  # noqa: E402
from gridar_desktop.io.paths import config_dir, data_dir  # noqa: E402
from gridar_desktop.io.png import load_image, read_metadata, save_png  # noqa: E402

CTRL = Qt.KeyboardModifier.ControlModifier


def pixels(path) -> np.ndarray:
    return np.asarray(load_image(path))


def generate(qtbot, w, prompt="a red circle above a blue square", method="best-of-n", n=3):
    w.controls.prompt.setText(prompt)
    w.controls.method.setCurrentIndex(w.controls.method.findData(method))
    w.controls.n.setValue(n)
    w.controls.manual.setChecked(False)
    res = wait(qtbot, w.start_generation())
    assert res is not None
    return res


def answer_save_as(w, path, asked=None):
    """The save dialog answers `path` (and records the name it offered)."""
    def ask(title, default):
        if asked is not None:
            asked.append(default)
        return path
    w._ask_save_path = ask


def answer_open(w, path):
    w._ask_open_path = lambda: path


def press(qtbot, w, key, mods=Qt.KeyboardModifier.NoModifier):
    qtbot.keyClick(w.canvas, key, mods)


def click_ranked(qtbot, w, row):
    item = w.final.item(row)
    qtbot.mouseClick(w.final.viewport(), Qt.MouseButton.LeftButton, pos=w.final.visualItemRect(item).center())


def scene_png(path, prompt="a green triangle", settings=None, seed=4):
    from gridar_desktop.shapes.scene import make_scene
    img, _ = make_scene(prompt, seed, 64)
    meta = {"settings": settings} if settings is not None else None
    save_png(img, path, prompt if settings is not None else "", meta)
    return np.asarray(img.convert("RGB"))


# -- 1. the document on screen -----------------------------------------------------------------------------------

def test_ctrl_s_saves_the_opened_file_never_the_last_save(qtbot, window, tmp_path):
    """Save As a.png, open b.png, Ctrl+S: b.png is written with what is on screen (its metadata kept); a.png is
    untouched."""
    w = window
    res = generate(qtbot, w)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    b_pixels = scene_png(b, "a green triangle", {"seed": 5, "cfg": 3.5})
    answer_save_as(w, a)
    w.act_save_as.trigger()
    assert np.array_equal(pixels(a), res.images[res.best])
    assert w.windowTitle().startswith("a.png") and not w.isWindowModified()
    answer_open(w, b)
    w.act_open.trigger()
    assert w.windowTitle().startswith("b.png") and not w.isWindowModified()
    answer_save_as(w, None)                       # a save dialog now would be wrong: b.png has its own file
    a_before = a.read_bytes()
    press(qtbot, w, Qt.Key.Key_S, CTRL)
    assert a.read_bytes() == a_before
    assert np.array_equal(pixels(b), b_pixels)
    meta = read_metadata(b)
    assert meta["prompt"] == "a green triangle" and meta["settings"]["seed"] == 5 and meta["settings"]["cfg"] == 3.5


def test_choosing_another_candidate_is_what_save_and_history_keep(qtbot, window, tmp_path):
    w = window
    res = generate(qtbot, w, n=3)
    a = tmp_path / "a.png"
    answer_save_as(w, a)
    press(qtbot, w, Qt.Key.Key_S, CTRL)           # an unsaved run has no file: Ctrl+S asks for one
    assert not w.isWindowModified()
    other = res.ranking[2]
    click_ranked(qtbot, w, 2)
    assert w.isWindowModified() and "[*]" in w.windowTitle()
    answer_save_as(w, None)
    press(qtbot, w, Qt.Key.Key_S, CTRL)           # the same run: its own file, now with the chosen candidate
    assert np.array_equal(pixels(a), res.images[other]) and read_metadata(a)["chosen"] == other
    assert not w.isWindowModified()
    # the history entry of the run holds the chosen candidate too (rewritten, with `chosen` in its metadata)
    entry = w.history.item(0).data(Qt.ItemDataRole.UserRole)
    assert np.array_equal(pixels(entry), res.images[other]) and read_metadata(entry)["chosen"] == other
    assert len(list((data_dir() / "history").glob("*.png"))) == 1


def test_an_unsaved_run_is_offered_a_name_from_its_prompt(qtbot, window, tmp_path):
    w = window
    assert w.windowTitle() == "GridAR Desktop"
    generate(qtbot, w, prompt="a red circle above a blue square")
    assert "Untitled" in w.windowTitle() and w.isWindowModified()
    asked = []
    answer_save_as(w, None, asked)                # the artist cancels the dialog: nothing written
    press(qtbot, w, Qt.Key.Key_S, CTRL)
    assert asked and asked[0].name == "a-red-circle-above-a-blue-square.png"
    assert w.isWindowModified()


# -- 2. closing asks first ---------------------------------------------------------------------------------------

def test_closing_with_an_unsaved_result_asks_save_discard_cancel(qtbot, window, tmp_path):
    w = window
    questions = []

    def confirm(answer):
        def ask(text, can_save):
            questions.append((text, can_save))
            return answer
        return ask
    w._confirm = confirm("cancel")
    assert w._may_close() and not questions       # nothing on screen: nothing to lose, no question
    generate(qtbot, w)
    w.act_quit.trigger()
    assert questions and questions[-1][1] is True and "not saved" in questions[-1][0]
    assert w.isVisible()                          # Cancel keeps the window
    out = tmp_path / "kept.png"
    answer_save_as(w, out)
    w._confirm = confirm("save")
    w.close()
    assert out.exists() and not w.isVisible()


def test_closing_while_a_run_goes_on_asks_first(qtbot, window):
    w, s = window, window.studio
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    w.controls.manual.setChecked(True)
    task = w.start_generation()
    qtbot.waitUntil(lambda: s.waiting_for_artist, timeout=60000)
    asked = []
    w._confirm = lambda text, can_save: asked.append((text, can_save)) or "cancel"
    w.close()
    assert asked and asked[0][1] is False and w.isVisible() and s.busy      # the run goes on
    w._confirm = lambda text, can_save: "discard"
    w.close()
    assert wait(qtbot, task) is None and not w.isVisible()


# -- 3. history --------------------------------------------------------------------------------------------------

def test_history_thumbnails_show_prompt_and_time(qtbot, window):
    w = window
    generate(qtbot, w, prompt="two red circles and a blue square")
    item = w.history.item(0)
    assert "two red circles and a blue square" in item.toolTip()
    assert ":" in item.text() and item.text().split()[0].replace(":", "").isdigit()     # HH:MM caption


def test_clicking_an_edit_in_history_shows_its_result_and_edit_the_result_works(qtbot, window, tmp_path):
    from gridar_desktop.shapes.scene import make_scene
    w = window
    src = tmp_path / "photo.png"
    make_scene("a red circle and a blue square", 3, 64)[0].save(src)
    assert w.open_image(src) and w.controls.editing
    w.mask.set(np.zeros((64, 64), bool) | (np.arange(64)[:, None] < 32))
    res = generate(qtbot, w, prompt="a green circle and a blue square", n=2)
    shown = res.images[res.best]
    # another image goes on screen, then the artist goes back to the Generate tab and clicks the edit in history
    w.open_image(src)
    qtbot.mouseClick(w.controls.mode, Qt.MouseButton.LeftButton, pos=w.controls.mode.tabRect(0).center())
    assert not w.controls.editing
    item = w.history.item(0)
    qtbot.mouseClick(w.history.viewport(), Qt.MouseButton.LeftButton, pos=w.history.visualItemRect(item).center())
    assert np.array_equal(w.doc.current.image, shown) and w.canvas.image is not None
    assert not w.controls.editing
    qtbot.mouseClick(w.controls.mode, Qt.MouseButton.LeftButton, pos=w.controls.mode.tabRect(1).center())
    assert w.edit_panel.use_result.isEnabled()
    qtbot.mouseClick(w.edit_panel.use_result, Qt.MouseButton.LeftButton)
    assert np.array_equal(w.edit_source, shown)


def test_selection_is_a_border_never_a_tint(qtbot):
    """A pure red candidate stays pure red when selected (a tinted one reads maroon)."""
    from gridar_desktop.app.widgets.final import FinalView
    view = FinalView()
    qtbot.addWidget(view)
    view.resize(500, 150)
    view.show()
    red = np.zeros((2, 64, 64, 3), np.uint8)
    red[..., 0] = 255
    view.show_ranking(red, [0.9, 0.8], [0, 1])
    assert view.currentRow() == 0
    qtbot.wait(50)
    img = view.viewport().grab().toImage()
    centre = view.visualItemRect(view.item(0)).center()
    icon_centre = centre.x(), view.visualItemRect(view.item(0)).top() + 4 + 48
    c = img.pixelColor(*icon_centre)
    assert (c.red(), c.green(), c.blue()) == (255, 0, 0)


# -- 4. opening --------------------------------------------------------------------------------------------------

def test_a_gridar_png_opened_from_the_edit_tab_opens_for_editing(qtbot, window, tmp_path):
    w, c = window, window.controls
    g = tmp_path / "made.png"
    made = scene_png(g, "a green triangle", {"seed": 99, "cfg": 7.5, "method": "gridar", "n": 4})
    qtbot.mouseClick(c.mode, Qt.MouseButton.LeftButton, pos=c.mode.tabRect(1).center())
    assert c.editing
    c.cfg.setValue(2.0)
    c.random_seed.setChecked(False)
    c.seed.setValue(11)
    answer_open(w, g)
    qtbot.mouseClick(w.edit_panel.open, Qt.MouseButton.LeftButton)
    assert c.editing and c.cfg.value() == 2.0 and c.seed.value() == 11
    assert np.array_equal(w.edit_source, made) and w.edit_panel.source.text().startswith("made.png")
    # a drop on the Edit tab does the same
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent
    dropped = tmp_path / "dropped.png"
    other = scene_png(dropped, "a blue square", {"seed": 7, "cfg": 9.0}, seed=8)
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(dropped))])
    w.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                           Qt.KeyboardModifier.NoModifier))
    assert c.editing and c.cfg.value() == 2.0 and c.seed.value() == 11
    assert np.array_equal(w.edit_source, other) and not w.mask.mask.any()


def test_use_these_settings_changes_only_what_the_file_records(qtbot, window, tmp_path):
    w, c = window, window.controls
    g = tmp_path / "partial.png"
    scene_png(g, "a red circle", {"seed": 1234, "cfg": 3.5})
    c.method.setCurrentIndex(c.method.findData("best-of-n"))
    c.temperature.setValue(0.7)
    c.n.setValue(6)
    c.prompt.setText("mine")
    answer_open(w, g)
    w.act_open.trigger()
    assert c.prompt.text() == "mine" and c.cfg.value() != 3.5          # opening alone changes nothing
    assert w.act_use_settings.isEnabled()
    w.act_use_settings.trigger()
    assert c.prompt.text() == "a red circle" and c.cfg.value() == 3.5 and c.seed.value() == 1234
    assert c.temperature.value() == 0.7 and c.n.value() == 6 and c.method.currentData() == "best-of-n"


def test_metadata_problems_are_shown_and_the_image_still_opens(qtbot, window, tmp_path):
    w = window
    bad = tmp_path / "odd.png"
    scene_png(bad, "a red circle", {"seed": "many", "cfg": [1, 2]})
    answer_open(w, bad)
    w.act_open.trigger()
    assert w.doc.current is not None and w.canvas.image is not None
    text = w.banner.label.text()
    assert w.banner.isVisible() and "odd.png" in text and "seed" in text


# -- 5. nothing stale --------------------------------------------------------------------------------------------

def test_after_open_nothing_of_the_last_run_remains(qtbot, window, tmp_path):
    w = window
    generate(qtbot, w, method="gridar", n=4)
    assert w.final.count() == 4 and any(c.isVisible() for c in w.strip.cards)
    g = tmp_path / "other.png"
    scene_png(g, "a green triangle", {"seed": 3})
    answer_open(w, g)
    w.act_open.trigger()
    assert w.final.count() == 0 and not any(c.isVisible() for c in w.strip.cards)
    assert not w.layouts.original_label.isVisible()
    assert "a green triangle" in w.canvas.caption and "candidate" not in w.canvas.caption


def test_switching_tabs_during_a_run_leaves_the_run_alone(qtbot, window, tmp_path):
    w, s, c = window, window.studio, window.controls
    src = tmp_path / "photo.png"
    scene_png(src)
    assert w.open_image(src)                                       # an edit source waits on the Edit tab
    qtbot.mouseClick(c.mode, Qt.MouseButton.LeftButton, pos=c.mode.tabRect(0).center())
    c.prompt.setText("a red circle above a blue square")
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.manual.setChecked(True)
    task = w.start_generation()
    qtbot.waitUntil(lambda: s.waiting_for_artist and w.strip.continue_btn.isEnabled(), timeout=60000)
    qtbot.mouseClick(c.mode, Qt.MouseButton.LeftButton, pos=c.mode.tabRect(1).center())
    assert c.editing
    assert w.canvas.caption.startswith("candidate")                # still the run's bands, not the edit source
    c.manual.setChecked(False)
    s.manual = False
    w.strip.continue_btn.click()
    while not task.done():
        qtbot.waitUntil(lambda: task.done() or w.layouts.continue_btn.isEnabled() or
                        (s.waiting_for_artist and w.strip.continue_btn.isEnabled()), timeout=60000)
        if w.layouts.continue_btn.isEnabled():
            w.layouts.continue_btn.click()
        elif s.waiting_for_artist:
            w.strip.continue_btn.click()
    res = task.result()
    assert res is not None and res.request.edit is None
    assert w.doc.current.kind == "run" and "edit" not in w.doc.current.metadata["settings"]
    assert "edit" not in read_metadata(w.history.item(0).data(Qt.ItemDataRole.UserRole))["settings"]


def test_a_refused_prompt_keeps_the_result_on_screen(qtbot, window):
    w = window
    res = generate(qtbot, w)
    w.controls.prompt.setText("a purple dragon")
    qtbot.mouseClick(w.controls.generate, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=10000)
    assert "dragon" in w.banner.label.text()
    assert w.canvas.image is not None and w.final.count() == res.request.n
    assert np.array_equal(w.doc.current.image, res.images[res.best]) and not w.studio.busy


def test_cancelling_the_model_folder_dialog_keeps_the_loaded_model_in_the_box(qtbot, window, model_dir,
                                                                              monkeypatch):
    w, box = window, window.controls.model
    monkeypatch.setattr(w, "_ask_model_folder", lambda: "")
    assert box.currentData() == model_dir
    browse = box.findData("")
    box.setCurrentIndex(browse)
    box.activated.emit(browse)                    # what choosing "Open model folder..." in the list sends
    assert box.currentData() == model_dir


# -- 6. export ---------------------------------------------------------------------------------------------------

def test_export_upscaled_nearest_and_the_size_is_remembered(qtbot, window, tmp_path):
    w = window
    res = generate(qtbot, w, prompt="a red circle")
    w.act_scales[8].trigger()
    asked = []
    out = tmp_path / "big.png"
    answer_save_as(w, out, asked)
    w.act_export.trigger()
    assert asked[0].name == "a-red-circle-8x.png"
    big = pixels(out)
    small = res.images[res.best]
    assert big.shape == (512, 512, 3) and np.array_equal(big, small.repeat(8, 0).repeat(8, 1))
    assert not w.isWindowModified() or w.doc.current.path is None    # the document is not the export
    w.save_settings()
    assert json.loads((config_dir() / "settings.json").read_text())["export_scale"] == 8
    again = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(again)
    assert again.export_scale == 8 and again.act_scales[8].isChecked()
    again.confirm_close = False


def test_ctrl_c_copies_the_image_on_screen(qtbot, window):
    w = window
    res = generate(qtbot, w)
    QGuiApplication.clipboard().clear()
    w.canvas.setFocus()
    press(qtbot, w, Qt.Key.Key_C, CTRL)
    img = QGuiApplication.clipboard().image().convertToFormat(QGuiApplication.clipboard().image().Format.Format_RGB888)
    assert not img.isNull() and (img.width(), img.height()) == (64, 64)
    got = np.frombuffer(img.constBits(), np.uint8).reshape(64, img.bytesPerLine())[:, :192].reshape(64, 64, 3)
    assert np.array_equal(got, res.images[res.best])


# -- 7. wiring ---------------------------------------------------------------------------------------------------

def test_esc_says_aborting_at_once_and_the_bar_counts_bands(qtbot, window):
    w, s, c = window, window.studio, window.controls
    from gridar_desktop.engine import events as ev
    messages, totals = [], []
    w.statusBar().messageChanged.connect(messages.append)
    s.engine_event.connect(lambda e: isinstance(e, ev.BandStarted) and totals.append(e.total))
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.manual.setChecked(True)
    task = w.start_generation()
    qtbot.waitUntil(lambda: s.waiting_for_artist, timeout=60000)
    assert totals[0] > 1 and any(f"band 1 of {totals[0]}" in m for m in messages), messages
    seen = []                       # each message with the buttons' state at that moment
    w.statusBar().messageChanged.connect(lambda m: seen.append((m, c.generate.isEnabled(), c.abort.isEnabled())))
    press(qtbot, w, Qt.Key.Key_Escape)              # the Abort button's shortcut clicks it (animated, ~100 ms)
    assert wait(qtbot, task) is None
    qtbot.waitUntil(lambda: c.generate.isEnabled(), timeout=5000)
    said = [m for m, *_ in seen]
    assert said[0] == "Aborting..." and "Aborted" in said and said.index("Aborting...") < said.index("Aborted")
    assert seen[0][1:] == (False, False)            # nothing can be started or stopped while aborting
    assert "Aborted" in w.statusBar().currentMessage()


def test_help_menu_opens_the_language_sheet_shortcuts_and_about(qtbot, window):
    pytest.importorskip("gridar_desktop.app.widgets.help_dialogs")
    w = window
    for act in (w.act_language, w.act_shortcuts, w.act_about):
        act.trigger()
        assert w.dialogs and w.dialogs[-1].isVisible()
        w.dialogs[-1].close()
    qtbot.mouseClick(w.controls.language_help, Qt.MouseButton.LeftButton)
    assert w.dialogs[-1].isVisible()


def test_the_model_gives_the_controls_its_words_and_its_thresholds(qtbot, loop):
    w = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(w)
    assert wait(qtbot, w.choose_model("demo"))
    words = w.controls.completer.model().stringList()
    assert "circle" in words and "red" in words
    assert w.controls.calibration.text() and w.controls.calibration.toolTip()
    w.confirm_close = False


def test_a_wrong_type_in_settings_json_does_not_stop_the_start(qtbot, loop):
    path = config_dir() / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cfg": "high", "n": "four", "geometry": 5, "method": 3, "manual": "yes",
                                "temperature": None, "prompt": 7, "crisp": "no", "export_scale": 3}))
    w = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(w)
    assert w.controls.cfg.value() == 2.0 and w.export_scale == 4 and w.act_crisp.isChecked()
    path.write_text("[1, 2, 3]")
    w2 = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(w2)
    path.write_text(json.dumps({"temperature": 0.5, "n": 8}))
    w3 = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(w3)
    assert w3.controls.temperature.value() == 0.5 and w3.controls.n.value() == 8


def test_an_image_opened_for_editing_leaves_nothing_of_the_last_run(qtbot, window):
    """Seen in the screenshots: a scene set as the edit source kept the last run's cards, ranking and an old
    error banner beside it."""
    from conftest import wait
    from gridar_desktop.shapes.scene import make_scene
    w = window
    w.controls.prompt.setText("two red circles")
    assert wait(qtbot, w.start_generation()) is not None
    w.controls.prompt.setText("a red dragon")
    assert w.start_generation() is None and w.banner.isVisible()
    assert w.final.count() == 4 and w.strip.cards
    img, _ = make_scene("a red circle and a blue square", 4, 64)
    w.set_edit_source(img, "scene.png")
    assert not w.banner.isVisible()
    assert w.final.count() == 0 and not any(c.isVisible() for c in w.strip.cards)
    assert w.layouts.heading.text() == "Layout"
