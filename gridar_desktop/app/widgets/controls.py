"""The generation form: prompt, model, method, N, seed, guidance, temperature, strategy, pruning threshold;
builds request snapshots."""
from __future__ import annotations

import random

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QTabBar, QVBoxLayout, QWidget)

from ...engine.defaults import GRIDAR_DEFAULTS, ROLLOUT_THRESHOLD
from ...engine.sampling import SamplingParams
from ...engine.search import SearchRequest

ROLLOUT_HINT = f"Rejected when the scorer's P(yes) on its completion is below {ROLLOUT_THRESHOLD:g}"
# what the threshold row shows in place of the number while "calibrated" is on (the manual value waits, hidden)
AUTO_VIEW_TEXT = "the verifier's own"
AUTO_ROLLOUT_TEXT = f"{ROLLOUT_THRESHOLD:g}, the scorer's"


class Controls(QWidget):
    generate_clicked = Signal()
    stop_band_clicked = Signal()
    abort_clicked = Signal()
    model_chosen = Signal(str)          # 'demo', a folder, or '' to browse
    mode_changed = Signal(str)          # 'generate' | 'edit'

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
        self.prompt.setClearButtonEnabled(True)
        outer.addWidget(self.prompt)
        form = QFormLayout()
        self.model = QComboBox()
        self.model.addItem("Demo (shapes world)", "demo")
        self.model.addItem("Open model folder...", "")
        self.method = QComboBox()
        for label, key in (("GridAR", "gridar"), ("Best-of-N", "best-of-n"), ("Single", "single")):
            self.method.addItem(label, key)
        self.n = QSpinBox()
        self.n.setRange(1, 32)
        self.n.setValue(4)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.random_seed = QCheckBox("random")
        self.random_seed.setChecked(True)
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
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.05, 3.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(1.0)
        self.strategy = QComboBox()
        self.strategy.addItem("Three-way guidance", "three-way")
        self.strategy.addItem("Prompt replacement", "replace")
        self.strategy.addItem("Off (the prompt as typed)", "off")
        self.strategy.setToolTip("How GridAR uses each candidate's reformulated prompt: as a third guidance row, in "
                                 "place of the prompt, or not at all (no reformulation, no layout panel)")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(3)
        self.threshold.setValue(0.25)
        self.auto_threshold = QCheckBox("calibrated")
        self.auto_threshold.setChecked(True)
        self.auto_threshold.setToolTip("Use the verifier's own thresholds, calibrated per band (and for edits) when "
                                       "its model folder has them; else 0.25")
        self.threshold.setToolTip("GridAR rejects a partial candidate whose P(possible) is below this, at every "
                                  "band; higher prunes more")
        self.verify_by = QComboBox()
        self.verify_by.addItem("Partial view (verifier)", "view")
        self.verify_by.addItem("One completion (scorer)", "rollout")
        self.verify_by.setToolTip("What GridAR's verdicts read. Partial view: the verifier reads the band drawn so "
                                  "far. One completion: each candidate is completed once and the scorer reads the "
                                  "finished image (slower: the rest of every candidate is decoded at each verified "
                                  "band; the completions are shown on the cards, then thrown away)")
        self.refill = QComboBox()
        self.refill.addItem("Copy a survivor", "copy")
        self.refill.addItem("Redraw fresh", "redraw")
        self.refill.setToolTip("What replaces a rejected candidate. Copy a survivor: the slot continues a copy of a "
                               "candidate of its group that passed (the paper's rule). Redraw fresh: the slot draws "
                               "its bands again from the prompt (new variety; costs the bands again)")
        self.threshold_auto = QLabel(AUTO_VIEW_TEXT)
        self.threshold_auto.setToolTip("Uncheck \"calibrated\" to set a threshold of your own")
        threshold_row = QHBoxLayout()
        threshold_row.addWidget(self.threshold, 1)
        threshold_row.addWidget(self.threshold_auto, 1)
        threshold_row.addWidget(self.auto_threshold)
        self.manual = QCheckBox("Review every band")
        self.manual.setToolTip("Stop after each verification and reformulation so you can steer the candidates")
        form.addRow("Model", self.model)
        form.addRow("Method", self.method)
        form.addRow("Candidates (N)", self.n)
        form.addRow("Seed", seed_row)
        form.addRow("Guidance", self.cfg)
        form.addRow("Temperature", self.temperature)
        form.addRow("Layout use", self.strategy)
        form.addRow("Verdicts from", self.verify_by)
        form.addRow("Refill rejected", self.refill)
        form.addRow("Prune below", threshold_row)
        # what "calibrated" means for the loaded model
        self.calibration = QLabel("")
        self._calibration = ""
        self.calibration.setWordWrap(True)
        self.calibration.setObjectName("hint")
        form.addRow("", self.calibration)
        form.addRow("", self.manual)
        outer.addLayout(form)
        self.generate = QPushButton("Generate")
        self.generate.setObjectName("primary")
        self.generate.setShortcut("Ctrl+Return")
        self.generate.setToolTip("Generate (Ctrl+Return)")
        self.stop_band = QPushButton("Stop after this band")
        self.stop_band.setShortcut("Ctrl+.")
        self.abort = QPushButton("Abort now")
        self.abort.setShortcut("Escape")
        outer.addWidget(self.generate)
        row = QHBoxLayout()
        row.addWidget(self.stop_band)
        row.addWidget(self.abort)
        outer.addLayout(row)
        outer.addStretch(1)
        self.generate.clicked.connect(self.generate_clicked)
        self.prompt.returnPressed.connect(self.generate_clicked)
        self.stop_band.clicked.connect(self.stop_band_clicked)
        self.abort.clicked.connect(self.abort_clicked)
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        self.auto_threshold.toggled.connect(lambda _on: self._on_threshold())
        self.verify_by.currentIndexChanged.connect(lambda _i: self._on_threshold())
        self.seed.setEnabled(False)
        self.model.activated.connect(lambda i: self.model_chosen.emit(self.model.itemData(i)))
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
        self.prompt.setToolTip("Describe the whole image after the edit" if edit else "")
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
        if m == "gridar":
            self.n.setSingleStep(4)
            self.n.setValue(max(4, self.n.value() // 4 * 4))
        else:
            self.n.setSingleStep(1)

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
        self.calibration.setVisible(gridar and self.auto_threshold.isChecked() and bool(self.calibration.text()))

    def set_calibration(self, text: str) -> None:
        """The loaded model's own thresholds, in words (`studio.threshold_summary`)."""
        self._calibration = text
        self._on_threshold()

    def add_model_folder(self, path: str) -> None:
        if self.model.findData(path) < 0:
            self.model.insertItem(self.model.count() - 1, path, path)
        self.model.setCurrentIndex(self.model.findData(path))

    def set_busy(self, busy: bool) -> None:
        self.generate.setEnabled(not busy)
        self.stop_band.setEnabled(busy)
        self.abort.setEnabled(busy)

    def reuse_seed(self, seed: int | None) -> None:
        if seed is not None:
            self.random_seed.setChecked(False)
            self.seed.setValue(seed)

    def request(self) -> SearchRequest:
        """A frozen snapshot of the form; a random seed is drawn here and shown."""
        if self.random_seed.isChecked():
            self.seed.setValue(random.randrange(2**31 - 1))
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
