"""The candidate strip: the current band's candidates with verdict badges; keep, reject or choose the refill."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout,
                               QWidget)

from ...engine.search import DEFAULT_THRESHOLD, GROUP, PruneDecision, VerdictReview
from ..images import to_pixmap

THUMB = 112
REDRAW = "redraw"           # the refill choice that draws the slot again instead of copying a survivor


class CandidateCard(QFrame):
    clicked = Signal(int)
    changed = Signal()

    def __init__(self, index: int, parent=None) -> None:
        super().__init__(parent)
        self.index = index
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("card")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        self.title = QLabel(f"{index + 1}")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb = QLabel()
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.badge = QLabel("")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # verdicts by rollout: the completion the scorer read, small, under the band
        self.ahead = QLabel()
        self.ahead.setFixedSize(THUMB // 2, THUMB // 2)
        self.ahead.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.ahead.setToolTip("How this candidate ends when completed once: the scorer's verdict reads this "
                              "completion, which is then thrown away")
        self.ahead.setVisible(False)
        self.keep = QCheckBox("keep")
        self.keep.setToolTip("Keep this candidate (K). Unchecked: its slot continues a copy of another one, or "
                             "is redrawn.")
        self.source = QComboBox()
        self.source.setToolTip("What refills this slot: a copy of a surviving candidate, or a fresh draw")
        for w in (self.title, self.thumb, self.badge, self.ahead, self.keep, self.source):
            lay.addWidget(w)
        lay.setAlignment(self.ahead, Qt.AlignmentFlag.AlignHCenter)
        self.keep.toggled.connect(self._on_keep)
        self.source.currentIndexChanged.connect(lambda _i: self.changed.emit())

    def _on_keep(self, on: bool) -> None:
        self.source.setEnabled(not on)
        self.changed.emit()

    def mousePressEvent(self, _e) -> None:  # noqa: N802
        self.clicked.emit(self.index)

    def set_image(self, arr: np.ndarray) -> None:
        self.thumb.setPixmap(to_pixmap(arr).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                                   Qt.TransformationMode.FastTransformation))

    def set_completion(self, arr: np.ndarray | None) -> None:
        """The rollout the scorer read for this candidate's verdict (None: verdicts read the partial view)."""
        self.ahead.setVisible(arr is not None)
        if arr is not None:
            self.ahead.setPixmap(to_pixmap(arr).scaled(THUMB // 2, THUMB // 2, Qt.AspectRatioMode.KeepAspectRatio,
                                                       Qt.TransformationMode.FastTransformation))

    def set_verdict(self, p: float | None, keep: bool | None, threshold: float | None = None,
                    rollout: bool = False) -> None:
        """The verifier's verdict at the pruning threshold (the engine's default when not given) with P(possible),
        or with `rollout` the scorer's P(yes) on one completion; `keep` is the decision, which can differ (a group
        with no survivor keeps all; the artist decides)."""
        if p is None:
            self.badge.setText("")
            self.badge.setStyleSheet("")
            self.badge.setToolTip("")
            self.set_completion(None)
            return
        t = DEFAULT_THRESHOLD if threshold is None else threshold
        ok = p >= t
        if rollout:
            self.badge.setText(f"{'ends right' if ok else 'ends wrong'} {p:.2f}")
            self.badge.setToolTip(f"The scorer's P(yes) on one completion of this candidate = {p:.3f}; "
                                  f"rejected below {t:.3g}")
        else:
            self.badge.setText(f"{'possible' if ok else 'impossible'} {p:.2f}")
            self.badge.setToolTip(f"P(possible) = {p:.3f}; the verifier rejects below {t:.3g}")
        colour = "#2e7d32" if ok else "#c62828"
        self.badge.setStyleSheet(f"color: white; background: {colour}; border-radius: 4px; padding: 1px 4px;")

    def set_selected(self, on: bool) -> None:
        self.setStyleSheet("QFrame#card { border: 2px solid #ffb300; }" if on else "")


