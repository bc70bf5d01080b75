"""The desktop studio, offscreen, driven like an artist would (pytest-qt + qasync)."""
import asyncio
import json
import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")
import qasync  # noqa: E402

from gridar_desktop.app.studio import Studio  # noqa: E402
from gridar_desktop.app.window import MainWindow  # noqa: E402
from gridar_desktop.engine import events as ev  # noqa: E402
from gridar_desktop.engine.search import PruneDecision  # noqa: E402
from gridar_desktop.engine.tiny import save_tiny_janus  # noqa: E402
from gridar_desktop.io.png import read_metadata  # noqa: E402


from conftest import wait  # noqa: E402,F401


def test_full_interactive_generation_with_manual_override(qtbot, window, tmp_path):
    w, s = window, window.studio
    w.controls.prompt.setText("two red circles and a blue square")
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    w.controls.n.setValue(4)
    w.controls.manual.setChecked(True)
    reviews = []
    s.verdicts_wanted.connect(reviews.append)
    task = w.start_generation()
    # band 1: the artist overrides the verifier: keeps 1 and 2, rejects 3 and 4, and refills 4 from 2
    qtbot.waitUntil(lambda: s.waiting_for_artist and w.strip.continue_btn.isEnabled(), timeout=60000)
    cards = w.strip.cards
    for i, keep in enumerate([True, True, False, False]):
        cards[i].keep.setChecked(keep)
    cards[3].source.setCurrentIndex(cards[3].source.findData(1))
    cards[2].source.setCurrentIndex(cards[2].source.findData(0))
    w.strip.continue_btn.click()
    # layouts: the artist edits candidate 1's clause
    qtbot.waitUntil(lambda: w.layouts.continue_btn.isEnabled(), timeout=60000)
    w.layouts.edits[0].setText("two red circles and a blue square, with the blue square at the bottom")
    w.layouts.continue_btn.click()
    # band 2: accept the verifier, then the layouts as proposed
    qtbot.waitUntil(lambda: s.waiting_for_artist and w.strip.continue_btn.isEnabled(), timeout=60000)
    w.strip.accept_btn.click()
    qtbot.waitUntil(lambda: w.layouts.continue_btn.isEnabled(), timeout=60000)
    w.layouts.continue_btn.click()
    res = wait(qtbot, task)
    assert res is not None and len(reviews) == 2
    node = res.tree[0]
    assert node["keep"] == [True, True, False, False] and node["sources"] == [0, 1, 0, 1]
    assert node["overridden"] is True
    assert node["layouts"][0] == "two red circles and a blue square, with the blue square at the bottom"
    assert np.array_equal(res.tokens[3, :16], res.tokens[1, :16])
    assert w.final.count() == 4
    # pick another candidate in the final view and save it; the PNG carries the choice and the tree
    w.final.setCurrentRow(2)
    chosen = s.chosen
    assert chosen == res.ranking[2]
    w._ask_save_path = lambda *a: tmp_path / "out.png"
    assert w.save() == tmp_path / "out.png"
    meta = read_metadata(tmp_path / "out.png")
    assert meta["chosen"] == chosen and meta["tree"][0]["sources"] == [0, 1, 0, 1]


