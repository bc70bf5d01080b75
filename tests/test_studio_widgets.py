"""The studio's widgets driven through the real window (issue 25): review keys whatever has the focus, refill
choices, N for GridAR, tooltips and plain words, prompt completion, the edit tools, dragging out, window size."""
import numpy as np
import pytest

pytest.importorskip("PySide6")
from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import (QAbstractButton, QAbstractScrollArea, QAbstractSpinBox, QApplication,  # noqa: E402
                               QComboBox, QLineEdit, QSlider, QTabBar, QWidget)

from gridar_desktop.engine.search import PruneDecision, VerdictReview, settle  # noqa: E402

from conftest import wait  # noqa: E402

PROMPT = "two red circles and a blue square"


def focus(qtbot, widget) -> None:
    """Give `widget` the keyboard focus as a click would (the window active first)."""
    w = widget.window()
    w.activateWindow()
    widget.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(widget.hasFocus, timeout=5000)


def open_for_editing(qtbot, w, tmp_path, colour, name="src.png"):
    from PIL import Image
    path = tmp_path / name
    Image.new("RGB", (64, 64), colour).save(path)
    if not w.controls.editing:
        w.controls.mode.setCurrentIndex(1)
    assert w.open_image(path)
    qtbot.waitUntil(lambda: w.canvas.show_mask and w.canvas.image is not None, timeout=5000)


def canvas_point(w, x, y) -> QPoint:
    """The canvas position of image pixel (x, y) at the model's resolution."""
    r, size = w.canvas._target(), w.mask.size
    return QPoint(int(r.left() + (x + 0.5) * r.width() / size), int(r.top() + (y + 0.5) * r.height() / size))


# -- 1. review keys --------------------------------------------------------------------------------------------------
def test_review_keys_act_on_the_cards_whatever_has_the_focus(qtbot, window):
    w, s = window, window.studio
    c = w.controls
    c.prompt.setText(PROMPT)
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.n.setValue(4)
    c.manual.setChecked(True)
    focus(qtbot, c.prompt)
    task = w.start_generation()
    qtbot.waitUntil(lambda: s.waiting_for_artist and w.strip.continue_btn.isEnabled(), timeout=60000)
    assert c.prompt.isReadOnly()                      # the running job was started from this text
    answered = []
    w.strip.continue_clicked.connect(answered.append)
    typed_into = w.focusWidget() or QApplication.focusWidget()
    assert typed_into is c.prompt                     # the artist never clicked anywhere else
    before = w.strip.cards[1].keep.isChecked()
    QTest.keyClicks(typed_into, "2k")
    assert c.prompt.text() == PROMPT
    assert w.strip.current == 1 and w.strip.cards[1].keep.isChecked() != before
    QTest.keyClick(typed_into, Qt.Key.Key_Return)
    assert len(answered) == 1 and answered[0].keep[1] != before
    w.controls.abort.click()
    wait(qtbot, task)
    assert not c.prompt.isReadOnly()
    QTest.keyClicks(c.prompt, "x")                    # no review open: keys type again
    assert c.prompt.text() == PROMPT + "x"


