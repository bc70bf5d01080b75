"""The main window: controls on the left, the canvas in the middle, layouts on the right, the candidate strip and
the final ranking below. Widgets only display the studio's state and forward the artist's actions."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QByteArray, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QFrame, QHBoxLayout, QLabel, QMainWindow, QMenu, QMessageBox,
                               QProgressBar, QPushButton, QScrollArea, QSplitter, QVBoxLayout, QWidget)

from ..engine import events as ev
from ..io.atomic import atomic_write_text
from ..io.paths import config_dir, data_dir, log_dir
from ..io.png import ImageFileError, save_png
from .document import HISTORY, RUN, DocumentState
from .images import to_qimage
from .mask_state import MaskState
from .studio import EditInput, Studio, one_line, request_from_metadata
from .widgets.candidates import CandidateStrip
from .widgets.canvas import CanvasView
from .widgets.controls import Controls
from .widgets.edit_panel import EditPanel
from .widgets.final import FinalView
from .widgets.history import HistoryPanel
from .widgets.layouts import LayoutPanel

log = logging.getLogger("gridar.app")
EXPORT_SCALES = (4, 8)
FINAL_SCORER = "Final ranking (scorer); click to choose another"
FINAL_VERDICTS = "Final ranking (score and the verifier's verdicts along each path); click to choose another"
PLANNED_EDIT = "an edit"            # stands for an edit's target in a request that is only planned, never run
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff *.gif)"


def _model_type(folder: str) -> object:
    """The model_type a folder's config.json names, or None when it cannot be read."""
    from ..engine.errors import ModelLoadError
    from ..engine.models import read_json_file
    try:
        cfg = read_json_file(Path(folder) / "config.json")      # size-limited: a folder is untrusted input
    except ModelLoadError:
        return None
    return cfg.get("model_type") if isinstance(cfg, dict) else None


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
        self.setAcceptDrops(True)
        self.doc = DocumentState()         # the image on screen, its file, whether that file holds it
        self.confirm_close = True          # tests switch the close question off
        self.export_scale = 4              # "Export upscaled..." factor, remembered in the settings
        self.selected = 0
        self.previews = None
        self.rows_drawn = None
        self.paint_latencies: list[float] = []
        self._await_paint: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self._running_prompt: str | None = None
        self._history_entry: Path | None = None    # the history file of the run on screen
        self._last_dir: Path | None = None
        self._aborting = False

        self.controls = Controls()
        self.controls.set_dtype(self.studio.dtype)
        # the memory estimate beside N follows the form after a pause: typing or holding an arrow key computes once
        self._estimate_timer = QTimer(self)
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(120)
        self._estimate_timer.timeout.connect(self.update_estimate)
        # the guidance and temperature the loaded model came with, the ones its controls show unless the artist chose
        self._model_defaults = {"guidance": self.controls.cfg.value(), "temperature": self.controls.temperature.value()}
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
        self.final_label = QLabel(FINAL_SCORER)
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
        self._document_changed()

    # -- set-up ------------------------------------------------------------------------------------------------
    def _menus(self) -> None:
        f = self.menuBar().addMenu("&File")
        self.act_open = QAction("&Open image...", self, shortcut=QKeySequence.StandardKey.Open,
                                triggered=self.open_dialog)
        self.act_open.setToolTip("Show an image; on the Edit tab it opens for editing")
        self.act_use_settings = QAction("&Use these settings", self, triggered=self.use_settings)
        self.act_use_settings.setToolTip("Set the controls to what the image on screen records (prompt, seed, ...)")
        self.act_save = QAction("&Save", self, shortcut=QKeySequence.StandardKey.Save, triggered=self.save)
        self.act_save_as = QAction("Save &As...", self, shortcut=QKeySequence.StandardKey.SaveAs,
                                   triggered=lambda: self.save(ask=True))
        self.act_export = QAction("&Export upscaled...", self, triggered=self.export_upscaled)
        self.act_export.setToolTip("Save a bigger copy with sharp pixels (each pixel becomes a square)")
        scale_menu = QMenu("Export &size", self)
        self.export_scale_group = QActionGroup(self)
        self.act_scales: dict[int, QAction] = {}
        for k in EXPORT_SCALES:
            a = QAction(f"{k}x", self, checkable=True, checked=k == self.export_scale)
            a.triggered.connect(lambda _on=False, k=k: self._set_export_scale(k))
            self.export_scale_group.addAction(a)
            scale_menu.addAction(a)
            self.act_scales[k] = a
        self.act_add_model = QAction("Add a &model...", self, triggered=lambda: self.choose_model(""))
        self.act_add_model.setToolTip("Load a Janus model folder; DeepSeek's original Janus-Pro folders are imported "
                                      "into a new folder first")
        self.act_logs = QAction("Open &log folder", self, triggered=self.open_logs)
        self.act_quit = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit, triggered=self.close)
        for a in (self.act_open, self.act_use_settings, self.act_save, self.act_save_as, self.act_export):
            f.addAction(a)
        f.addMenu(scale_menu)
        f.addSeparator()
        f.addAction(self.act_add_model)
        f.addSeparator()
        for a in (self.act_logs, self.act_quit):
            f.addAction(a)
        e = self.menuBar().addMenu("&Edit")
        # a focused text box keeps its own Ctrl+C (Qt gives it the key first); elsewhere it copies the image
        self.act_copy = QAction("&Copy image", self, shortcut=QKeySequence.StandardKey.Copy,
                                triggered=self.copy_image)
        e.addAction(self.act_copy)
        v = self.menuBar().addMenu("&View")
        self.act_crisp = QAction("&Crisp pixels", self, checkable=True, checked=True,
                                 triggered=self.canvas.set_crisp)
        v.addAction(self.act_crisp)
        self.act_reset_zoom = QAction("&Reset zoom", self, shortcut="Ctrl+0", triggered=self.canvas.reset_view)
        v.addAction(self.act_reset_zoom)
        self.act_live_previews = QAction("&Live previews", self, checkable=True, checked=self.studio.live_previews,
                                         triggered=self.set_live_previews)
        self.act_live_previews.setToolTip("Show the candidates row by row while a band is drawn. Each preview is a "
                                          "decode of the image; at 384 px on a CPU that takes seconds, so turning "
                                          "this off leaves the time to drawing (each band's result is still shown)")
        v.addAction(self.act_live_previews)
        h = self.menuBar().addMenu("&Help")
        self.act_language = QAction("&What can I type?", self, shortcut="F1", triggered=self.show_language_help)
        self.act_shortcuts = QAction("&Keyboard shortcuts", self, triggered=self.show_shortcut_help)
        self.act_about = QAction("&About GridAR Desktop", self, triggered=self.show_about_box)
        for a in (self.act_language, self.act_shortcuts, self.act_about):
            h.addAction(a)
        self.dialogs: list = []            # the open help windows (non-modal: kept alive here)

    def _wire(self) -> None:
        s, c = self.studio, self.controls
        c.generate_clicked.connect(self.start_generation)
        c.stop_band_clicked.connect(s.stop_after_band)
        c.abort_clicked.connect(self.abort)
        c.reuse.clicked.connect(lambda: c.reuse_seed(s.last_seed))
        c.manual.toggled.connect(lambda on: setattr(s, "manual", on))
        c.model_chosen.connect(self.choose_model)
        c.dtype_chosen.connect(self.choose_dtype)
        c.judge_chosen.connect(self.choose_judge)
        c.estimate_inputs_changed.connect(self.schedule_estimate)
        s.judge_changed.connect(self._on_judge_changed)
        s.busy_changed.connect(c.set_busy)
        s.busy_changed.connect(self._show_progress)
        s.busy_changed.connect(self._on_busy)
        s.busy_changed.connect(lambda busy: None if busy else self.schedule_estimate())
        s.load_progress.connect(self._on_load_progress)
        s.model_changed.connect(self._on_model_changed)
        s.status.connect(self._on_status)
        s.error.connect(self.banner.show_message)
        s.engine_event.connect(self.on_event)
        s.verdicts_shown.connect(lambda r: self.strip.show_review(r, interactive=False))
        s.verdicts_wanted.connect(lambda r: self.strip.show_review(r, interactive=True))
        s.layouts_wanted.connect(lambda st, p: self.layouts.show_layouts(st, p, editable=True,
                                                                         original=self._running_prompt))
        s.question_closed.connect(self._question_closed)
        s.result_ready.connect(self.on_result)
        s.aborting.connect(self._on_aborting)
        c.language_help_clicked.connect(self.show_language_help)
        self.strip.continue_clicked.connect(s.answer)
        self.strip.selected.connect(self.select_candidate)
        self.layouts.continue_clicked.connect(s.answer)
        self.final.chosen.connect(self.choose_final)
        self.canvas.painted.connect(self._on_painted)
        self.history.open_requested.connect(self.open_history)
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
        e.mask_visible_changed.connect(self.canvas.set_mask_visible)
        e.token_grid_changed.connect(self.canvas.set_token_grid_visible)
        self.canvas.mask_changed.connect(self._mask_state_shown)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- dialogs (small methods, so tests replace them: no modal dialog may block a test) ------------------------
    def _ask_save_path(self, title: str, default: Path) -> Path | None:
        name, _ = QFileDialog.getSaveFileName(self, title, str(default), "PNG (*.png)")
        return Path(name) if name else None

    def _ask_open_path(self) -> Path | None:
        title = "Open an image to edit" if self.controls.editing else "Open an image"
        name, _ = QFileDialog.getOpenFileName(self, title, str(self._last_dir or ""), IMAGE_FILTER)
        return Path(name) if name else None

    def _ask_model_folder(self) -> str:
        return QFileDialog.getExistingDirectory(self, "Choose a Janus model folder")

    def _confirm(self, text: str, can_save: bool) -> str:
        """Ask before work is lost: 'save', 'discard' or 'cancel'. On the offscreen platform (the selftest, the
        tests) nobody could see or answer a modal question, so it is not asked."""
        if QGuiApplication.platformName() == "offscreen":
            return "discard"
        box = QMessageBox(QMessageBox.Icon.Question, "GridAR Desktop", text, parent=self)
        buttons = {}
        if can_save:
            buttons[box.addButton(QMessageBox.StandardButton.Save)] = "save"
        buttons[box.addButton(QMessageBox.StandardButton.Discard)] = "discard"
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        buttons[cancel] = "cancel"
        box.setDefaultButton(cancel)
        box.exec()
        return buttons.get(box.clickedButton(), "cancel")

    # -- the document on screen --------------------------------------------------------------------------------
    def _document_changed(self) -> None:
        """Title, unsaved mark and the actions that need a document follow the document on screen."""
        d = self.doc.current
        self.setWindowTitle(self.doc.title())
        self.setWindowModified(self.doc.unsaved)
        for a in (self.act_save, self.act_save_as, self.act_export, self.act_copy):
            a.setEnabled(d is not None)
        self.act_use_settings.setEnabled(d is not None and d.has_settings)
        self.edit_panel.set_result_available(d is not None)

    def _clear_views(self) -> None:
        """What is shown changes: the candidate strip, ranking and layouts of an earlier run say nothing about it."""
        self.final.clear_quietly()
        self.final_label.setText(FINAL_SCORER)
        self.strip.clear()
        self.layouts.clear()
        self.previews, self.rows_drawn = None, None
        self._history_entry = None

    def _run_metadata(self, result, chosen: int) -> dict:
        meta = result.metadata()
        meta["chosen"] = chosen
        meta["settings"]["model"] = self.studio.model.spec if self.studio.model else ""
        return meta

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
        refused = self._check_prompt(req.prompt, edit is not None)
        if refused:                         # said before anything is cleared: the image on screen stays
            self.banner.show_message(refused)
            self.statusBar().showMessage("Prompt not understood: nothing was started")
            return None
        self.studio.manual = self.controls.manual.isChecked()
        self._clear_views()
        self.doc.clear()                    # the canvas now shows the new run (its result is kept in history)
        self._document_changed()
        self.canvas.set_image(None)
        self.canvas.set_mask(self.mask, show=False)
        self._running_prompt = req.prompt.strip()
        return self._spawn(self.studio.generate(req, edit))

    def _check_prompt(self, text: str, edit: bool) -> str | None:
        return self.studio.check_prompt(text, edit=edit)

    def abort(self) -> None:
        """Esc / Abort: say so at once; the worker stops at its next check."""
        if self.studio.busy:
            self._on_aborting(True)
        self.studio.abort()

    def _on_aborting(self, on: bool) -> None:
        self._aborting = on
        self.controls.set_aborting(on)
        if on:
            self.statusBar().showMessage("Aborting...")

    def _on_busy(self, busy: bool) -> None:
        if not busy and self._aborting:
            self._on_aborting(False)

    def _on_status(self, text: str) -> None:
        # while aborting, progress messages from the last steps would read as the job going on
        if not self._aborting or not text.startswith(("Band", "Drawing", "Generating")):
            self.statusBar().showMessage(text)

    def choose_model(self, spec: str) -> asyncio.Task | None:
        """Load 'demo' or a folder; '' (Add a model...) asks for a folder first and looks at what it holds."""
        if not spec:
            path = self._ask_model_folder()
            if not path:
                self._show_loaded_model()       # the box names the model actually loaded, not "Add a model..."
                return None
            return self.add_model(path)
        task = self._spawn(self.studio.load_model(spec))
        task.add_done_callback(lambda _t: self._show_loaded_model())
        return task

    def add_model(self, path: str | Path) -> asyncio.Task | None:
        """A folder the artist chose: a transformers-format Janus folder loads; DeepSeek's original layout is offered
        an import into a new folder, which then loads; anything else is one line in the banner saying what is wrong
        and what to do, and the loaded model stays."""
        from ..engine.errors import ModelLoadError
        from ..engine.importer import detect_layout, suggested_destination
        from ..engine.importer.layout import read_source
        from ..engine.models import check_model_folder
        path = str(Path(path).expanduser())
        if self.studio.busy:
            self.banner.show_message("A job is running: wait for it to finish or abort it (Esc) before adding a "
                                     "model.")
            return None
        self.banner.show_message("")           # an older message is about another folder
        self._show_loaded_model()               # not "Add a model..." while the folder is looked at
        layout = detect_layout(path)
        try:
            if layout == "janus-original" or _model_type(path) == "multi_modality":
                read_source(path)           # a partial download (or a JanusFlow) is refused before any question
            else:
                check_model_folder(path)    # neither format, another family: the line that names it
        except ModelLoadError as e:
            self.banner.show_message(one_line(str(e)))
            self._show_loaded_model()
            return None
        if layout != "janus-original":
            self.controls.add_model_folder(path)
            return self.choose_model(path)
        dst = self._offer_import(path, suggested_destination(path))
        if dst is None:
            self.statusBar().showMessage("Not imported: the original folder was left as it is")
            self._show_loaded_model()
            return None
        return self._spawn(self._import_then_load(path, dst))

    async def _import_then_load(self, src: str, dst: Path) -> bool:
        out = await self.studio.import_model(src, dst)
        if out is None:
            self._show_loaded_model()
            return False
        self.controls.add_model_folder(str(out))
        ok = await self.studio.load_model(str(out))
        self._show_loaded_model()
        return ok

    def _offer_import(self, src: str, dst: Path) -> Path | None:
        """Ask whether to import an original-layout folder into `dst`; returns the folder to write, or None. (A
        small method, so tests replace it: no modal dialog may block a test.)"""
        text = (f"'{Path(src).name}' is in DeepSeek's original Janus layout, which GridAR reads only after a "
                f"one-time import into a new folder:\n\n{dst}\n\nThe original stays as it is. The import needs "
                "about as much disk space as the model; Abort (Esc) cancels it.")
        if QGuiApplication.platformName() == "offscreen":
            return None
        box = QMessageBox(QMessageBox.Icon.Question, "Import a model", text, parent=self)
        go = box.addButton("Import", QMessageBox.ButtonRole.AcceptRole)
        other = box.addButton("Choose another folder...", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(go)
        box.exec()
        if box.clickedButton() is go:
            return dst
        if box.clickedButton() is other:
            name = QFileDialog.getExistingDirectory(self, "Import into a new folder inside...", str(dst.parent))
            from ..engine.importer import suggested_destination
            return suggested_destination(Path(name) / Path(src).name) if name else None    # a free name there
        return None

    def set_live_previews(self, on: bool) -> None:
        """Row previews during a band, from the next run on (remembered in the settings)."""
        self.studio.live_previews = bool(on)
        self.act_live_previews.setChecked(bool(on))

    def choose_dtype(self, name: str) -> None:
        """The dtype is kept in the studio and the settings and used from the next model load."""
        from .studio import precision_words
        self.studio.dtype = name
        m = self.studio.model
        if m is not None and m.dtype != name:
            self.statusBar().showMessage(f"Precision {precision_words(name, m.backend.device)}: used from the next "
                                         "model load (choose the model again to reload it now)")

    def choose_judge(self, spec: str) -> asyncio.Task | None:
        """'self' or a judging folder; '' asks for one. It loads on the GPU thread; the box shows the judge in use."""
        if not spec:
            spec = self._ask_judge_folder()
            if not spec:
                self.controls.show_judge(self.studio.judge)
                return None
        task = self._spawn(self.studio.set_judge(spec))
        task.add_done_callback(lambda _t: self.controls.show_judge(self.studio.judge))
        return task

    def _ask_judge_folder(self) -> str:
        return QFileDialog.getExistingDirectory(self, "Choose a judging model folder (image-text-to-text)")

    def _on_judge_changed(self, spec: str) -> None:
        self.controls.show_judge(spec)
        self._show_verifier()
        self.schedule_estimate()

    def _show_verifier(self) -> None:
        from .studio import verifier_calibration
        s = self.studio
        self.controls.set_calibration(s.threshold_summary(), s.threshold_details())
        self.controls.set_verifier_calibration(*verifier_calibration(s.model.roles if s.model else None))

    def schedule_estimate(self) -> None:
        self._estimate_timer.start()

    def update_estimate(self) -> None:
        """The memory estimate beside N, for the form as it is (`studio.memory_estimate`); kept while a job runs."""
        if self.studio.busy:
            return                          # recomputed when the job ends
        c = self.controls
        try:
            req = c.request(draw_seed=False)
        except (ValueError, TypeError):
            return
        if c.editing:
            # an edit prefills the source's codes too; the plan reads only whether there is one (building the real
            # target would encode the image, model work on the GUI thread)
            from dataclasses import replace
            req = replace(req, edit=PLANNED_EDIT)
        est = self.studio.memory_estimate(req)
        if est is None:
            c.set_memory_estimate("")
        else:
            c.set_memory_estimate(est.text, est.fits, est.details)

    def _show_loaded_model(self) -> None:
        m, box = self.studio.model, self.controls.model
        spec = m.spec if m is not None else "demo"
        i = box.findData(spec)
        if i < 0 and m is not None:
            self.controls.add_model_folder(spec)
            return
        box.setCurrentIndex(max(0, i))

    # -- edit mode ---------------------------------------------------------------------------------------------
    def _on_mode(self, mode: str) -> None:
        self.edit_panel.setVisible(mode == "edit")
        if self.studio.busy:
            return                          # the running job keeps its canvas: its request is a snapshot
        if mode == "edit":
            self.show_mask()
        else:
            self.canvas.set_mask(None)
            d = self.doc.current
            if d is not None:               # back on Generate: the document on screen again
                self.canvas.set_image(d.image, None, 1, self._caption(d))

    def _model_size(self) -> int:
        return self.studio.model.backend.info.image_size if self.studio.model else 64

    def set_edit_source(self, image, name: str, mask=None, note: str = "") -> None:
        """Open an image (PIL) for editing: fitted to the model's resolution with the chosen fit, shown with an
        empty mask (or `mask`, bool at the model's resolution). `note`: what the banner says about this image (an
        older message is stale)."""
        self.edit_original, self.edit_name = image.convert("RGB"), name
        if not self.studio.busy:            # a running job's views (maybe awaiting review) stay
            self._clear_views()             # the last job's strip, ranking and layouts say nothing about this image
            self.banner.show_message(note)
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
        """The image on screen (a run's chosen candidate, an opened file, a history entry) becomes the new
        source: keep editing it."""
        from PIL import Image
        d = self.doc.current
        if d is None:
            self.banner.show_message("No result yet to edit further: generate or open an image first.")
            return
        keep = self.mask.mask.copy() if self.mask is not None else None
        name = f"result of seed {d.metadata.get('settings', {}).get('seed')}" if d.kind == RUN else d.name
        self.set_edit_source(Image.fromarray(d.image), name, keep)

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
        s, c = self.studio, self.controls
        self._show_verifier()
        self.schedule_estimate()
        from ..engine.prompt_language import language_vocabulary
        c.set_vocabulary(language_vocabulary(self._prompt_language()))
        backend = s.model.backend
        self.canvas.set_token_grid(backend.info.rows, backend.info.cols)
        self.edit_panel.set_image_size(backend.info.image_size)
        self._take_model_defaults(getattr(backend, "defaults", None) or {})
        if self.edit_original is not None and self.mask is not None and self.mask.size != self._model_size():
            self._refit()               # another resolution: the source is refitted, the mask starts empty
        if spec == "demo":
            c.model.setCurrentIndex(0)
        else:
            c.add_model_folder(spec)

    def _take_model_defaults(self, defaults: dict) -> None:
        """A model comes with its guidance and temperature (Janus-Pro 5, the demo 2): the controls take them, except
        where the artist set a value of their own (one that differs from the last model's default)."""
        c, before = self.controls, self._model_defaults
        for key, box in (("guidance", c.cfg), ("temperature", c.temperature)):
            if key in defaults and abs(box.value() - before.get(key, box.value())) < 1e-9:
                box.setValue(float(defaults[key]))
        self._model_defaults = {**before, **{k: float(v) for k, v in defaults.items()
                                             if k in ("guidance", "temperature")}}

    def _prompt_language(self) -> str | None:
        m = self.studio.model
        return getattr(m.backend, "prompt_language", None) if m is not None else None

    def select_candidate(self, i: int) -> None:
        self.selected = i
        if self.previews is not None and i < len(self.previews):
            total = self.studio.model.backend.info.rows if self.studio.model else 1
            self.canvas.set_image(self.previews[i], self.rows_drawn, total, f"candidate {i + 1}")

    def choose_final(self, i: int) -> None:
        """The artist picks another finished candidate: it becomes the document (unsaved) and the run's history
        entry, so what is kept is what was chosen."""
        self.studio.choose(i)
        r = self.studio.result
        if r is None or not 0 <= i < len(r.images):
            return
        self.canvas.set_image(r.images[i], None, 1, f"candidate {i + 1}, score {r.scores[i]:.2f}")
        d = self.doc.choose(r.images[i], self._run_metadata(r, i), i)
        if d is None:
            return
        self._document_changed()
        if self._history_entry is not None:
            try:
                save_png(Image.fromarray(d.image), self._history_entry, d.prompt, d.metadata)
            except OSError as e:
                log.warning("could not update history: %s", e)
            else:
                self.history.refresh(self._history_entry)

    def _question_closed(self) -> None:
        self.strip.set_interactive(False)
        self.layouts.set_idle()

    # -- engine events (GUI thread) ----------------------------------------------------------------------------
    def on_event(self, e: object) -> None:
        info = self.studio.model.backend.info if self.studio.model else None
        quiet = self._aborting              # while aborting, the status bar keeps saying so
        if isinstance(e, ev.Completing):
            if not quiet:
                self.statusBar().showMessage(f"Band {e.stage + 1}: completing each of the {e.n} candidates once, "
                                             f"so the scorer can read how it ends")
        elif isinstance(e, ev.BandStarted):
            of = f" of {e.total}" if e.total else ""
            if not quiet:
                self.statusBar().showMessage(f"Drawing band {e.stage + 1}{of} for {e.n} candidates")
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
            # what the run does next between two bands (at 384 px on a CPU, minutes), not the band just drawn
            if not quiet and self._band_step(e.stage, "verify"):
                self.statusBar().showMessage(f"Band {e.stage + 1}: the checker looks at each of the "
                                             f"{len(e.previews)} candidates")
        elif isinstance(e, ev.BandAccepted):
            self.previews, self.rows_drawn = e.previews, e.rows
            self._await_paint = self.studio.event_times.get("BandAccepted")
            self.select_candidate(min(self.selected, len(e.previews) - 1))
            if not quiet and self._band_step(e.stage, "reformulate"):
                self.statusBar().showMessage(f"Band {e.stage + 1}: writing a layout prompt for each candidate")
        elif isinstance(e, ev.LayoutProposals) and not self.studio.manual:
            self.layouts.show_layouts(e.stage, list(e.prompts), editable=False, original=self._running_prompt)
        elif isinstance(e, ev.LayoutsAccepted):
            self.layouts.show_layouts(e.stage, list(e.prompts), editable=False, original=self._running_prompt)
        elif isinstance(e, ev.FinalRanking):
            self.final.show_ranking(e.images, list(e.scores), list(e.ranking), e.value_weight)
            self.final_label.setText(FINAL_VERDICTS if e.value_weight > 0 else FINAL_SCORER)
            best = e.ranking[0]
            total = info.rows if info else 1
            self.canvas.set_image(e.images[best], None, total, f"best: candidate {best + 1}")

    def _band_step(self, stage: int, step: str) -> bool:
        """Whether the running GridAR request verifies by partial view ('verify') or reformulates ('reformulate')
        after band `stage` (a rollout says so itself with its Completing event)."""
        req = self.studio._request
        if req is None or req.method != "gridar" or not 0 <= stage < len(req.schedule):
            return False
        band = req.schedule[stage]
        if step == "verify":
            return band.verify and req.prune and req.verify_by == "view"
        return band.reformulate and req.reformulate

    def _on_painted(self, t: float) -> None:
        if self._await_paint is not None:
            self.paint_latencies.append(t - self._await_paint)
            self._await_paint = None

    def on_result(self, result) -> None:
        chosen = self.studio.chosen if self.studio.chosen is not None else result.best
        self.doc.show_run(result.images[chosen], result.request.prompt, self._run_metadata(result, chosen), chosen)
        self._document_changed()
        self._append_history(result)

    # -- files -------------------------------------------------------------------------------------------------
    def _default_path(self, suffix: str = "") -> Path:
        d = self.doc.current
        folder = (d.path.parent if d is not None and d.path is not None else None) or self._last_dir or Path.home()
        return folder / f"{d.default_stem if d else 'gridar'}{suffix}.png"

    def save(self, ask: bool = False) -> Path | None:
        """Ctrl+S: the document on screen to its own file (asking for a name when it has none); Save As asks."""
        d = self.doc.current
        if d is None:
            self.banner.show_message("Nothing to save yet: generate or open an image first.")
            return None
        path = None if ask else d.path
        if path is None:
            path = self._ask_save_path("Save image", self._default_path())
            if path is None:
                return None
            path = Path(path).with_suffix(".png")
        try:
            save_png(Image.fromarray(d.image), path, d.prompt, d.metadata)
        except OSError as e:
            self.banner.show_message(f"Could not save {path}: {e.strerror or e}. Choose another folder "
                                     f"(File > Save As...).")
            return None
        self.doc.saved_to(path)
        self._last_dir = path.parent
        self._document_changed()
        self.statusBar().showMessage(f"Saved {path}")
        return path

    def _set_export_scale(self, k: int) -> None:
        if k in EXPORT_SCALES:
            self.export_scale = k
            self.act_scales[k].setChecked(True)

    def export_upscaled(self) -> Path | None:
        """A bigger copy for sharing: every pixel becomes a k x k square (nearest neighbour, nothing invented);
        the document and its file are unchanged."""
        d, k = self.doc.current, self.export_scale
        if d is None:
            self.banner.show_message("Nothing to export yet: generate or open an image first.")
            return None
        path = self._ask_save_path(f"Export a {k}x copy", self._default_path(f"-{k}x"))
        if path is None:
            return None
        path = Path(path).with_suffix(".png")
        img = Image.fromarray(d.image)
        big = img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)
        meta = dict(d.metadata)
        if meta:
            meta["export_scale"] = k
        try:
            save_png(big, path, d.prompt, meta)
        except OSError as e:
            self.banner.show_message(f"Could not export {path}: {e.strerror or e}. Choose another folder.")
            return None
        self._last_dir = path.parent
        self.statusBar().showMessage(f"Exported a {k}x copy ({big.width}x{big.height}) to {path}")
        return path

    def copy_image(self) -> None:
        d = self.doc.current
        if d is None:
            self.statusBar().showMessage("Nothing to copy yet")
            return
        QGuiApplication.clipboard().setImage(to_qimage(d.image))
        self.statusBar().showMessage("Copied the image to the clipboard")

    def open_dialog(self) -> None:
        path = self._ask_open_path()
        if path is not None:
            self.open_image(path)

    def _read(self, path: Path) -> tuple | None:
        """(PIL image, metadata, problems) of an image file, or None after saying in the banner why not."""
        from ..io import png
        try:
            img = png.load_image(path)
        except ImageFileError as e:
            self.banner.show_message(str(e))
            return None
        meta, problems = {}, []
        if path.suffix.lower() == ".png":
            try:
                meta, problems = png.read_metadata_checked(path)
            except ImageFileError as e:         # the metadata is broken; the image itself is fine
                meta, problems = {}, [str(e)]
        if not isinstance(meta, dict):
            meta, problems = {}, problems + ["its GridAR metadata is not a record of settings"]
        return img, meta, list(problems)

    def open_image(self, path: str | Path) -> bool:
        """Open a file and make it the document. On the Edit tab (and for any image without GridAR metadata) it
        opens for editing; a GridAR PNG on the Generate tab is shown. Settings never change here: File > Use these
        settings restores them."""
        return self._open(Path(path), history=False)

    def open_history(self, path: str | Path) -> bool:
        return self._open(Path(path), history=True)

    def _open(self, path: Path, history: bool) -> bool:
        if self.studio.busy:
            self.banner.show_message("A job is running: wait for it to finish or abort it (Esc) before opening "
                                     "another image.")
            return False
        read = self._read(path)
        if read is None:
            return False
        img, meta, problems = read
        import numpy as np
        arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
        self._clear_views()
        d = self.doc.show_history(path, arr, meta) if history else self.doc.show_file(path, arr, meta)
        self._document_changed()
        self._last_dir = path.parent if not history else self._last_dir
        note = (f"{path.name} opened, but its GridAR metadata has problems: {'; '.join(problems)}. The image is "
                "fine; its settings may be incomplete." if problems else "")
        self.banner.show_message(note)
        if self.controls.editing or not d.has_settings:
            self.set_edit_source(img, path.name, note=note)
            self.statusBar().showMessage(f"Opened {path.name} for editing: paint over what should change")
        else:
            self.canvas.set_image(arr, None, 1, self._caption(d))
            self.statusBar().showMessage(f"Showing {path.name}. File > Use these settings sets the controls to "
                                         "how it was made")
        return True

    def _caption(self, d) -> str:
        if d.kind == RUN:
            return f"candidate {d.chosen + 1}" if d.chosen is not None else ""
        return f"{'history' if d.kind == HISTORY else 'opened'}: {d.prompt or d.name}"

    def use_settings(self) -> bool:
        """Set the controls to what the document's file records, and only that: a value the file does not
        record keeps what the artist set. An edit's source and mask come back too."""
        d = self.doc.current
        if d is None or not d.has_settings:
            self.banner.show_message("The image on screen records no settings (only GridAR PNGs do).")
            return False
        s = d.metadata["settings"]
        try:
            req = request_from_metadata(d.metadata)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            self.banner.show_message(f"The settings in {d.name} cannot be read ({e}); nothing was changed.")
            return False
        c, e = self.controls, self.edit_panel
        if req.edit is not None:
            from PIL import Image as PILImage
            self.set_edit_source(PILImage.fromarray(req.edit.source), f"source of {d.name}", req.edit.mask)
            e.feather.setValue(req.edit.feather)
        elif c.editing and "edit" not in s:
            c.mode.setCurrentIndex(0)
        # after any switch of mode, which proposes the mode's own defaults
        if "context" in s:
            e.context.setCurrentIndex(max(0, e.context.findData(req.context)))
        if "prompt" in d.metadata:
            c.prompt.setText(req.prompt)
        if "method" in s:
            c.method.setCurrentIndex(max(0, c.method.findData(req.method)))
        if "n" in s:
            c.n.setValue(req.n)
        if "seed" in s:
            c.reuse_seed(req.seed)
        if "cfg" in s:
            c.cfg.setValue(req.params.cfg)
        if "temperature" in s:
            c.temperature.setValue(req.params.temperature)
        if "strategy" in s or "reformulate" in s:
            c.strategy.setCurrentIndex(max(0, c.strategy.findData(req.strategy if req.reformulate else "off")))
        if "verify_by" in s:
            c.verify_by.setCurrentIndex(max(0, c.verify_by.findData(req.verify_by)))
        if "refill" in s:
            c.refill.setCurrentIndex(max(0, c.refill.findData(req.refill)))
        if "threshold" in s:
            c.auto_threshold.setChecked(req.threshold is None)
            if req.threshold is not None:
                c.threshold.setValue(req.threshold)
        self.statusBar().showMessage(f"The controls now hold the settings of {d.name}")
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
        """Every finished generation is kept (atomically) in the history folder: a crash loses no finished image.
        The entry holds the candidate on screen; choosing another rewrites it."""
        d = self.doc.current
        if result.stopped_early or d is None or d.kind != RUN:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
        path = data_dir() / "history" / f"{stamp}.png"
        try:
            save_png(Image.fromarray(d.image), path, d.prompt, d.metadata)
        except (OSError, ValueError) as e:
            log.warning("could not write history: %s", e)
            return
        self._history_entry = path
        self.history.add(path)

    # -- help --------------------------------------------------------------------------------------------------
    def _help(self):
        try:
            from .widgets import help_dialogs
        except ImportError:
            self.statusBar().showMessage("Help is not available in this build")
            return None
        return help_dialogs

    def _keep(self, dialog) -> None:
        if dialog is not None:
            self.dialogs = [d for d in self.dialogs if d.isVisible()] + [dialog]

    def show_language_help(self) -> None:
        h = self._help()
        if h is not None:
            self._keep(h.show_language_sheet(self, self._prompt_language()))

    def show_shortcut_help(self) -> None:
        h = self._help()
        if h is not None:
            self._keep(h.show_shortcuts(self))

    def about_details(self) -> dict:
        from .. import __version__
        m = self.studio.model
        from .studio import judge_words
        return {"version": __version__, "model": m.spec if m else "none yet",
                "device": str(m.backend.device) if m else self.studio.device,
                "precision": self._precision_in_use(),
                "judge": judge_words(m.judge if m else self.studio.judge),
                "history folder": str(data_dir() / "history"), "settings file": str(self._settings_path()),
                "log folder": str(log_dir())}

    def _precision_in_use(self) -> str:
        """The dtype chosen and, once loaded, what the language model holds (auto picks by device and model)."""
        m = self.studio.model
        if m is None:
            return self.studio.dtype
        try:
            prec = m.backend.precision          # read off the weights: a CPU's mixed precision shows as such
            held, words = str(prec.lm).replace("torch.", ""), prec.words()
        except (AttributeError, StopIteration):
            return m.dtype
        return words if m.dtype == held else f"{words} (chosen: {m.dtype})"

    def show_about_box(self) -> None:
        h = self._help()
        if h is not None:
            self._keep(h.show_about(self, self.about_details()))

    # -- persistence -------------------------------------------------------------------------------------------
    def _settings_path(self) -> Path:
        return config_dir() / "settings.json"

    def _restore_settings(self) -> None:
        """settings.json is read as untrusted: a value of the wrong type or out of range is ignored, never fatal."""
        try:
            s = json.loads(self._settings_path().read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return
        if not isinstance(s, dict):
            return
        c = self.controls

        def number(key: str):
            v = s.get(key)
            return v if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None

        geometry = s.get("geometry")
        if isinstance(geometry, str):
            try:
                self.geometry_restored = self.restoreGeometry(QByteArray(base64.b64decode(geometry, validate=True)))
            except (ValueError, TypeError):
                pass
        if isinstance(s.get("prompt"), str):
            c.prompt.setText(s["prompt"])
        if number("cfg") is not None:
            c.cfg.setValue(float(s["cfg"]))
        if number("temperature") is not None:
            c.temperature.setValue(float(s["temperature"]))
        if isinstance(s.get("method"), str) and c.method.findData(s["method"]) >= 0:
            c.method.setCurrentIndex(c.method.findData(s["method"]))
        if isinstance(s.get("n"), int) and not isinstance(s["n"], bool):
            c.n.setValue(s["n"])
        if isinstance(s.get("manual"), bool):
            c.manual.setChecked(s["manual"])
        if isinstance(s.get("crisp"), bool):
            self.act_crisp.setChecked(s["crisp"])
        self.canvas.set_crisp(self.act_crisp.isChecked())
        if s.get("export_scale") in EXPORT_SCALES and not isinstance(s.get("export_scale"), bool):
            self._set_export_scale(s["export_scale"])
        if isinstance(s.get("dtype"), str) and c.set_dtype(s["dtype"]):
            self.studio.dtype = s["dtype"]      # the first model load uses it
        if isinstance(s.get("live_previews"), bool):
            self.set_live_previews(s["live_previews"])
        judge = s.get("judge")
        if isinstance(judge, str) and (judge == "self" or Path(judge).expanduser().is_dir()):
            self.studio.judge = judge           # loads with the first model (which says so if it cannot)
            c.show_judge(judge)

    def save_settings(self) -> None:
        c = self.controls
        s = {"geometry": base64.b64encode(bytes(self.saveGeometry())).decode(), "prompt": c.prompt.text(),
             "cfg": c.cfg.value(), "temperature": c.temperature.value(), "method": c.method.currentData(),
             "n": c.n.value(), "manual": c.manual.isChecked(), "crisp": self.act_crisp.isChecked(),
             "export_scale": self.export_scale, "dtype": self.studio.dtype, "judge": self.studio.judge,
             "live_previews": self.studio.live_previews}
        try:
            atomic_write_text(self._settings_path(), json.dumps(s, indent=1))
        except OSError as e:
            log.warning("could not save settings: %s", e)

    def _may_close(self) -> bool:
        """A running job and an unsaved result are work: ask before losing them."""
        busy, unsaved = self.studio.busy, self.doc.unsaved
        if not (busy or unsaved):
            return True
        if busy:
            text = "An image is being made. Stop it and quit?"
        else:
            text = f"{self.doc.current.name} is not saved. Save it before quitting?"
        answer = self._confirm(text, can_save=unsaved and not busy)
        if answer == "save":
            return self.save() is not None
        return answer == "discard"

    def closeEvent(self, e) -> None:  # noqa: N802
        if self.confirm_close and not self._may_close():
            e.ignore()
            return
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

    def resume() -> None:               # after a pause (e.g. a screenshot, which is not generation work)
        last[0] = time.perf_counter()
        timer.start(interval_ms)
    stats["resume"] = resume
    return stats