def test_save_and_reload_round_trip(qtbot, window, tmp_path):
    w = window
    w.controls.prompt.setText("a red circle above a blue square")
    w.controls.method.setCurrentIndex(w.controls.method.findData("best-of-n"))
    w.controls.n.setValue(3)
    w.controls.random_seed.setChecked(False)
    w.controls.seed.setValue(77)
    w.controls.cfg.setValue(4.5)
    assert w.controls.auto_threshold.isChecked() and w.controls.request().threshold is None
    w.controls.auto_threshold.setChecked(False)
    w.controls.threshold.setValue(0.6)
    res = wait(qtbot, w.start_generation())
    assert res is not None and res.request.threshold == 0.6
    w._ask_save_path = lambda *a: tmp_path / "a.png"
    w.save()
    w.controls.prompt.setText("something else")
    w.controls.seed.setValue(1)
    w.controls.cfg.setValue(2.0)
    w.controls.auto_threshold.setChecked(True)
    assert w.open_image(tmp_path / "a.png")
    w.act_use_settings.trigger()          # opening shows the image; restoring its settings is asked for
    c = w.controls
    assert c.prompt.text() == "a red circle above a blue square" and c.seed.value() == 77
    assert not c.auto_threshold.isChecked() and c.threshold.value() == 0.6
    assert c.cfg.value() == 4.5 and c.method.currentData() == "best-of-n" and c.n.value() == 3
    # regenerating with the restored settings reproduces the saved image exactly
    again = wait(qtbot, w.start_generation())
    assert np.array_equal(again.tokens, res.tokens)
    # both finished images are in the history panel (newest first), and a click restores one
    assert w.history.count() == 2
    w.controls.prompt.setText("changed")
    w.history.itemClicked.emit(w.history.item(1))
    w.act_use_settings.trigger()
    assert w.controls.prompt.text() == "a red circle above a blue square"


def test_live_previews_during_a_band(qtbot, window):
    w, s = window, window.studio
    rows = []
    s.engine_event.connect(lambda e: isinstance(e, ev.RowPreview) and rows.append(e.rows))
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    assert wait(qtbot, w.start_generation()) is not None
    assert rows == [1, 3, 5, 6, 7]       # rows 2 and 4 end a band: BandCandidates shows those


def test_stop_after_band(qtbot, window):
    w, s = window, window.studio
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    w.controls.n.setValue(4)
    w.controls.manual.setChecked(False)
    s.engine_event.connect(lambda e: isinstance(e, ev.BandStarted) and e.stage == 0 and w.controls.stop_band.click())
    res = wait(qtbot, w.start_generation())
    assert res is not None and res.stopped_early and res.tokens.shape[1] == 16
    assert w.controls.generate.isEnabled() and not w.controls.abort.isEnabled()


def test_abort_now_also_while_waiting_for_the_artist(qtbot, window):
    w, s = window, window.studio
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    w.controls.manual.setChecked(True)
    task = w.start_generation()
    qtbot.waitUntil(lambda: s.waiting_for_artist, timeout=60000)
    w.controls.abort.click()
    assert wait(qtbot, task) is None
    assert "Aborted" in w.statusBar().currentMessage() and not s.busy
    # and the studio works again afterwards
    w.controls.manual.setChecked(False)
    assert wait(qtbot, w.start_generation()) is not None


def test_engine_error_is_shown_and_recovered_from(qtbot, window, monkeypatch):
    w = window
    from gridar_desktop.engine import search as search_mod

    def boom(self):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(search_mod.Search, "run", boom)
    assert wait(qtbot, w.start_generation()) is None
    assert w.banner.isVisible() and "ran out of memory" in w.banner.label.text()
    monkeypatch.undo()
    w.controls.method.setCurrentIndex(w.controls.method.findData("single"))
    assert wait(qtbot, w.start_generation()) is not None
    assert not w.banner.isVisible()


def test_bad_prompt_and_bad_model_folder(qtbot, window, tmp_path):
    w, s = window, window.studio
    w.controls.prompt.setText("a purple dragon")
    assert w.start_generation() is None                  # refused before any work starts
    assert "'dragon'" in w.banner.label.text() and not s.busy
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert wait(qtbot, w.choose_model(str(tmp_path))) is False
    assert "'llama' model" in w.banner.label.text()
    assert s.model is not None            # the previous model stays usable