# -- 2. refill choices -----------------------------------------------------------------------------------------------
def click_box(box) -> None:
    """Click a check box where the artist would: on its box, at the left (its middle may be past its text)."""
    QTest.mouseClick(box, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(8, box.height() // 2))


def click_keep(card) -> None:
    click_box(card.keep)


def test_a_refill_choice_offers_only_survivors_and_follows_the_keep_flags(qtbot, window):
    strip = window.strip
    review = VerdictReview(0, (0.9, 0.1, 0.05, 0.8), PruneDecision([True, False, False, True], [0, 0, 3, 3]),
                           np.zeros((4, 64, 64, 3), np.uint8), threshold=0.5)
    strip.show_review(review, interactive=True)
    cards = strip.cards

    def offered(i):
        return [cards[i].source.itemData(k) for k in range(cards[i].source.count())]

    def shows_what_is_decided():
        d = strip.decision()
        settled = settle(d, __import__("random").Random(0))
        for i in range(4):
            if not d.keep[i]:
                shown = cards[i].source.currentData()
                if shown == "redraw":
                    assert settled.redraw[i]
                elif shown == "stays":
                    assert settled.keep[i] and settled.sources[i] == i
                else:
                    assert settled.sources[i] == shown == d.sources[i] and settled.keep[shown]
    assert offered(2) == [0, 3, "redraw"] and cards[2].source.currentData() == 3     # never "from 2" (rejected)
    shows_what_is_decided()
    # a kept card takes nothing in its place: it shows no refill choice at all (a greyed "copy of 3" read as one)
    assert [c.source.isVisible() for c in cards] == [False, True, True, False]
    # the artist drops candidate 4: slot 3 cannot copy it any more, and nothing offers it
    click_keep(cards[3])
    assert not cards[3].keep.isChecked() and cards[3].source.isVisible()
    assert offered(2) == [0, "redraw"] and cards[2].source.currentData() == 0
    assert offered(1) == [0, "redraw"] and 3 not in offered(3) and offered(3) == [0, "redraw"]
    shows_what_is_decided()
    # ... and keeps candidate 2 again: it becomes a choice for the others
    click_keep(cards[1])
    assert offered(2) == [0, 1, "redraw"]
    shows_what_is_decided()
    # everything dropped: nothing to copy, the card says the slot goes on (as the engine keeps the group)
    for i in (0, 1):
        click_keep(cards[i])
    assert offered(2) == ["stays", "redraw"] and "goes on" in cards[2].source.currentText()
    shows_what_is_decided()
    strip.set_interactive(False)


# -- 3. N ----------------------------------------------------------------------------------------------------------
def test_n_moves_in_steps_of_four_for_gridar(qtbot, window):
    c = window.controls
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.n.setValue(4)
    focus(qtbot, c.n)
    QTest.keyClick(c.n, Qt.Key.Key_Up)
    assert c.n.value() == 8
    QTest.keyClick(c.n, Qt.Key.Key_Down)
    QTest.keyClick(c.n, Qt.Key.Key_Down)
    assert c.n.value() == 4 and c.n.minimum() == 4
    c.n.lineEdit().selectAll()
    QTest.keyClicks(c.n, "6")
    QTest.keyClick(c.n, Qt.Key.Key_Tab)
    assert c.n.value() % 4 == 0 and c.request().n % 4 == 0
    c.method.setCurrentIndex(c.method.findData("best-of-n"))
    focus(qtbot, c.n)
    c.n.setValue(8)
    QTest.keyClick(c.n, Qt.Key.Key_Down)
    assert c.n.value() == 7 and c.request().n == 7               # Best-of-N takes any N
    c.n.setValue(1)
    assert c.request().n == 1
    c.n.setValue(7)
    c.method.setCurrentIndex(c.method.findData("gridar"))          # the switch snaps N to a multiple of 4
    assert c.n.value() == 8 and c.request().n == 8
    c.n.setValue(6)                                                # a restored or applied N snaps as well
    assert c.n.value() == 8


# -- 4. tooltips and plain words -----------------------------------------------------------------------------------
INPUTS = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QSlider, QTabBar)


def test_every_control_of_the_form_and_the_edit_tools_has_a_tooltip(qtbot, window):
    missing = []
    for panel in (window.controls, window.edit_panel):
        for wdg in panel.findChildren(QWidget):
            if not isinstance(wdg, INPUTS):
                continue
            parent = wdg.parentWidget()
            if isinstance(parent, (QAbstractSpinBox, QComboBox, QLineEdit, QTabBar)):
                continue                      # the parts of a spin box, combo box, line edit or tab bar
            if not wdg.toolTip().strip():
                missing.append(f"{type(wdg).__name__} {getattr(wdg, 'text', lambda: '')()!r}")
    assert not missing, missing


def test_calibration_words_with_the_figures_in_the_tooltip(qtbot, window):
    c = window.controls
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.auto_threshold.setChecked(True)
    c.set_verifier_calibration(True)
    c.set_calibration("Drops a candidate only when it is clearly going wrong", "0.193 at 2 rows, else 0.337")
    assert c.calibration.text() == "Drops a candidate only when it is clearly going wrong"
    assert "0.193" in c.calibration.toolTip() and not c.calibration.isHidden()
    # an uncalibrated verifier: a plain warning above the hint, the note and the figures in its tooltip
    c.set_verifier_calibration(False, "No threshold was measured for this verifier")
    assert not c.calibration.isHidden() and not c.uncalibrated.isHidden()
    assert "not calibrated" in c.uncalibrated.text()
    assert "No threshold was measured" in c.uncalibrated.toolTip() and "0.193" in c.uncalibrated.toolTip()


def test_cards_say_what_verdicts_and_contexts_mean(qtbot, window):
    strip = window.strip
    review = VerdictReview(0, (0.0, 0.9, 0.9, 0.9), PruneDecision([False, True, True, True], [2, 1, 2, 3]),
                           np.zeros((4, 64, 64, 3), np.uint8), threshold=0.5,
                           kinds=("source", "cleared", "source", "cleared"), verify_by="rollout",
                           completions=np.zeros((4, 64, 64, 3), np.uint8))
    strip.show_review(review, interactive=False)
    assert strip.cards[0].badge.text() == "likely to go wrong (0.00)"
    assert "0.000" in strip.cards[0].badge.toolTip() and "0.5" in strip.cards[0].badge.toolTip()
    titles = [c.title.text() for c in strip.cards[:2]]
    assert titles == ["1 · original kept", "2 · masked part cleared"]
    assert "around the mask" in strip.cards[0].title.toolTip() and "cleared" in strip.cards[1].title.toolTip()
    for jargon in ("impossible", "ends wrong", "source", "P(possible)"):
        assert all(jargon not in c.title.text() + c.badge.text() for c in strip.cards[:4])


# -- 5. the prompt box ----------------------------------------------------------------------------------------------
def test_the_prompt_completes_the_word_being_typed_and_offers_help(qtbot, window):
    c = window.controls
    c.set_vocabulary(["a", "red", "circle", "circles", "square", "above", "blue"])
    c.prompt.clear()
    focus(qtbot, c.prompt)
    QTest.keyClicks(c.prompt, "a red ci")
    popup = c.completer.popup()
    qtbot.waitUntil(popup.isVisible, timeout=5000)
    assert c.completer.completionPrefix() == "ci"
    words = [c.completer.completionModel().index(i, 0).data() for i in range(c.completer.completionCount())]
    assert words == ["circle", "circles"]
    QTest.keyClick(popup, Qt.Key.Key_Return)
    assert c.prompt.text() == "a red circle "              # the word is completed; the line is kept
    QTest.keyClicks(c.prompt, "abo")
    qtbot.waitUntil(popup.isVisible, timeout=5000)
    QTest.keyClick(popup, Qt.Key.Key_Return)
    assert c.prompt.text() == "a red circle above "
    # the "?" beside the box
    assert c.language_help.text() == "?" and c.language_help.toolTip() == "What can I type?"
    with qtbot.waitSignal(c.language_help_clicked, timeout=2000):
        QTest.mouseClick(c.language_help, Qt.MouseButton.LeftButton)


def test_the_buttons_rest_while_an_abort_is_under_way(qtbot, window):
    c = window.controls
    c.set_busy(True)
    assert c.abort.isEnabled() and c.stop_band.isEnabled()
    c.set_aborting(True)
    assert not (c.abort.isEnabled() or c.stop_band.isEnabled() or c.generate.isEnabled())
    c.set_aborting(False)
    c.set_busy(False)
    assert c.generate.isEnabled() and not c.abort.isEnabled()


# -- 6. edit tools ------------------------------------------------------------------------------------------------
def test_show_mask_toggles_both_ways(qtbot, window, tmp_path):
    w = window
    open_for_editing(qtbot, w, tmp_path, (40, 160, 60))
    assert w.canvas.mask_visible and w.edit_panel.show_mask.isChecked()
    QTest.keyClick(w.canvas, Qt.Key.Key_M)               # a button's shortcut clicks it a moment later
    qtbot.waitUntil(lambda: not w.edit_panel.show_mask.isChecked(), timeout=5000)
    assert not w.canvas.mask_visible
    QTest.keyClick(w.canvas, Qt.Key.Key_M)
    qtbot.waitUntil(w.edit_panel.show_mask.isChecked, timeout=5000)
    assert w.canvas.mask_visible and w.canvas.show_mask


def test_edit_the_result_waits_for_a_result(qtbot, window):
    w = window
    w.controls.mode.setCurrentIndex(1)
    assert not w.edit_panel.use_result.isEnabled() and "generate" in w.edit_panel.use_result.toolTip().lower()


def ring_colours(w, centre: QPoint, rad: float) -> np.ndarray:
    """The canvas's pixels on a ring of radius `rad` (+-3 px) around `centre`, as (k, 3) RGB."""
    img = w.canvas.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    dpr = img.devicePixelRatio()
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, :img.width() * 3]
    arr = arr.reshape(img.height(), img.width(), 3)
    yy, xx = np.mgrid[0:img.height(), 0:img.width()]
    d = np.hypot(xx / dpr - centre.x(), yy / dpr - centre.y())
    return arr[np.abs(d - rad) <= 3]


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0)])
def test_the_brush_outline_shows_on_light_and_dark_images(qtbot, window, tmp_path, colour):
    w = window
    open_for_editing(qtbot, w, tmp_path, colour)
    w.edit_panel.size.setValue(8)
    pos = canvas_point(w, 32, 32)
    QTest.mouseMove(w.canvas, pos + QPoint(7, 3))         # the pointer may already rest on `pos`
    QTest.mouseMove(w.canvas, pos)
    qtbot.waitUntil(lambda: w.canvas._hover == QPointF(pos), timeout=5000)
    rad = w.canvas.brush * w.canvas._target().width() / w.mask.size
    lum = ring_colours(w, pos, rad).mean(axis=1)
    assert (lum < 60).any() and (lum > 200).any()            # a dark and a light ring: one contrasts with any image