class CandidateStrip(QWidget):
    """Shows candidates; in review it edits a PruneDecision. `continue_clicked` carries the decision."""

    selected = Signal(int)
    continue_clicked = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        self.heading = QLabel("Candidates")
        self.heading.setObjectName("heading")
        self.accept_btn = QPushButton("Accept verifier")
        self.accept_btn.setToolTip("Use the verifier's verdicts as proposed (A)")
        self.continue_btn = QPushButton("Continue")
        self.continue_btn.setToolTip("Apply your choices and grow the next band (Return)")
        self.continue_btn.setDefault(True)
        head.addWidget(self.heading, 1)
        head.addWidget(self.accept_btn)
        head.addWidget(self.continue_btn)
        outer.addLayout(head)
        self.row = QHBoxLayout()
        self.row.setSpacing(6)
        outer.addLayout(self.row)
        self.row.addStretch(1)
        self.cards: list[CandidateCard] = []
        self.review: VerdictReview | None = None
        self.current = 0
        self.set_interactive(False)
        self.accept_btn.clicked.connect(self._accept)
        self.continue_btn.clicked.connect(self._continue)
        for i in range(8):
            QShortcut(QKeySequence(str(i + 1)), self, activated=lambda i=i: self.select(i))
        QShortcut(QKeySequence("K"), self, activated=self.toggle_keep)
        QShortcut(QKeySequence("A"), self, activated=self._accept)

    def _ensure(self, n: int) -> None:
        while len(self.cards) < n:
            card = CandidateCard(len(self.cards))
            card.clicked.connect(self.select)
            self.row.insertWidget(len(self.cards), card)
            self.cards.append(card)
        for i, c in enumerate(self.cards):
            c.setVisible(i < n)

    def clear(self) -> None:
        self._ensure(0)
        self.review = None
        self.heading.setText("Candidates")
        self.set_interactive(False)

    def show_previews(self, previews: np.ndarray, heading: str) -> None:
        self._ensure(len(previews))
        for i, (card, img) in enumerate(zip(self.cards, previews)):
            card.title.setText(f"{i + 1}")
            card.set_image(img)
            card.set_verdict(None, None)
            card.keep.setVisible(False)
            card.source.setVisible(False)
        self.heading.setText(heading)
        self.review = None
        self.set_interactive(False)

    def show_review(self, review: VerdictReview, interactive: bool) -> None:
        """Verdict badges; editable keep / refill controls when the artist is asked."""
        self.review = review
        n = len(review.p_possible)
        self._ensure(n)
        kinds = review.kinds
        for i, card in enumerate(self.cards[:n]):
            card.set_image(review.previews[i])
            rollout = review.verify_by == "rollout"
            card.set_verdict(review.p_possible[i], review.proposed.keep[i], review.threshold, rollout)
            card.set_completion(review.completions[i] if rollout and review.completions is not None else None)
            # a mixed edit: each card says its context, and a slot is refilled from its own context only
            card.title.setText(f"{i + 1}" + (f" · {kinds[i]}" if kinds else ""))
            g0 = i // GROUP * GROUP
            card.source.blockSignals(True)
            card.source.clear()
            for j in range(g0, min(g0 + GROUP, n)):
                if j != i and (not kinds or kinds[j] == kinds[i]):
                    card.source.addItem(f"from {j + 1}", j)
            card.source.addItem("redraw", REDRAW)
            redrawn = bool(review.proposed.redraw) and review.proposed.redraw[i]
            src = REDRAW if redrawn else review.proposed.sources[i]
            k = card.source.findData(src)
            card.source.setCurrentIndex(max(k, 0))
            card.source.blockSignals(False)
            card.keep.setChecked(review.proposed.keep[i])
            card.source.setEnabled(not review.proposed.keep[i])
            card.keep.setVisible(True)
            card.source.setVisible(True)
        verb = "Review" if interactive else ("Scorer's verdicts on one completion at"
                                             if review.verify_by == "rollout" else "Verifier's verdicts at")
        self.heading.setText(f"{verb} band {review.stage + 1}: keep, reject, or choose what refills a slot")
        self.set_interactive(interactive)

    def set_interactive(self, on: bool) -> None:
        self.continue_btn.setEnabled(on)
        self.accept_btn.setEnabled(on)
        for c in self.cards:
            c.keep.setEnabled(on)
            c.source.setEnabled(on and not c.keep.isChecked())

    def decision(self) -> PruneDecision:
        n = len(self.review.p_possible)
        keep = [self.cards[i].keep.isChecked() for i in range(n)]
        chosen = [None if keep[i] else self.cards[i].source.currentData() for i in range(n)]
        redraw = [c == REDRAW for c in chosen]
        sources = [i if c is None or c == REDRAW else c for i, c in enumerate(chosen)]
        return PruneDecision(keep, sources, redraw=redraw if any(redraw) else [])

    def select(self, i: int) -> None:
        if 0 <= i < len(self.cards) and self.cards[i].isVisible():
            self.current = i
            for j, c in enumerate(self.cards):
                c.set_selected(j == i)
            self.selected.emit(i)

    def toggle_keep(self) -> None:
        if self.continue_btn.isEnabled() and self.current < len(self.cards):
            self.cards[self.current].keep.toggle()

    def _accept(self) -> None:
        if self.review is not None and self.continue_btn.isEnabled():
            self.continue_clicked.emit(self.review.proposed)

    def _continue(self) -> None:
        if self.review is not None and self.continue_btn.isEnabled():
            self.continue_clicked.emit(self.decision())
