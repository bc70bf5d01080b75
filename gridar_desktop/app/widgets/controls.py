"""The generation form: prompt, model, method, N, seed, guidance, temperature, strategy, pruning threshold;
builds request snapshots."""
from __future__ import annotations

import random
import re

from PySide6.QtCore import QStringListModel, Qt, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QCompleter, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QSpinBox, QTabBar, QToolButton, QVBoxLayout, QWidget)

from ...engine.defaults import DTYPE_CHOICES, GRIDAR_DEFAULTS, ROLLOUT_THRESHOLD
from ...engine.sampling import SamplingParams
from ...engine.search import GROUP, SearchRequest

ROLLOUT_HINT = "A candidate is dropped when its finished picture is unlikely to match the prompt"
ROLLOUT_DETAILS = (f"Rejected when the scorer's P(yes) on one completion of the candidate is below "
                   f"{ROLLOUT_THRESHOLD:g}")
# what the threshold row shows in place of the number while "automatic" is on (the manual value waits, hidden)
AUTO_VIEW_TEXT = "the model's own"
AUTO_ROLLOUT_TEXT = f"{ROLLOUT_THRESHOLD:g}, the scorer's"
# how each dtype choice (`engine.defaults.DTYPE_CHOICES`) reads in the box
DTYPE_LABELS = {"auto": "Auto", "float32": "float32 (full)", "bfloat16": "bfloat16 (half memory)",
                "float16": "float16 (half memory)"}
DTYPE_TIP_HEAD = "The number format of the model's weights and cache, used from the next model load."
JUDGE_TIP = ("Who checks the half-drawn candidates, scores the finished ones and writes the layout prompts: the "
             "generator's own understanding (no extra memory), or a separate local vision-language model folder "
             "(e.g. Qwen2.5-VL), loaded beside the generator")
UNCALIBRATED_TEXT = "This verifier is not calibrated: its pruning threshold is a general guess"
WARNING_COLOUR = "#d17a00"
ALARM_COLOUR = "#e53935"
# a word of the prompt, for completion: letters only (a count or a comma ends it)
WORD = re.compile(r"[A-Za-z-]*$")