def masked_pixels(w, x0, y0, x1, y1) -> np.ndarray:
    """The canvas's pixels over image pixels [x0, x1) x [y0, y1) (shrunk by one image pixel, inside the outline)."""
    img = w.canvas.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, :img.width() * 3]
    arr = arr.reshape(img.height(), img.width(), 3)
    a, b = canvas_point(w, x0 + 1, y0 + 1), canvas_point(w, x1 - 2, y1 - 2)
    dpr = img.devicePixelRatio()
    return arr[int(a.y() * dpr):int(b.y() * dpr), int(a.x() * dpr):int(b.x() * dpr)].reshape(-1, 3)


def test_the_mask_leaves_colours_readable_unless_the_artist_tints_it(qtbot, window, tmp_path):
    w = window
    open_for_editing(qtbot, w, tmp_path, (40, 160, 60))
    mask = np.zeros((w.mask.size, w.mask.size), bool)
    mask[16:48, 16:48] = True
    w.mask.set(mask)
    w.show_mask()
    px = masked_pixels(w, 16, 16, 48, 48)
    true_colour = (px == (40, 160, 60)).all(axis=1).mean()
    assert true_colour > 0.6                                # hatching, not a wash: most pixels keep their colour
    assert (np.abs(px.astype(int) - (40, 160, 60)).sum(axis=1) > 60).any()    # but the mask is drawn
    w.edit_panel.opacity.setValue(80)                       # the artist asks for a tint
    px = masked_pixels(w, 16, 16, 48, 48)
    assert (px == (40, 160, 60)).all(axis=1).mean() < 0.1 and px[:, 0].mean() > 100