def test_closing_mid_generation_leaves_no_thread(qtbot, loop, model_dir):
    w = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(w)
    w.show()
    wait(qtbot, w.choose_model(model_dir))
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    task = w.start_generation()
    qtbot.waitUntil(lambda: w.progress.value() > 0, timeout=60000)
    w._confirm = lambda *a, **k: "discard"      # "stop it and quit?": yes
    w.close()
    qtbot.waitUntil(task.done, timeout=10000)
    assert not any(t.name.startswith("gridar-gpu") and t.is_alive() for t in threading.enumerate())


def test_keyboard_review(qtbot, window):
    """Number keys select a candidate, K toggles keep, A accepts the verifier's proposal."""
    w, s = window, window.studio
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    w.controls.manual.setChecked(True)
    task = w.start_generation()
    qtbot.waitUntil(lambda: s.waiting_for_artist and w.strip.continue_btn.isEnabled(), timeout=60000)
    before = w.strip.cards[1].keep.isChecked()
    w.strip.select(1)
    w.strip.toggle_keep()
    assert w.strip.cards[1].keep.isChecked() != before
    d = w.strip.decision()
    assert isinstance(d, PruneDecision) and d.keep[1] != before
    w.controls.abort.click()
    wait(qtbot, task)


# -- edit mode -----------------------------------------------------------------------------------------------------

def test_mask_tools_stroke_undo_invert():
    from gridar_desktop.app.mask_state import MaskState
    m = MaskState(64)
    m.begin_stroke(10, 10, 3)
    m.paint(30, 10, 3)                       # a horizontal stroke: discs stamped all along, one undo step
    m.end_stroke()
    assert m.mask[10, 10:31].all() and not m.mask[20, 20] and m.can_undo
    painted = m.mask.copy()
    m.begin_stroke(20, 10, 2, erase=True)
    m.end_stroke()
    assert not m.mask[10, 20] and m.mask[10, 12]
    m.undo()
    assert np.array_equal(m.mask, painted) and m.can_redo
    m.redo()
    assert not m.mask[10, 20]
    m.invert()
    assert m.mask[10, 20] and not m.mask[10, 12]
    m.clear()
    assert not m.mask.any()
    m.undo()
    assert m.mask[10, 20]


def mouse_stroke(qtbot, canvas, x0: float, x1: float) -> None:
    """Drag the left button across the canvas's image at mid height, from x0 to x1 (fractions of its width)."""
    from PySide6.QtCore import QPoint, Qt
    r = canvas._target()
    a = QPoint(int(r.left() + r.width() * x0), int(r.center().y()))
    b = QPoint(int(r.left() + r.width() * x1), int(r.center().y()))
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(canvas, b)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=b)