class CandidateCount(QSpinBox):
    """N: GridAR prunes and refills within groups of GROUP candidates, so its N is a multiple of GROUP; typing
    another number is corrected to the nearest multiple instead of failing only after Generate."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.multiple = 1

    def set_multiple(self, k: int) -> None:
        self.multiple = k
        self.setSingleStep(k)
        self.setMinimum(k)
        self.setValue(self.snapped(self.value()))

    def setValue(self, v: int) -> None:  # noqa: N802 (Qt naming): a restored or applied N is snapped too
        super().setValue(self.snapped(int(v)))

    def snapped(self, v: int) -> int:
        k = self.multiple
        return min(max(k, (v + k // 2) // k * k), self.maximum() // k * k)

    def validate(self, text: str, pos: int):  # noqa: D102 (Qt override)
        state, text, pos = super().validate(text, pos)
        if state == QValidator.State.Acceptable and int(text) % self.multiple:
            state = QValidator.State.Intermediate
        return state, text, pos

    def fixup(self, text: str) -> str:  # noqa: D102 (Qt override)
        try:
            return str(self.snapped(int(text)))
        except ValueError:
            return str(self.value())


def label_tips(form: QFormLayout, row_tips: dict | None = None) -> None:
    """Each row's label says the same as its field's tooltip: an artist hovers the word they do not know."""
    row_tips = row_tips or {}
    for row in range(form.rowCount()):
        label = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
        field = form.itemAt(row, QFormLayout.ItemRole.FieldRole)
        if label is None or field is None or label.widget() is None:
            continue
        tip = row_tips.get(field.layout()) if field.layout() is not None else field.widget().toolTip()
        if tip:
            label.widget().setToolTip(tip)


def wrapped_tip(*paragraphs: str) -> str:
    """A tooltip of one or more paragraphs that wraps (Qt wraps rich text only; a long command in a calibration note
    would otherwise run past the screen), each starting with a capital."""
    import html
    paras = [p.strip() for p in paragraphs if p and p.strip()]
    return "".join(f"<p>{html.escape(p[0].upper() + p[1:])}</p>" for p in paras)


PROMPT_TIP = "Describe the picture. Press ? beside this box to see what the model understands"
PROMPT_TIP_EDIT = "Describe the whole image after the edit"


class SeedBox(QLineEdit):
    """The seed: any whole number from 0 to 2**63 - 1, as torch takes it and the CLI writes it (a QSpinBox stops at
    2**31 - 1, so a file's seed could not be shown). The spin box's value() / setValue() are kept."""

    MAX = 2**63 - 1

    def __init__(self, parent=None) -> None:
        super().__init__("0", parent)
        from PySide6.QtCore import QRegularExpression
        from PySide6.QtGui import QRegularExpressionValidator
        self.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{1,19}"), self))
        self.editingFinished.connect(lambda: self.setValue(self.value()))
        # room for a drawn seed (10 digits) without scrolling; longer ones scroll in the box
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance("0" * 11) + 16)

    def value(self) -> int:
        try:
            return min(int(self.text() or 0), self.MAX)
        except ValueError:
            return 0

    def setValue(self, seed: int) -> None:  # noqa: N802 (the spin box's name)
        self.setText(str(max(0, min(int(seed), self.MAX))))


class Controls(QWidget):
    generate_clicked = Signal()
    stop_band_clicked = Signal()
    abort_clicked = Signal()
    model_chosen = Signal(str)          # 'demo', a folder, or '' to browse
    mode_changed = Signal(str)          # 'generate' | 'edit'
    language_help_clicked = Signal()    # "What can I type?"
    dtype_chosen = Signal(str)          # 'auto', 'float32', 'bfloat16', ... (applies at the next model load)
    judge_chosen = Signal(str)          # 'self', a folder, or '' to browse
    estimate_inputs_changed = Signal()  # N, the method or a GridAR choice changed: the memory estimate is stale

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        self.mode = QTabBar()
        self.mode.addTab("Generate")
        self.mode.addTab("Edit")
        self.mode.setExpanding(True)
        self.mode.setToolTip("Generate a new image, or redraw the masked part of an image")
        outer.addWidget(self.mode)
        self.prompt = QLineEdit("two red circles and a blue square")
        self.prompt.setPlaceholderText("e.g. a red circle above a blue square")
        self.prompt.setToolTip(PROMPT_TIP)
        self.prompt.setClearButtonEnabled(True)
        self.language_help = QToolButton()
        self.language_help.setText("?")
        self.language_help.setToolTip("What can I type?")
        self.language_help.setAccessibleName("What can I type?")
        prompt_row = QHBoxLayout()
        prompt_row.addWidget(self.prompt, 1)
        prompt_row.addWidget(self.language_help)
        outer.addLayout(prompt_row)
        # completes the word being typed, not the whole line (QLineEdit.setCompleter would replace the line)
        self._words = QStringListModel([])
        self.completer = QCompleter(self._words, self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.completer.setWidget(self.prompt)
        form = QFormLayout()
        self.model = QComboBox()
        self.model.addItem("Demo (shapes world)", "demo")
        self.model.addItem("Add a model...", "")
        self.model.setToolTip("The model that draws: the small demo model of coloured shapes, or a Janus model "
                              "folder on this computer (Add a model... also imports DeepSeek's original Janus-Pro "
                              "folders)")
        # a long folder name must not widen the column: the box shows what fits and the list the whole name
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(14)
        self.dtype = QComboBox()
        self._fill_dtypes()
        self.judge = QComboBox()
        self.judge.addItem("The generator's own understanding", "self")
        self.judge.addItem("Choose a judging model folder...", "")
        self.judge.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.judge.setMinimumContentsLength(14)
        self.judge.setToolTip(JUDGE_TIP)
        self.method = QComboBox()
        for label, key in (("GridAR", "gridar"), ("Best-of-N", "best-of-n"), ("Single", "single")):
            self.method.addItem(label, key)
        self.method.setToolTip("GridAR: draws several candidates band by band and drops the ones going wrong "
                               "early. Best-of-N: draws N whole images and keeps the best. Single: one image")
        self.n = CandidateCount()
        self.n.setRange(1, 32)
        self.n.setValue(4)
        self.n.setToolTip(f"How many candidates are drawn side by side; more gives better odds and takes "
                          f"longer. GridAR works in groups of {GROUP}")
        # what a run at this N needs in memory beside the loaded model, and what is free (`studio.memory_estimate`)
        self.memory = QLabel("")
        self.memory.setObjectName("hint")
        self.memory.setWordWrap(True)
        self.memory.setToolTip("The memory a run needs with these settings, beside the loaded model")
        self.memory_fits = True
        n_row = QHBoxLayout()
        n_row.addWidget(self.n)
        n_row.addWidget(self.memory, 1)
        self.seed = SeedBox()
        self.seed.setToolTip("The same seed and settings give the same picture again")
        self.random_seed = QCheckBox("random")
        self.random_seed.setChecked(True)
        self.random_seed.setToolTip("Pick a new seed for every run")
        self.reuse = QPushButton("reuse")
        self.reuse.setToolTip("Use the seed of the last generation")
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        seed_row.addWidget(self.reuse)
        self.cfg = QDoubleSpinBox()
        self.cfg.setRange(1.0, 20.0)
        self.cfg.setSingleStep(0.5)
        self.cfg.setValue(2.0)         # measured best for the demo model (README)
        self.cfg.setToolTip("How closely the picture follows the prompt: higher follows it more strictly, lower "
                            "gives more freedom (classifier-free guidance scale)")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.05, 3.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(1.0)
        self.temperature.setToolTip("Variety: lower draws safer, more alike pictures; higher more surprising "
                                    "ones (sampling temperature)")
        self.strategy = QComboBox()
        self.strategy.addItem("Three-way guidance", "three-way")
        self.strategy.addItem("Prompt replacement", "replace")
        self.strategy.addItem("Off (the prompt as typed)", "off")
        self.strategy.setToolTip("After the first bands, GridAR writes each candidate a more precise prompt saying "
                                 "where things go. Three-way guidance: use it beside your prompt. Prompt "
                                 "replacement: use it instead of your prompt. Off: keep your prompt as typed (no "
                                 "layout panel)")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(3)
        self.threshold.setValue(0.25)
        # "automatic", not "calibrated": a model without a measured threshold gets the general default here too, and
        # a ticked "calibrated" beside "this verifier is not calibrated" read as a contradiction (seen under Xvfb)
        self.auto_threshold = QCheckBox("automatic")
        self.auto_threshold.setChecked(True)
        self.auto_threshold.setToolTip("Use the thresholds the model was tuned with (per band, and for edits) when "
                                       "its folder has them; else 0.25")
        self.threshold.setToolTip("GridAR drops a half-drawn candidate when the checker's confidence that it can "
                                  "still work out (P(possible)) is below this, at every band; higher drops more")
        self.verify_by = QComboBox()
        self.verify_by.addItem("Partial view (verifier)", "view")
        self.verify_by.addItem("One completion (scorer)", "rollout")
        self.verify_by.setToolTip("How GridAR judges a half-drawn candidate. Partial view: the checker looks at "
                                  "what is drawn so far. One completion: each candidate is finished once in a quick "
                                  "draft and the judge looks at that (slower; the drafts are shown on the cards, "
                                  "then thrown away)")
        self.refill = QComboBox()
        self.refill.addItem("Copy a survivor", "copy")
        self.refill.addItem("Redraw fresh", "redraw")
        self.refill.setToolTip("What replaces a dropped candidate. Copy a survivor: the slot continues a copy of a "
                               "candidate of its group that passed. Redraw fresh: the slot draws its bands again "
                               "from the prompt (new variety; takes the time of those bands again)")
        self.threshold_auto = QLabel(AUTO_VIEW_TEXT)
        self.threshold_auto.setToolTip("Uncheck \"automatic\" to set a threshold of your own")
        threshold_row = QHBoxLayout()
        threshold_row.addWidget(self.threshold, 1)
        threshold_row.addWidget(self.threshold_auto, 1)
        threshold_row.addWidget(self.auto_threshold)
        # said plainly where pruning is set: a verifier without a calibrated threshold prunes on a guess
        self.uncalibrated = QLabel(UNCALIBRATED_TEXT)
        self.uncalibrated.setWordWrap(True)
        self.uncalibrated.setStyleSheet(f"color: {WARNING_COLOUR};")
        self.uncalibrated.setVisible(False)
        self._verifier_calibrated, self._uncalibrated_note = True, ""
        self.manual = QCheckBox("Review every band")
        self.manual.setToolTip("Pause after each band so you can keep or drop candidates and edit their layouts "
                               "(keys 1-8 pick a card, K keeps or drops it, A accepts, Return continues)")
        form.addRow("Model", self.model)
        form.addRow("Precision", self.dtype)
        form.addRow("Method", self.method)
        form.addRow("Candidates (N)", n_row)
        form.addRow("Judge", self.judge)
        form.addRow("Seed", seed_row)
        form.addRow("Guidance", self.cfg)
        form.addRow("Temperature", self.temperature)
        form.addRow("Layout use", self.strategy)
        form.addRow("Verdicts from", self.verify_by)
        form.addRow("Refill rejected", self.refill)
        form.addRow("Prune below", threshold_row)
        form.addRow("", self.uncalibrated)
        # what "automatic" means for the loaded model
        self.calibration = QLabel("")
        self._calibration, self._calibration_details = "", ""
        self.calibration.setWordWrap(True)
        self.calibration.setObjectName("hint")
        form.addRow("", self.calibration)
        form.addRow("", self.manual)
        label_tips(form, {seed_row: self.seed.toolTip(), threshold_row: self.threshold.toolTip(),
                          n_row: self.n.toolTip()})
        outer.addLayout(form)
        self.generate = QPushButton("Generate")
        self.generate.setObjectName("primary")
        self.generate.setShortcut("Ctrl+Return")
        self.generate.setToolTip("Generate (Ctrl+Return)")
        self.stop_band = QPushButton("Stop after this band")
        self.stop_band.setShortcut("Ctrl+.")
        self.stop_band.setToolTip("Finish the band being drawn, then stop and show what there is (Ctrl+.)")
        self.abort = QPushButton("Abort now")
        self.abort.setShortcut("Escape")
        self.abort.setToolTip("Stop at once and throw this run away (Esc)")
        self._busy = self._aborting = False
        outer.addWidget(self.generate)
        row = QHBoxLayout()
        row.addWidget(self.stop_band)
        row.addWidget(self.abort)
        outer.addLayout(row)
        outer.addStretch(1)
        self.generate.clicked.connect(self.generate_clicked)
        self.prompt.returnPressed.connect(self.generate_clicked)
        self.prompt.textEdited.connect(self._complete_word)
        self.completer.activated.connect(self._insert_word)
        self.language_help.clicked.connect(self.language_help_clicked)
        self.stop_band.clicked.connect(self.stop_band_clicked)
        self.abort.clicked.connect(self.abort_clicked)
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        self.auto_threshold.toggled.connect(lambda _on: self._on_threshold())
        self.verify_by.currentIndexChanged.connect(lambda _i: self._on_threshold())
        self.seed.setEnabled(False)
        self.model.activated.connect(lambda i: self.model_chosen.emit(self.model.itemData(i)))
        self.dtype.activated.connect(lambda i: self.dtype_chosen.emit(self.dtype.itemData(i)))
        self.judge.activated.connect(lambda i: self.judge_chosen.emit(self.judge.itemData(i)))
        for box in (self.method, self.strategy, self.verify_by):
            box.currentIndexChanged.connect(lambda _i: self.estimate_inputs_changed.emit())
        self.n.valueChanged.connect(lambda _v: self.estimate_inputs_changed.emit())
        self.mode.currentChanged.connect(lambda _i: self.estimate_inputs_changed.emit())
        self.prompt.textChanged.connect(lambda _t: self.estimate_inputs_changed.emit())   # its length, a little
        self.method.currentIndexChanged.connect(self._on_method)
        self.mode.currentChanged.connect(self._on_mode)
        self._mode_choice = {m: (d["strategy"] if d["reformulate"] else "off", d["verify_by"], d["refill"])
                             for m, d in GRIDAR_DEFAULTS.items()}
        self._on_method()
        self.set_busy(False)

    @property
    def editing(self) -> bool:
        return self.mode.currentIndex() == 1

    def _on_mode(self, index: int) -> None:
        edit = index == 1
        self.generate.setText("Edit" if edit else "Generate")
        self.prompt.setPlaceholderText("the edited scene, e.g. a green circle and a blue square" if edit
                                       else "e.g. a red circle above a blue square")
        self.prompt.setToolTip(PROMPT_TIP_EDIT if edit else PROMPT_TIP)
        # each mode keeps its own layout use and verification: it starts from GridAR's defaults for the task and
        # comes back as the artist left it
        new, old = ("edit", "generate") if edit else ("generate", "edit")
        self._mode_choice[old] = (self.strategy.currentData(), self.verify_by.currentData(),
                                  self.refill.currentData())
        strategy, verify_by, refill = self._mode_choice[new]
        self.strategy.setCurrentIndex(self.strategy.findData(strategy))
        self.verify_by.setCurrentIndex(self.verify_by.findData(verify_by))
        self.refill.setCurrentIndex(self.refill.findData(refill))
        self.mode_changed.emit(new)

    def _on_method(self) -> None:
        m = self.method.currentData()
        self.n.setEnabled(m != "single")
        self.strategy.setEnabled(m == "gridar")
        self.verify_by.setEnabled(m == "gridar")
        self.refill.setEnabled(m == "gridar")
        self.manual.setEnabled(m == "gridar")
        self._on_threshold()
        self.n.set_multiple(GROUP if m == "gridar" else 1)

    def _on_threshold(self) -> None:
        gridar = self.method.currentData() == "gridar"
        auto = self.auto_threshold.isChecked()
        rollout = self.verify_by.currentData() == "rollout"
        self.auto_threshold.setEnabled(gridar)
        # a greyed number would read as the threshold in use: while calibrated, say whose threshold it is instead
        self.threshold.setVisible(not auto)
        self.threshold.setEnabled(gridar and not auto)
        self.threshold_auto.setVisible(auto)
        self.threshold_auto.setEnabled(gridar)
        self.threshold_auto.setText(AUTO_ROLLOUT_TEXT if rollout else AUTO_VIEW_TEXT)
        self.calibration.setText(ROLLOUT_HINT if rollout else self._calibration)
        self.calibration.setToolTip(ROLLOUT_DETAILS if rollout else self._calibration_details)
        # rollout verdicts use the scorer's fixed threshold, and a threshold of the artist's own is theirs
        uncalibrated = gridar and auto and not rollout and not self._verifier_calibrated
        self.uncalibrated.setVisible(uncalibrated)
        self.calibration.setVisible(gridar and auto and bool(self.calibration.text()))
        self.uncalibrated.setToolTip(wrapped_tip(self._uncalibrated_note, self._calibration_details) or
                                     UNCALIBRATED_TEXT)

    def set_calibration(self, text: str, details: str = "") -> None:
        """The loaded model's own thresholds, in words (`studio.threshold_summary`); the exact figures
        (`studio.threshold_details`) go to the tooltip."""
        self._calibration, self._calibration_details = text, details
        self._on_threshold()

    def set_verifier_calibration(self, calibrated: bool, note: str = "") -> None:
        """Whether the verifier's pruning threshold was measured for this model (`studio.verifier_calibration`);
        when not, a plain line near the pruning controls says so, with `note` in its tooltip."""
        self._verifier_calibrated, self._uncalibrated_note = calibrated, note
        self._on_threshold()

    def set_memory_estimate(self, text: str, fits: bool = True, details: str = "") -> None:
        """The estimate beside N (`studio.memory_estimate`): red when the run does not fit, the numbers in the
        tooltip. Empty text: no estimate (no model yet)."""
        self.memory_fits = fits
        self.memory.setText(text)
        self.memory.setStyleSheet("" if fits else f"color: {ALARM_COLOUR}; font-weight: 600;")
        self.memory.setToolTip(wrapped_tip(details) or "The memory a run needs with these settings, beside the "
                               "loaded model")

    def _fill_dtypes(self) -> None:
        """The dtypes the backend accepts (`DTYPE_CHOICES`), each item's tooltip saying what it does on a CPU and a
        GPU, all of them in the box's tooltip."""
        for name, words in DTYPE_CHOICES:
            self.dtype.addItem(DTYPE_LABELS.get(name, name), name)
            self.dtype.setItemData(self.dtype.count() - 1, f"{name}: {words}", Qt.ItemDataRole.ToolTipRole)
        self.dtype.setToolTip(f"{DTYPE_TIP_HEAD}\n" + "\n".join(f"{n}: {w}" for n, w in DTYPE_CHOICES))

    def set_dtype(self, name: str) -> bool:
        i = self.dtype.findData(name)
        if i >= 0:
            self.dtype.setCurrentIndex(i)
        return i >= 0

    def add_judge_folder(self, path: str) -> None:
        """A judging folder joins the list (its name shown, the whole path in its tooltip) and is selected."""
        from pathlib import Path
        if self.judge.findData(path) < 0:
            self.judge.insertItem(self.judge.count() - 1, Path(path).name or path, path)
            self.judge.setItemData(self.judge.count() - 2, path, Qt.ItemDataRole.ToolTipRole)
        self.judge.setCurrentIndex(self.judge.findData(path))

    def show_judge(self, spec: str) -> None:
        """The box names the judge in use ("self" or a folder)."""
        if spec != "self" and self.judge.findData(spec) < 0:
            self.add_judge_folder(spec)
        self.judge.setCurrentIndex(max(0, self.judge.findData(spec)))

    def set_vocabulary(self, words: list[str]) -> None:
        """The words the loaded model's prompt language knows, offered as the artist types (empty: no completion)."""
        self._words.setStringList(sorted(set(words), key=str.lower))

    def _current_word(self) -> str:
        return WORD.search(self.prompt.text()[:self.prompt.cursorPosition()]).group(0)

    def _complete_word(self, _text: str) -> None:
        word = self._current_word()
        popup = self.completer.popup()
        if not word or not self._words.rowCount():
            popup.hide()
            return
        self.completer.setCompletionPrefix(word)
        # nothing to offer, or the word is already whole: no popup in the way
        if self.completer.completionCount() == 0 or (self.completer.completionCount() == 1 and
                                                     self.completer.currentCompletion().lower() == word.lower()):
            popup.hide()
            return
        popup.setCurrentIndex(self.completer.completionModel().index(0, 0))
        rect = self.prompt.cursorRect()
        rect.setWidth(popup.sizeHintForColumn(0) + popup.verticalScrollBar().sizeHint().width())
        self.completer.complete(rect)

    def _insert_word(self, word: str) -> None:
        """Replace the word being typed by the chosen one, keeping the rest of the line."""
        text, pos = self.prompt.text(), self.prompt.cursorPosition()
        start = pos - len(self._current_word())
        rest = text[pos:]
        rest = rest[len(re.match(r"[A-Za-z-]*", rest).group(0)):]      # the typed word's tail, if any, goes too
        joined = text[:start] + word + ("" if rest.startswith(" ") else " ") + rest
        self.prompt.setText(joined.rstrip() + (" " if not rest else ""))
        self.prompt.setCursorPosition(start + len(word) + 1)

    def add_model_folder(self, path: str) -> None:
        if self.model.findData(path) < 0:
            self.model.insertItem(self.model.count() - 1, path, path)
        self.model.setCurrentIndex(self.model.findData(path))

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._update_buttons()

    def set_aborting(self, on: bool) -> None:
        """While an abort is under way nothing can be started or stopped again."""
        self._aborting = on
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy, aborting = self._busy, self._aborting
        self.generate.setEnabled(not busy and not aborting)
        self.stop_band.setEnabled(busy and not aborting)
        self.abort.setEnabled(busy and not aborting)
        # the running job was started from this text: it stays as it was until the job ends
        self.prompt.setReadOnly(busy or aborting)
        self.judge.setEnabled(not busy and not aborting)       # the judge changes between jobs, never during one
        self.language_help.setEnabled(True)

    def reuse_seed(self, seed: int | None) -> None:
        if seed is not None:
            self.random_seed.setChecked(False)
            self.seed.setValue(seed)

    def request(self, draw_seed: bool = True) -> SearchRequest:
        """A frozen snapshot of the form; a random seed is drawn here and shown (`draw_seed` False: the seed shown,
        for a look at the settings such as the memory estimate)."""
        if self.random_seed.isChecked() and draw_seed:
            self.seed.setValue(random.randrange(2**31 - 1))    # short to read back; any 64-bit seed is accepted
        method = self.method.currentData()
        return SearchRequest(prompt=self.prompt.text().strip(), method=method,
                             n=1 if method == "single" else self.n.value(), seed=self.seed.value(),
                             params=SamplingParams(cfg=self.cfg.value(), temperature=self.temperature.value()),
                             # "off": no reformulation; the strategy recorded is the mode's default
                             strategy=GRIDAR_DEFAULTS["edit" if self.editing else "generate"]["strategy"]
                             if self.strategy.currentData() == "off" else self.strategy.currentData(),
                             reformulate=self.strategy.currentData() != "off",
                             threshold=None if self.auto_threshold.isChecked() else self.threshold.value(),
                             verify_by=self.verify_by.currentData(), refill=self.refill.currentData())

    def apply(self, req: SearchRequest) -> None:
        """Restore the form from a request (e.g. read from a PNG)."""
        self.prompt.setText(req.prompt)
        self.method.setCurrentIndex(max(0, self.method.findData(req.method)))
        self.n.setValue(req.n)
        self.reuse_seed(req.seed)
        self.cfg.setValue(req.params.cfg)
        self.temperature.setValue(req.params.temperature)
        self.strategy.setCurrentIndex(max(0, self.strategy.findData(req.strategy if req.reformulate else "off")))
        self.verify_by.setCurrentIndex(max(0, self.verify_by.findData(req.verify_by)))
        self.refill.setCurrentIndex(max(0, self.refill.findData(req.refill)))
        self.auto_threshold.setChecked(req.threshold is None)
        if req.threshold is not None:
            self.threshold.setValue(req.threshold)