def test_the_token_grid_shows_which_tokens_the_mask_touches(qtbot, window, tmp_path):
    w = window
    open_for_editing(qtbot, w, tmp_path, (40, 40, 40))
    info = w.studio.model.backend.info
    click_box(w.edit_panel.token_grid)
    assert w.canvas.show_token_grid and w.canvas.token_grid == (info.rows, info.cols)
    mask = np.zeros((w.mask.size, w.mask.size), bool)
    mask[1, 1] = True                                       # one pixel: its whole token is redrawn
    w.mask.set(mask)
    w.show_mask()
    img = w.canvas.grab().toImage()
    r = w.canvas._target()
    tw = r.width() / info.cols
    dpr = img.devicePixelRatio()

    def yellow_in(col, row):
        """Is the highlight's colour on the top edge of token (row, col)?"""
        for dy in range(0, 5):
            for k in range(3, int(tw) - 3):
                c = img.pixelColor(int((r.left() + col * tw + k) * dpr), int((r.top() + row * tw + dy) * dpr))
                if c.red() > 200 and c.green() > 150 and c.blue() < 80:
                    return True
        return False
    assert yellow_in(0, 0) and not yellow_in(1, 1)


# -- 7. drag out --------------------------------------------------------------------------------------------------
class FakeDrag:
    made = []

    def __init__(self, source):
        self.source, self.mime = source, None
        FakeDrag.made.append(self)

    def setMimeData(self, m):  # noqa: N802
        self.mime = m

    def setPixmap(self, _p):  # noqa: N802
        pass

    def exec(self, *_a):
        return Qt.DropAction.CopyAction