def test_mask_tools_through_the_gui(qtbot, window, tmp_path):
    """The mask tools as an artist uses them: a brush stroke with the mouse, the eraser (E), undo / redo (Ctrl+Z,
    Ctrl+Shift+Z), invert (I) and clear, each seen on the window's mask and the coverage label."""
    from PySide6.QtCore import Qt

    from gridar_desktop.shapes.scene import make_scene
    w, e = window, window.edit_panel
    img, _ = make_scene("a red circle", 3, 64)
    src = tmp_path / "photo.png"
    img.save(src)
    assert w.open_image(src) and w.controls.editing
    assert not w.mask.mask.any() and not e.undo.isEnabled()
    mouse_stroke(qtbot, w.canvas, 0.2, 0.8)
    painted = w.mask.mask.copy()
    assert painted[32, 16:48].all() and not painted[5, 5] and e.undo.isEnabled()
    assert e.coverage.text().startswith("Mask covers") and " 0%" not in e.coverage.text()

    def key(k, mods=Qt.KeyboardModifier.NoModifier) -> None:
        # a button's shortcut runs animateClick(): the click lands when the button is released, about 100 ms later
        qtbot.keyClick(w.canvas, k, mods)
        qtbot.wait(250)

    key(Qt.Key.Key_E)                                    # the eraser takes the middle out of the stroke
    assert w.canvas.tool == "eraser"
    mouse_stroke(qtbot, w.canvas, 0.45, 0.55)
    assert not w.mask.mask[32, 32] and w.mask.mask[32, 16]
    key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(w.mask.mask, painted) and e.redo.isEnabled()
    key(Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert not w.mask.mask[32, 32]
    erased = w.mask.mask.copy()
    key(Qt.Key.Key_I)
    assert np.array_equal(w.mask.mask, ~erased)
    qtbot.mouseClick(e.clear, Qt.MouseButton.LeftButton)
    assert not w.mask.mask.any() and " 0%" in e.coverage.text()
    qtbot.mouseClick(e.undo, Qt.MouseButton.LeftButton)
    assert np.array_equal(w.mask.mask, ~erased)


def test_full_edit_through_the_gui(qtbot, window, tmp_path):
    """Open a plain image (it opens in edit mode), paint a mask with the mouse, edit with GridAR, save, reopen."""
    from PySide6.QtCore import Qt

    from gridar_desktop.shapes.scene import make_scene
    w = window
    img, _ = make_scene("a red circle and a blue square", 3, 64)
    src = tmp_path / "photo.jpg"
    img.resize((96, 96)).save(src)
    assert w.open_image(src)
    assert w.controls.editing and w.edit_panel.isVisible() and w.canvas.show_mask
    assert "resized the 96x96 image to 64x64" in w.edit_panel.source.text()
    mouse_stroke(qtbot, w.canvas, 0.3, 0.7)              # a stroke across the middle of the canvas
    assert w.mask.mask[32, 20:44].all() and w.mask.coverage < 0.5
    assert w.edit_panel.undo.isEnabled()
    w.controls.prompt.setText("a green circle and a blue square")
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    w.controls.manual.setChecked(False)
    w.edit_panel.context.setCurrentIndex(w.edit_panel.context.findData("cleared"))
    res = wait(qtbot, w.start_generation())
    assert res is not None and res.request.edit is not None
    assert res.request.context == "cleared" and res.contexts == ["cleared"] * res.request.n
    outside = ~res.request.edit.mask
    assert all(np.array_equal(im[outside], res.request.edit.source[outside]) for im in res.images)
    out = tmp_path / "edited.png"
    w._ask_save_path = lambda *a: out
    assert w.save() == out
    meta = read_metadata(out)
    assert meta["settings"]["edit"]["mask_png"]
    # reopening the saved edit restores the source and the mask
    w.mask.clear()
    w.edit_panel.context.setCurrentIndex(0)
    assert w.open_image(out)
    w.act_use_settings.trigger()
    assert np.array_equal(w.mask.mask, res.request.edit.mask)
    assert w.edit_panel.context.currentData() == "cleared"
    # the tiny model has no value head: the scorer alone ranks, and the heading says so; a ranking that weighed the
    # verdicts says that instead, in the heading and each candidate's tooltip
    assert res.selection is None and "(scorer)" in w.final_label.text()
    from gridar_desktop.engine import events as ev
    w.on_event(ev.FinalRanking((0.95, 0.94), (1, 0), res.images[:2], 2.0))
    assert "verdicts" in w.final_label.text()
    assert w.final.item(0).data(Qt.ItemDataRole.UserRole) == 1 and "verdicts" in w.final.item(0).toolTip()
    w.on_event(ev.FinalRanking((0.95, 0.94), (0, 1), res.images[:2]))
    assert "(scorer)" in w.final_label.text() and "verdicts" not in w.final.item(0).toolTip()


def test_edit_without_mask_is_explained(qtbot, window, tmp_path):
    from gridar_desktop.shapes.scene import make_scene
    w = window
    img, _ = make_scene("a red circle", 1, 64)
    img.save(tmp_path / "plain.png")
    assert w.open_image(tmp_path / "plain.png")
    w.controls.prompt.setText("a green circle")
    res = wait(qtbot, w.start_generation())
    assert res is None and "mask is empty" in w.banner.label.text()


def test_real_demo_model_generation_with_load_progress(qtbot, loop):
    """The bundled demo model end to end in the window: load with progress steps, GridAR N=4, a ranked result."""
    w = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(w)
    w.show()
    steps = []
    w.studio.load_progress.connect(lambda text, frac: steps.append(frac))
    assert wait(qtbot, w.choose_model("demo"))
    assert steps[0] < steps[-1] == 1.0 and w.progress.value() == 100
    assert w.progress.isHidden()                    # idle after the load: no full bar left standing
    w.controls.prompt.setText("a red circle above a blue square")
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    w.controls.n.setValue(4)
    w.controls.manual.setChecked(False)
    shown = []
    w.studio.engine_event.connect(lambda e: shown.append(w.progress.isVisible()))
    res = wait(qtbot, w.start_generation())
    assert res is not None and res.images.shape == (4, 64, 64, 3) and len(res.tree) == 2
    assert sorted(res.ranking) == [0, 1, 2, 3] and w.final.count() == 4
    assert shown and all(shown) and w.progress.isHidden()     # the bar shows while the job runs, not after
    w.confirm_close = False
    w.close()


def test_layout_panel_edits_clauses(qtbot):
    from gridar_desktop.app.widgets.layouts import LayoutPanel
    p = LayoutPanel()
    qtbot.addWidget(p)
    base = "two red circles and a blue square"
    p.show_layouts(0, [base + ", with the red circles at the top", base], editable=True, original=base)
    assert [e.text() for e in p.edits] == ["with the red circles at the top", ""]
    assert p.original_label.text() == f"Prompt: {base}"
    p.edits[1].setText("with the blue square at the bottom")
    assert p.prompts() == [base + ", with the red circles at the top", base + ", with the blue square at the bottom"]


def test_verdict_badges_follow_the_pruning_threshold(qtbot):
    """A badge says "impossible" exactly when the verifier's P(possible) is below the threshold GridAR prunes at."""
    from gridar_desktop.app.widgets.candidates import CandidateStrip
    from gridar_desktop.engine.search import VerdictReview
    strip = CandidateStrip()
    qtbot.addWidget(strip)
    review = VerdictReview(0, (0.29, 0.1, 0.9, 0.14), PruneDecision([True, False, True, True], [0, 2, 2, 3]),
                           np.zeros((4, 64, 64, 3), np.uint8), threshold=0.139)
    strip.show_review(review, interactive=True)
    assert ["likely to go wrong" in c.badge.text() for c in strip.cards[:4]] == [False, True, False, False]
    assert "0.139" in strip.cards[1].badge.toolTip()


def test_review_of_a_mixed_edit_refills_within_a_context(qtbot):
    """Cards of a mixed edit say their context, and a rejected slot can only be refilled from its own context."""
    from gridar_desktop.app.widgets.candidates import CandidateStrip
    from gridar_desktop.engine.search import VerdictReview, settle
    strip = CandidateStrip()
    qtbot.addWidget(strip)
    kinds = ("source", "cleared", "source", "cleared")
    review = VerdictReview(0, (0.9, 0.1, 0.9, 0.9), PruneDecision([True, False, True, True], [0, 3, 2, 3]),
                           np.zeros((4, 64, 64, 3), np.uint8), threshold=0.5, kinds=kinds)
    strip.show_review(review, interactive=True)
    assert strip.cards[1].title.text() == "2 · masked part cleared"
    assert [strip.cards[1].source.itemData(k) for k in range(strip.cards[1].source.count())] == [3, "redraw"]
    strip.cards[2].keep.setChecked(False)            # the artist rejects a source slot: its refill is slot 1
    d = settle(strip.decision(), __import__("random").Random(0), kinds)
    assert d.sources == [0, 3, 0, 3] and d.redraw == []
    # ... or has it redrawn: a fresh draw needs no survivor of its context
    strip.cards[2].source.setCurrentIndex(strip.cards[2].source.findData("redraw"))
    d = settle(strip.decision(), __import__("random").Random(0), kinds)
    assert d.redraw == [False, False, True, False] and d.sources == [0, 3, 2, 3]
    strip.show_previews(np.zeros((4, 64, 64, 3), np.uint8), "band 2")
    assert strip.cards[1].title.text() == "2"


def test_the_window_icon_is_the_installers(monkeypatch, tmp_path):
    from gridar_desktop.app.main import app_icon_path
    from gridar_desktop.engine.models import REPO_ROOT
    assert app_icon_path() == REPO_ROOT / "resources" / "icons" / "gridar-desktop.png"
    own = tmp_path / "icon.png"
    own.write_bytes((REPO_ROOT / "resources" / "icons" / "gridar-desktop.png").read_bytes())
    monkeypatch.setenv("GRIDAR_ICON", str(own))
    assert app_icon_path() == own
    monkeypatch.setenv("GRIDAR_ICON", str(tmp_path / "missing.png"))     # a stale variable: the checkout's
    assert app_icon_path() == REPO_ROOT / "resources" / "icons" / "gridar-desktop.png"


def test_an_image_given_at_launch_opens_once_the_model_is_loaded(qtbot, window, model_dir, tmp_path):
    """`gridar-desktop IMAGE` (and the menu entry's "Open with"): the image opens for editing after the model."""
    from gridar_desktop.app.main import open_when_ready, parse
    from gridar_desktop.shapes.scene import make_scene
    w = window
    src = tmp_path / "scene.jpg"
    make_scene("a red circle", 2, 64)[0].save(src)
    assert parse([str(src), "--model", model_dir]).image == str(src) and parse([]).image is None
    task = w.choose_model(model_dir)
    open_when_ready(w, task, str(src))
    assert not w.controls.editing                        # not before the model is there
    qtbot.waitUntil(lambda: w.controls.editing, timeout=30000)
    assert w.edit_panel.source.text().startswith("scene.jpg")
    task = w.choose_model(model_dir)
    open_when_ready(w, task, str(tmp_path / "missing.png"))
    qtbot.waitUntil(task.done, timeout=30000)
    qtbot.waitUntil(lambda: "missing.png" in w.banner.label.text(), timeout=5000)


def test_the_controls_say_what_calibrated_means_for_the_model(qtbot, window):
    w = window
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    w.controls.auto_threshold.setChecked(True)
    text = w.controls.calibration.text()
    assert text == w.studio.threshold_summary() and text.startswith("Prunes candidates")
    assert not w.controls.calibration.isHidden()
    # while calibrated, the row names whose threshold is used instead of showing the idle manual number
    assert w.controls.threshold.isHidden() and w.controls.threshold_auto.text() == "the model's own"
    w.controls.auto_threshold.setChecked(False)                  # the manual value is used: the words go
    assert w.controls.calibration.isHidden()
    assert not w.controls.threshold.isHidden() and w.controls.threshold_auto.isHidden()
    w.controls.auto_threshold.setChecked(True)
    w.controls.method.setCurrentIndex(w.controls.method.findData("best-of-n"))
    assert w.controls.calibration.isHidden()


def test_threshold_summary_names_band_and_edit_thresholds():
    from types import SimpleNamespace

    from gridar_desktop.app.studio import Studio
    s = Studio(device="cpu")
    assert s.threshold_summary() == "" and s.threshold_details() == ""
    roles = SimpleNamespace(prune_threshold=0.337, prune_thresholds_by_rows={2: 0.193, 4: 0.541},
                            prune_threshold_edit=0.0, edit_value=(None, None))
    s.model = SimpleNamespace(roles=roles)
    # plain words for the artist; the exact figures for the tooltip
    assert s.threshold_summary() == ("Prunes candidates the verifier finds unlikely (calibrated for this model); "
                                     "in edits it prunes nothing and only helps pick the best")
    assert s.threshold_details() == ("Rejected when P(possible) is below 0.193 after 2 token rows, 0.541 after 4 "
                                     "token rows, else 0.337; edits: the value head, which prunes nothing")
    roles.edit_value, roles.prune_threshold_edit = None, 0.5645
    assert s.threshold_summary() == "Prunes candidates the verifier finds unlikely (calibrated for this model)"
    assert s.threshold_details().endswith("edits: 0.565")
    s.model = SimpleNamespace(roles=SimpleNamespace(prune_threshold=None))
    assert "no calibration" in s.threshold_summary() and not any(ch.isdigit() for ch in s.threshold_summary())
    assert s.threshold_details() == ("Rejected when P(possible) is below 0.250 (no calibration: the default); "
                                     "edits: 0.250")


def test_rollout_verdicts_show_each_candidates_completion(qtbot):
    """With verdicts from one completion, a card says how the candidate ends and shows that completion."""
    from gridar_desktop.app.widgets.candidates import CandidateStrip
    from gridar_desktop.engine.search import VerdictReview
    strip = CandidateStrip()
    qtbot.addWidget(strip)
    done = np.zeros((4, 64, 64, 3), np.uint8)
    done[2] = 255
    review = VerdictReview(0, (0.8, 0.3, 0.6, 0.1), PruneDecision([True, False, True, False], [0, 0, 2, 2]),
                           np.zeros((4, 64, 64, 3), np.uint8), threshold=0.5, verify_by="rollout",
                           completions=done)
    strip.show_review(review, interactive=False)
    assert [c.badge.text() for c in strip.cards[:4]] == ["likely to end well (0.80)", "likely to go wrong (0.30)",
                                                        "likely to end well (0.60)", "likely to go wrong (0.10)"]
    assert not strip.cards[2].ahead.isHidden() and strip.cards[2].ahead.pixmap().toImage().pixelColor(
        10, 10).red() == 255
    assert strip.heading.text().startswith("The judge's verdicts on a quick draft")
    strip.show_review(VerdictReview(1, (0.8,) * 4, PruneDecision([True] * 4, [0, 1, 2, 3]), done, threshold=0.2),
                      interactive=False)
    assert strip.cards[2].ahead.isHidden() and strip.cards[0].badge.text().startswith("can work out")


def test_verdicts_from_a_completion_are_a_setting_that_round_trips(qtbot, window):
    from gridar_desktop.app.studio import request_from_metadata
    from gridar_desktop.app.widgets.controls import ROLLOUT_HINT
    c = window.controls
    c.prompt.setText("a red circle")
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.auto_threshold.setChecked(True)
    assert c.verify_by.isEnabled() and c.request().verify_by == "view"
    c.verify_by.setCurrentIndex(c.verify_by.findData("rollout"))
    req = c.request()
    assert req.verify_by == "rollout" and c.calibration.text() == ROLLOUT_HINT
    assert c.threshold_auto.text().startswith("0.5")            # the scorer's fixed threshold, not the verifier's
    back = request_from_metadata({"prompt": req.prompt, "settings": {"method": "gridar", "verify_by": "rollout"}})
    assert back.verify_by == "rollout"
    assert request_from_metadata({"prompt": "x", "settings": {}}).verify_by == "view"      # older files
    c.verify_by.setCurrentIndex(c.verify_by.findData("view"))
    assert c.calibration.text() == window.studio.threshold_summary()
    c.apply(req)
    assert c.verify_by.currentData() == "rollout"
    c.method.setCurrentIndex(c.method.findData("best-of-n"))
    assert not c.verify_by.isEnabled()


def test_layout_use_off_means_no_reformulation(qtbot, window):
    from gridar_desktop.app.studio import request_from_metadata
    c = window.controls
    c.prompt.setText("a red circle")
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.strategy.setCurrentIndex(c.strategy.findData("off"))
    req = c.request()
    assert req.reformulate is False and req.strategy == "three-way"
    c.strategy.setCurrentIndex(c.strategy.findData("replace"))
    assert c.request().reformulate is True
    back = request_from_metadata({"prompt": "a red circle", "settings": {"method": "gridar", "reformulate": False}})
    c.apply(back)
    assert c.strategy.currentData() == "off"


def test_each_mode_starts_from_its_defaults_and_keeps_the_artists_choice(qtbot, window):
    from gridar_desktop.engine.defaults import GRIDAR_DEFAULTS
    c = window.controls
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.mode.setCurrentIndex(0)
    gen, edit = GRIDAR_DEFAULTS["generate"], GRIDAR_DEFAULTS["edit"]
    assert (c.strategy.currentData(), c.verify_by.currentData(), c.refill.currentData()) == (
        gen["strategy"], gen["verify_by"], gen["refill"])
    c.mode.setCurrentIndex(1)
    req = c.request()
    assert (req.verify_by, req.reformulate, req.strategy, req.refill) == (edit["verify_by"], edit["reformulate"],
                                                                          edit["strategy"], edit["refill"])
    assert (req.verify_by, req.refill) == ("rollout", "redraw")         # the setting measured above Best-of-N 4
    c.verify_by.setCurrentIndex(c.verify_by.findData("view"))          # the artist's choice for edits ...
    c.mode.setCurrentIndex(0)
    assert c.verify_by.currentData() == gen["verify_by"]
    c.mode.setCurrentIndex(1)
    assert c.verify_by.currentData() == "view"                          # ... is still there when they come back
    c.mode.setCurrentIndex(0)


def test_the_status_bar_says_when_candidates_are_being_completed(qtbot, window):
    window.on_event(ev.Completing(1, 4, 4))
    assert window.statusBar().currentMessage().startswith("Band 2: completing each of the 4 candidates once")


def test_refill_by_redraw_is_a_setting_and_a_per_card_choice(qtbot, window):
    from gridar_desktop.app.studio import request_from_metadata
    from gridar_desktop.app.widgets.candidates import CandidateStrip
    from gridar_desktop.engine.search import VerdictReview
    c = window.controls
    c.prompt.setText("a red circle")
    c.method.setCurrentIndex(c.method.findData("gridar"))
    assert c.refill.isEnabled() and c.request().refill == "copy"
    c.refill.setCurrentIndex(c.refill.findData("redraw"))
    req = c.request()
    assert req.refill == "redraw"
    assert request_from_metadata({"prompt": "x", "settings": {"refill": "redraw"}}).refill == "redraw"
    assert request_from_metadata({"prompt": "x", "settings": {}}).refill == "copy"          # older files
    c.refill.setCurrentIndex(c.refill.findData("copy"))
    c.apply(req)
    assert c.refill.currentData() == "redraw"
    c.method.setCurrentIndex(c.method.findData("best-of-n"))
    assert not c.refill.isEnabled()
    # a proposal that redraws shows "redraw" on the rejected cards, and the artist can turn it into a copy
    strip = CandidateStrip()
    qtbot.addWidget(strip)
    review = VerdictReview(0, (0.9, 0.1, 0.9, 0.2), PruneDecision([True, False, True, False], [0, 1, 2, 3],
                                                                  redraw=[False, True, False, True]),
                           np.zeros((4, 64, 64, 3), np.uint8), threshold=0.5)
    strip.show_review(review, interactive=True)
    assert strip.cards[1].source.currentText() == "redraw" and strip.cards[3].source.currentText() == "redraw"
    assert strip.decision().redraw == [False, True, False, True]
    strip.cards[3].source.setCurrentIndex(strip.cards[3].source.findData(2))
    d = strip.decision()
    assert d.redraw == [False, True, False, False] and d.sources == [0, 1, 2, 2]
