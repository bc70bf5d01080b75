"""The main window: controls on the left, the canvas in the middle, layouts on the right, the candidate strip and
the final ranking below. Widgets only display the studio's state and forward the artist's actions."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QFrame, QHBoxLayout, QLabel, QMainWindow, QProgressBar, QPushButton,
                               QScrollArea, QSplitter, QVBoxLayout, QWidget)

from ..engine import events as ev
from ..io.atomic import atomic_write_text
from ..io.paths import config_dir, data_dir, log_dir
from ..io.png import ImageFileError, read_metadata
from .mask_state import MaskState
from .studio import EditInput, Studio, request_from_metadata
from .widgets.candidates import CandidateStrip
from .widgets.canvas import CanvasView
from .widgets.controls import Controls
from .widgets.edit_panel import EditPanel
from .widgets.final import FinalView
from .widgets.history import HistoryPanel
from .widgets.layouts import LayoutPanel

log = logging.getLogger("gridar.app")
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff *.gif)"


class ErrorBanner(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QPushButton("Dismiss")
        close.clicked.connect(lambda: self.show_message(""))
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.setStyleSheet("background: #b71c1c; color: white;")
        self.setVisible(False)

    def show_message(self, text: str) -> None:
        self.label.setText(text)
        self.setVisible(bool(text))


class MainWindow(QMainWindow):
    def __init__(self, studio: Studio | None = None) -> None:
        super().__init__()
        self.studio = studio or Studio()
        self.setWindowTitle("GridAR Desktop")
        self.setAcceptDrops(True)
        self.save_path: Path | None = None
        self.selected = 0
        self.previews = None
        self.rows_drawn = None
        self.paint_latencies: list[float] = []
        self._await_paint: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self._running_prompt: str | None = None

        self.controls = Controls()
        self.edit_panel = EditPanel()
        self.edit_panel.setVisible(False)
        self.mask: MaskState | None = None
        self.edit_original = None          # the opened image (PIL), refitted when the fit or the model changes
        self.edit_source = None            # uint8 (S, S, 3) at the model's resolution
        self.edit_name = ""
        self.canvas = CanvasView()
        self.strip = CandidateStrip()
        self.layouts = LayoutPanel()
        self.final = FinalView()
        self.history = HistoryPanel(data_dir() / "history")
        self.banner = ErrorBanner()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(False)

        centre = QWidget()
        cl = QVBoxLayout(centre)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.banner)
        cl.addWidget(self.canvas, 1)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(6, 0, 6, 6)
        bl.addWidget(self.strip)
        self.final_label = QLabel("Final ranking (scorer); click to choose another")
        self.final_label.setObjectName("heading")
        bl.addWidget(self.final_label)
        bl.addWidget(self.final)
        mid = QSplitter(Qt.Orientation.Vertical)
        mid.addWidget(centre)
        mid.addWidget(bottom)
        mid.setStretchFactor(0, 3)
        main = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.controls)
        ll.addWidget(self.edit_panel)
        ll.addStretch(1)
        # on a short screen the controls and the edit tools scroll rather than squeeze their hints to nothing
        left_scroll = QScrollArea()
        left_scroll.setWidget(left)
        left_scroll.setWidgetResizable(True)
        left_scroll.setFrameShape(QFrame.Shape.NoFrame)
        left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # a scroll area asks for little width; the column asks for what its widgets need, plus room for the bar
        left_scroll.setMinimumWidth(left.minimumSizeHint().width() + left_scroll.verticalScrollBar().sizeHint().width())
        main.addWidget(left_scroll)
        main.addWidget(mid)
        side = QSplitter(Qt.Orientation.Vertical)
        side.addWidget(self.layouts)
        hist = QWidget()
        hl = QVBoxLayout(hist)
        hl.setContentsMargins(0, 0, 0, 0)
        hist_label = QLabel("History")
        hist_label.setObjectName("heading")
        hl.addWidget(hist_label)
        hl.addWidget(self.history)
        side.addWidget(hist)
        side.setStretchFactor(0, 3)
        side.setStretchFactor(1, 2)
        main.addWidget(side)
        main.setStretchFactor(1, 1)
        main.setSizes([260, 700, 320])
        self.setCentralWidget(main)
        self.statusBar().addPermanentWidget(self.progress)
        self._show_progress(self.studio.busy)
        self._menus()
        self._wire()
        self._restore_settings()

    # -- set-up ------------------------------------------------------------------------------------------------
    def _menus(self) -> None:
        f = self.menuBar().addMenu("&File")
        self.act_open = QAction("&Open image...", self, shortcut=QKeySequence.StandardKey.Open,
                                triggered=self.open_dialog)
        self.act_open.setToolTip("A GridAR PNG restores its settings; any other image opens for editing")
        self.act_save = QAction("&Save", self, shortcut=QKeySequence.StandardKey.Save, triggered=self.save)
        self.act_save_as = QAction("Save &As...", self, shortcut=QKeySequence.StandardKey.SaveAs,
                                   triggered=lambda: self.save(ask=True))
        self.act_logs = QAction("Open &log folder", self, triggered=self.open_logs)
        self.act_quit = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit, triggered=self.close)
        for a in (self.act_open, self.act_save, self.act_save_as, self.act_logs, self.act_quit):
            f.addAction(a)
        v = self.menuBar().addMenu("&View")
        self.act_crisp = QAction("&Crisp pixels", self, checkable=True, checked=True,
                                 triggered=self.canvas.set_crisp)
        v.addAction(self.act_crisp)
        v.addAction(QAction("&Reset zoom", self, shortcut="Ctrl+0", triggered=self.canvas.reset_view))

    def _wire(self) -> None:
        s, c = self.studio, self.controls
        c.generate_clicked.connect(self.start_generation)
        c.stop_band_clicked.connect(s.stop_after_band)
        c.abort_clicked.connect(s.abort)
        c.reuse.clicked.connect(lambda: c.reuse_seed(s.last_seed))
        c.manual.toggled.connect(lambda on: setattr(s, "manual", on))
        c.model_chosen.connect(self.choose_model)
        s.busy_changed.connect(c.set_busy)
        s.busy_changed.connect(self._show_progress)
        s.load_progress.connect(self._on_load_progress)
        s.model_changed.connect(self._on_model_changed)
        s.status.connect(lambda m: self.statusBar().showMessage(m))
        s.error.connect(self.banner.show_message)
        s.engine_event.connect(self.on_event)
        s.verdicts_shown.connect(lambda r: self.strip.show_review(r, interactive=False))
        s.verdicts_wanted.connect(lambda r: self.strip.show_review(r, interactive=True))
        s.layouts_wanted.connect(lambda st, p: self.layouts.show_layouts(st, p, editable=True,
                                                                         original=self._running_prompt))
        s.question_closed.connect(self._question_closed)
        s.result_ready.connect(self.on_result)
        self.strip.continue_clicked.connect(s.answer)
        self.strip.selected.connect(self.select_candidate)
        self.layouts.continue_clicked.connect(s.answer)
        self.final.chosen.connect(self.choose_final)
        self.canvas.painted.connect(self._on_painted)
        self.history.open_requested.connect(self.open_image)
        c.mode_changed.connect(self._on_mode)
        e = self.edit_panel
        e.open_clicked.connect(self.open_dialog)
        e.use_result_clicked.connect(self.edit_result)
        e.fit_changed.connect(lambda _: self._refit(fresh=True))
        e.tool_changed.connect(lambda t: (setattr(self.canvas, "tool", t), self.show_mask()))
        e.brush_changed.connect(lambda r: (setattr(self.canvas, "brush", r), self.canvas.update()))
        e.opacity_changed.connect(lambda o: (setattr(self.canvas, "mask_opacity", o), self.canvas.update()))
        e.invert_clicked.connect(lambda: self._mask_op("invert"))
        e.clear_clicked.connect(lambda: self._mask_op("clear"))
        e.undo_clicked.connect(lambda: self._mask_op("undo"))
        e.redo_clicked.connect(lambda: self._mask_op("redo"))
        e.show_mask_clicked.connect(self.show_mask)
        self.canvas.mask_changed.connect(self._mask_state_shown)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- actions -----------------------------------------------------------------------------------------------
    def start_generation(self) -> asyncio.Task | None:
        if self.studio.busy:
            return None
        try:
            req = self.controls.request()
            req.validate()
        except ValueError as e:
            self.banner.show_message(str(e))
            return None
        if not req.prompt:
            self.banner.show_message("Type a prompt first, e.g. 'a red circle above a blue square'." if not
                                     self.controls.editing else "Describe the edited image first, e.g. 'a green "
                                     "circle and a blue square'.")
            return None
        edit = None
        if self.controls.editing:
            if self.edit_source is None or self.mask is None:
                self.banner.show_message("Open or drop an image to edit first (File > Open image...).")
                return None
            edit = EditInput(self.edit_source.copy(), self.mask.mask.copy(), self.edit_panel.feather.value(),
                             self.edit_panel.context.currentData())
        self.studio.manual = self.controls.manual.isChecked()
        self.final.blockSignals(True)
        self.final.clear()
        self.final.blockSignals(False)
        self.final_label.setText("Final ranking (scorer); click to choose another")    # until this run's arrives
        self.strip.clear()
        self.layouts.clear()
        self.canvas.set_image(None)
        self.canvas.set_mask(self.mask, show=False)
        self.previews, self.rows_drawn = None, None
        self._running_prompt = req.prompt.strip()
        return self._spawn(self.studio.generate(req, edit))

    def choose_model(self, spec: str) -> asyncio.Task | None:
        if not spec:
            path = QFileDialog.getExistingDirectory(self, "Choose a Janus model folder")
            if not path:
                return None
            self.controls.add_model_folder(path)
            spec = path
        return self._spawn(self.studio.load_model(spec))

    # -- edit mode ---------------------------------------------------------------------------------------------
    def _on_mode(self, mode: str) -> None:
        self.edit_panel.setVisible(mode == "edit")
        if mode == "edit":
            self.show_mask()
        else:
            self.canvas.set_mask(None)

    def _model_size(self) -> int:
        return self.studio.model.backend.info.image_size if self.studio.model else 64

    def set_edit_source(self, image, name: str, mask=None) -> None:
        """Open an image (PIL) for editing: fitted to the model's resolution with the chosen fit, shown with an
        empty mask (or `mask`, bool at the model's resolution)."""
        self.edit_original, self.edit_name = image.convert("RGB"), name
        self.banner.show_message("")
        if not self.studio.busy:            # a running job's layouts (maybe awaiting review) stay
            self.layouts.clear()            # the last job's layouts say nothing about this image
            self.statusBar().showMessage(f"Editing {name}: paint over what should change")
        self.mask = None                    # a new image starts with an empty mask (or the one given)
        self._refit(mask)
        if not self.controls.editing:
            self.controls.mode.setCurrentIndex(1)
        self.show_mask()

    def _refit(self, mask=None, fresh: bool = False) -> None:
        """Fit the opened image to the model; the mask starts empty when the framing changes (`fresh`) or the
        model's resolution does."""
        import numpy as np

        from ..engine.edit import fit_image
        if self.edit_original is None:
            return
        size = self._model_size()
        fitted, note = fit_image(self.edit_original, size, self.edit_panel.fit.currentData())
        self.edit_source = np.array(fitted, dtype=np.uint8)
        if fresh or self.mask is None or self.mask.size != size:
            self.mask = MaskState(size)
        if mask is not None and mask.shape == self.mask.mask.shape:
            self.mask.set(mask)
        self.edit_panel.set_source(f"{self.edit_name}: {note}" if note else f"{self.edit_name} ({size}x{size})")
        self.show_mask()

    def show_mask(self) -> None:
        if self.edit_source is None or not self.controls.editing or self.studio.busy:
            return                          # while a job runs the canvas shows its bands
        self.canvas.set_image(self.edit_source, None, 1, f"editing {self.edit_name}: paint what should change")
        self.canvas.set_mask(self.mask, show=True)
        self._mask_state_shown()

    def _mask_op(self, op: str) -> None:
        if self.mask is None:
            return
        getattr(self.mask, op)()
        self.show_mask()

    def _mask_state_shown(self) -> None:
        m = self.mask
        self.edit_panel.set_state(bool(m and m.can_undo), bool(m and m.can_redo), m.coverage if m else None)

    def edit_result(self) -> None:
        """The chosen result becomes the new source (keep editing it)."""
        from PIL import Image
        r = self.studio.result
        if r is None or self.studio.chosen is None:
            self.banner.show_message("No result yet to edit further.")
            return
        keep = self.mask.mask.copy() if self.mask is not None else None
        self.set_edit_source(Image.fromarray(r.images[self.studio.chosen]), f"result of seed {r.request.seed}", keep)

    def _show_progress(self, busy: bool) -> None:
        # The bar means "working": it starts empty with each load or run and is hidden at idle, where a full bar
        # would read as a job still going (the status line says what finished).
        if busy:
            self.progress.setValue(0)
        self.progress.setVisible(busy)

    def _on_load_progress(self, text: str, frac: float) -> None:
        self.progress.setRange(0, 100)
        self.progress.setValue(int(100 * frac))
        self.statusBar().showMessage(text + ("" if frac >= 1 else " ..."))

    def _on_model_changed(self, spec: str) -> None:
        self.controls.set_calibration(self.studio.threshold_summary())
        if self.edit_original is not None and self.mask is not None and self.mask.size != self._model_size():
            self._refit()               # another resolution: the source is refitted, the mask starts empty
        if spec == "demo":
            self.controls.model.setCurrentIndex(0)
        else:
            self.controls.add_model_folder(spec)

    def select_candidate(self, i: int) -> None:
        self.selected = i
        if self.previews is not None and i < len(self.previews):
            total = self.studio.model.backend.info.rows if self.studio.model else 1
            self.canvas.set_image(self.previews[i], self.rows_drawn, total, f"candidate {i + 1}")

    def choose_final(self, i: int) -> None:
        self.studio.choose(i)
        if self.studio.result is not None:
            r = self.studio.result
            self.canvas.set_image(r.images[i], None, 1, f"candidate {i + 1}, score {r.scores[i]:.2f}")

    def _question_closed(self) -> None:
        self.strip.set_interactive(False)
        self.layouts.set_idle()

    # -- engine events (GUI thread) ----------------------------------------------------------------------------
    def on_event(self, e: object) -> None:
        info = self.studio.model.backend.info if self.studio.model else None
        if isinstance(e, ev.Completing):
            self.statusBar().showMessage(f"Band {e.stage + 1}: completing each of the {e.n} candidates once, so the "
                                         f"scorer can read how it ends")
        elif isinstance(e, ev.BandStarted):
            self.statusBar().showMessage(f"Drawing band {e.stage + 1}: token rows {e.from_row + 1}-{e.to_row} "
                                         f"for {e.n} candidates")
            self.progress.setRange(0, 100)
        elif isinstance(e, ev.TokenProgress):
            self.progress.setValue(int(100 * e.tokens_done / max(1, e.tokens_total)))
        elif isinstance(e, ev.RowPreview):
            self.previews, self.rows_drawn = e.previews, e.rows
            self.select_candidate(min(self.selected, len(e.previews) - 1))
        elif isinstance(e, ev.BandCandidates):
            self.previews, self.rows_drawn = e.previews, e.rows
            self.strip.show_previews(e.previews, f"Band {e.stage + 1}: {len(e.previews)} candidates")
            self.select_candidate(min(self.selected, len(e.previews) - 1))
        elif isinstance(e, ev.BandAccepted):
            self.previews, self.rows_drawn = e.previews, e.rows
            self._await_paint = self.studio.event_times.get("BandAccepted")
            self.select_candidate(min(self.selected, len(e.previews) - 1))
        elif isinstance(e, ev.LayoutProposals) and not self.studio.manual:
            self.layouts.show_layouts(e.stage, list(e.prompts), editable=False, original=self._running_prompt)
        elif isinstance(e, ev.LayoutsAccepted):
            self.layouts.show_layouts(e.stage, list(e.prompts), editable=False, original=self._running_prompt)
        elif isinstance(e, ev.FinalRanking):
            self.final.show_ranking(e.images, list(e.scores), list(e.ranking), e.value_weight)
            self.final_label.setText(
                "Final ranking (score and the verifier's verdicts along each path); click to choose another"
                if e.value_weight > 0 else "Final ranking (scorer); click to choose another")
            best = e.ranking[0]
            total = info.rows if info else 1
            self.canvas.set_image(e.images[best], None, total, f"best: candidate {best + 1}")

    def _on_painted(self, t: float) -> None:
        if self._await_paint is not None:
            self.paint_latencies.append(t - self._await_paint)
            self._await_paint = None

    def on_result(self, result) -> None:
        self._append_history(result)

    # -- files -------------------------------------------------------------------------------------------------
    def save(self, ask: bool = False) -> Path | None:
        if self.studio.result is None:
            self.banner.show_message("Nothing to save yet: generate an image first.")
            return None
        path = self.save_path
        if ask or path is None:
            name, _ = QFileDialog.getSaveFileName(self, "Save image", str(path or "gridar.png"), "PNG (*.png)")
            if not name:
                return None
            path = Path(name).with_suffix(".png")
        try:
            self.studio.save(path)
        except OSError as e:
            self.banner.show_message(f"Could not save {path}: {e}")
            return None
        self.save_path = path
        self.statusBar().showMessage(f"Saved {path}")
        return path

    def open_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open an image (a GridAR PNG restores its settings)", "",
                                              IMAGE_FILTER)
        if name:
            self.open_image(name)

    def open_image(self, path: str | Path) -> bool:
        """A PNG this app saved restores its settings (an edit also its source and mask); any other image opens
        in edit mode as the image to edit."""
        from ..io.png import load_image
        try:
            img = load_image(path)
            meta = read_metadata(path) if str(path).lower().endswith(".png") else {}
        except ImageFileError as e:
            self.banner.show_message(str(e))
            return False
        name = Path(path).name
        self.banner.show_message("")
        if not meta:
            self.set_edit_source(img, name)
            self.statusBar().showMessage(f"Opened {name} for editing: paint over what should change")
            return True
        import numpy as np
        from PIL import Image
        req = request_from_metadata(meta)
        if req.edit is not None:
            self.set_edit_source(Image.fromarray(req.edit.source), f"source of {name}", req.edit.mask)
            self.edit_panel.feather.setValue(req.edit.feather)
            self.edit_panel.context.setCurrentIndex(max(0, self.edit_panel.context.findData(req.context)))
            self.controls.apply(req)        # after the switch to edit mode, which proposes its own defaults
        else:
            if self.controls.editing:
                self.controls.mode.setCurrentIndex(0)
            self.controls.apply(req)
            self.canvas.set_image(np.asarray(img), None, 1, f"opened {name}")
        self.statusBar().showMessage(f"Restored settings from {path}")
        return True

    def dragEnterEvent(self, e) -> None:  # noqa: N802
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802
        for url in e.mimeData().urls():
            self.open_image(url.toLocalFile())
            break

    def open_logs(self) -> None:
        log_dir().mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(log_dir())))

    def _append_history(self, result) -> None:
        """Every finished generation is kept (atomically) in the history folder: a crash loses no finished image."""
        if result.stopped_early:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
        path = data_dir() / "history" / f"{stamp}.png"
        try:
            self.studio.save(path)
        except (OSError, ValueError) as e:
            log.warning("could not write history: %s", e)
            return
        self.history.add(path)

    # -- persistence -------------------------------------------------------------------------------------------
    def _settings_path(self) -> Path:
        return config_dir() / "settings.json"

    def _restore_settings(self) -> None:
        try:
            s = json.loads(self._settings_path().read_text())
        except (OSError, ValueError):
            return
        if "geometry" in s:
            self.restoreGeometry(QByteArray(base64.b64decode(s["geometry"])))
        c = self.controls
        c.prompt.setText(s.get("prompt", c.prompt.text()))
        c.cfg.setValue(s.get("cfg", c.cfg.value()))
        c.temperature.setValue(s.get("temperature", c.temperature.value()))
        c.method.setCurrentIndex(max(0, c.method.findData(s.get("method", "gridar"))))
        c.n.setValue(s.get("n", c.n.value()))
        c.manual.setChecked(s.get("manual", False))
        self.act_crisp.setChecked(s.get("crisp", True))
        self.canvas.set_crisp(self.act_crisp.isChecked())

    def save_settings(self) -> None:
        c = self.controls
        s = {"geometry": base64.b64encode(bytes(self.saveGeometry())).decode(), "prompt": c.prompt.text(),
             "cfg": c.cfg.value(), "temperature": c.temperature.value(), "method": c.method.currentData(),
             "n": c.n.value(), "manual": c.manual.isChecked(), "crisp": self.act_crisp.isChecked()}
        try:
            atomic_write_text(self._settings_path(), json.dumps(s, indent=1))
        except OSError as e:
            log.warning("could not save settings: %s", e)

    def closeEvent(self, e) -> None:  # noqa: N802
        self.save_settings()
        self.studio.shutdown()          # aborts a running job and joins the GPU thread
        super().closeEvent(e)


def gui_stall_probe(window: MainWindow, interval_ms: int = 5) -> dict:
    """Measure the longest gap between timer ticks on the GUI thread (a stall blocks the ticks)."""
    stats = {"max_gap_s": 0.0, "ticks": 0}
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        stats["max_gap_s"] = max(stats["max_gap_s"], now - last[0] - interval_ms / 1000)
        stats["ticks"] += 1
        last[0] = now
    timer = QTimer(window)
    timer.timeout.connect(tick)
    timer.start(interval_ms)
    stats["timer"] = timer
    return stats