def drag(w, start: QPoint, end: QPoint, mods=Qt.KeyboardModifier.NoModifier) -> None:
    QTest.mousePress(w.canvas, Qt.MouseButton.LeftButton, mods, start)
    for k in range(1, 6):
        QTest.mouseMove(w.canvas, start + (end - start) * k / 5)
    QTest.mouseRelease(w.canvas, Qt.MouseButton.LeftButton, mods, end)


def test_the_image_drags_out_of_the_canvas_without_breaking_mask_painting(qtbot, window, tmp_path, monkeypatch):
    from gridar_desktop.app.widgets import canvas as canvas_mod
    monkeypatch.setattr(canvas_mod, "QDrag", FakeDrag)
    FakeDrag.made = []
    w = window
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :, 2] = 200
    w.canvas.set_image(img, None, 1, "a picture")
    c = w.canvas.rect().center()
    drag(w, c, c + QPoint(60, 40))
    assert len(FakeDrag.made) == 1
    mime = FakeDrag.made[0].mime
    assert mime.hasImage() and mime.urls()
    png = mime.urls()[0].toLocalFile()
    saved = QImage(png)
    assert png.endswith(".png") and saved.width() == 64 and saved.pixelColor(5, 5).blue() == 200
    # in edit mode the left button paints; with Alt it drags out
    open_for_editing(qtbot, w, tmp_path, (200, 200, 200))
    drag(w, canvas_point(w, 10, 10), canvas_point(w, 40, 10))
    assert len(FakeDrag.made) == 1 and w.mask.mask[10, 20]
    drag(w, canvas_point(w, 10, 30), canvas_point(w, 40, 30), Qt.KeyboardModifier.AltModifier)
    assert len(FakeDrag.made) == 2 and not w.mask.mask[30, 20]


# -- 8. window size -------------------------------------------------------------------------------------------------
def outside_parents(w) -> list[str]:
    """Visible widgets whose geometry is not inside their parent's rect (a scroll area's content may be larger)."""
    bad = []
    for child in w.findChildren(QWidget):
        parent = child.parentWidget()
        if not child.isVisible() or child.isWindow() or parent is None:
            continue
        if isinstance(parent.parentWidget(), QAbstractScrollArea) and parent is parent.parentWidget().viewport():
            continue
        if not parent.rect().contains(child.geometry()):
            bad.append(f"{type(child).__name__} {child.objectName()!r} {child.geometry()} in "
                       f"{type(parent).__name__} {parent.rect()}")
    return bad


def test_the_window_never_resizes_itself_and_nothing_spills(qtbot, window, tmp_path):
    w, c = window, window.controls
    w.resize(1280, 820)
    qtbot.waitUntil(lambda: w.width() == 1280, timeout=5000)
    c.prompt.setText(PROMPT + " with a very long tail that goes on and on, describing everything at great length")
    c.prompt.setText(PROMPT)
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.n.setValue(8)
    c.strategy.setCurrentIndex(c.strategy.findData("three-way"))
    c.manual.setChecked(False)
    task = w.start_generation()
    wait(qtbot, task)
    QApplication.processEvents()
    assert w.width() == 1280 and w.height() == 820
    # a long layout prompt and a long caption do not push the window either
    w.layouts.show_layouts(0, [PROMPT + ", with " + "the red circles far at the top left " * 6] * 8, editable=False,
                           original=PROMPT)
    w.canvas.set_image(np.zeros((64, 64, 3), np.uint8), None, 1, "a caption " * 40)
    QApplication.processEvents()
    assert w.width() == 1280 and w.height() == 820
    for size in ((1366, 768), (1024, 700)):
        w.resize(*size)
        qtbot.wait(50)
        assert (w.width(), w.height()) == size, (w.size(), w.minimumSizeHint())
        assert not outside_parents(w), outside_parents(w)
    # the edit tools, with a long file name, on the small screen
    open_for_editing(qtbot, w, tmp_path, (90, 90, 200), name="a-long-file-name-for-the-picture-" * 3 + ".png")
    QApplication.processEvents()
    assert (w.width(), w.height()) == (1024, 700), (w.size(), w.minimumSizeHint())
    assert not outside_parents(w), outside_parents(w)
