"""The candidate strip: the current band's candidates with verdict badges; keep, reject or choose the refill.

While a review is open its keys (1-8 pick a card, K keeps or drops it, A accepts the proposal, Return continues)
work whatever widget has the focus: the prompt box would otherwise take "2k" as text."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QApplication, QCheckBox, QComboBox, QFrame, QHBoxLayout, QLabel, QPushButton,
                               QScrollArea, QSizePolicy, QVBoxLayout, QWidget)

from ...engine.search import DEFAULT_THRESHOLD, GROUP, PruneDecision, VerdictReview
from ..images import to_pixmap
from .elided import ElidedLabel

THUMB = 112
REDRAW = "redraw"           # the refill choice that draws the slot again instead of copying a survivor
STAYS = "stays"             # no survivor in the group: the slot goes on as itself (the engine keeps the group)
# a mixed edit's contexts, in words (the engine's names are "source" and "cleared")
KIND_WORDS = {"source": ("original kept", "Keeps the original picture around the mask"),
              "cleared": ("masked part cleared", "Redraws with the masked part cleared first")}
REVIEW_KEYS = {**{getattr(Qt.Key, f"Key_{i + 1}"): i for i in range(8)}}


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
        self.setFixedWidth(THUMB + 12)
        self.title = QLabel(f"{index + 1}")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title.setWordWrap(True)
        self.thumb = QLabel()
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.badge = QLabel("")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # a verdict in words may take two lines; the room is kept so cards do not change height
        self.badge.setWordWrap(True)
        self.badge.setMinimumHeight(2 * self.badge.fontMetrics().lineSpacing() + 4)
        # verdicts by rollout: the completion the scorer read, small, under the band
        self.ahead = QLabel()
        self.ahead.setFixedSize(THUMB // 2, THUMB // 2)
        self.ahead.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.ahead.setToolTip("A quick draft of how this candidate ends: the judge's verdict reads this draft, "
                              "which is then thrown away")
        self.ahead.setVisible(False)
        self.keep = QCheckBox("keep")
        self.keep.setToolTip("Keep this candidate (K). Unchecked: it is dropped, and its place is taken by a copy "
                             "of a kept one or a fresh draw (the choice below)")
        self.source = QComboBox()
        self.source.setToolTip("What takes this place if dropped: a copy of a kept candidate of its group, or a "
                               "fresh draw")
        # a kept candidate takes nothing in its place: its refill choice is hidden (the card keeps its height)
        policy = self.source.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.source.setSizePolicy(policy)
        for w in (self.title, self.thumb, self.badge, self.ahead, self.keep, self.source):
            lay.addWidget(w)
        lay.setAlignment(self.ahead, Qt.AlignmentFlag.AlignHCenter)
        self.keep.toggled.connect(self._on_keep)
        self.source.currentIndexChanged.connect(lambda _i: self.changed.emit())

    def _on_keep(self, on: bool) -> None:
        self.source.setEnabled(not on)
        self.source.setVisible(not on)
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
            self.badge.setText(f"{'likely to end well' if ok else 'likely to go wrong'} ({p:.2f})")
            self.badge.setToolTip(f"The judge's confidence that a quick finished draft of this candidate matches "
                                  f"the prompt: P(yes) = {p:.3f}; dropped below {t:.3g}")
        else:
            self.badge.setText(f"{'can work out' if ok else 'likely to go wrong'} ({p:.2f})")
            self.badge.setToolTip(f"The checker's confidence that this half-drawn candidate can still match the "
                                  f"prompt: P(possible) = {p:.3f}; dropped below {t:.3g}")
        colour = "#2e7d32" if ok else "#c62828"
        self.badge.setStyleSheet(f"color: white; background: {colour}; border-radius: 4px; padding: 1px 4px;")

    def set_selected(self, on: bool) -> None:
        self.setStyleSheet("QFrame#card { border: 2px solid #ffb300; }" if on else "")


class _ReviewKeys(QObject):
    """An application event filter, installed only while a review is open: the review's keys pressed in any widget
    of the strip's window act on the cards instead of typing into that widget."""

    def __init__(self, strip: "CandidateStrip") -> None:
        super().__init__(strip)
        self.strip = strip

    def eventFilter(self, obj, e) -> bool:  # noqa: N802 (Qt naming)
        if e.type() not in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride) or not isinstance(obj, QWidget):
            return False
        if obj.window() is not self.strip.window() or not self.strip.isVisible():
            return False
        if e.modifiers() & ~(Qt.KeyboardModifier.KeypadModifier | Qt.KeyboardModifier.ShiftModifier):
            return False                # Ctrl+Return etc. keep their meaning
        if QApplication.activePopupWidget() is not None:
            return False                # an open combo box list takes its own keys
        action = self.strip.review_key(e.key())
        if action is None:
            return False
        if e.type() == QEvent.Type.KeyPress:
            action()
        e.accept()
        return True


class CandidateStrip(QWidget):
    """Shows candidates; in review it edits a PruneDecision. `continue_clicked` carries the decision."""

    selected = Signal(int)
    continue_clicked = Signal(object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        self.heading = ElidedLabel("Candidates")
        self.heading.setObjectName("heading")
        self.accept_btn = QPushButton("Accept verifier")
        self.accept_btn.setToolTip("Keep and drop candidates as the checker proposes (A)")
        self.continue_btn = QPushButton("Continue")
        self.continue_btn.setToolTip("Apply your choices and grow the next band (Return)")
        head.addWidget(self.heading, 1)
        head.addWidget(self.accept_btn)
        head.addWidget(self.continue_btn)
        outer.addLayout(head)
        # the cards scroll sideways: eight of them must not make the window wider
        cards = QWidget()
        self.row = QHBoxLayout(cards)
        self.row.setContentsMargins(0, 0, 0, 0)
        self.row.setSpacing(6)
        self.row.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidget(cards)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        # the cards are never cut vertically (their keep box and refill choice are at the bottom); the canvas
        # above gives way instead
        self.scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        outer.addWidget(self.scroll)
        self._keys = _ReviewKeys(self)
        self._filtering = False
        self.cards: list[CandidateCard] = []
        # the strip keeps the height of a card under review from the start, so cards appearing move nothing
        self._card_height = CandidateCard(0).sizeHint().height()
        self._fit_height()
        self.review: VerdictReview | None = None
        self.current = 0
        self.set_interactive(False)
        # the first band's cards are built and styled with the window: built mid-run, on the GUI thread, they were
        # the largest stall of a run (20-30 ms for four)
        self._ensure(GROUP)
        for card in self.cards:
            for w in [card, *card.findChildren(QWidget)]:
                w.ensurePolished()
        self._ensure(0)
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
            card.keep.toggled.connect(lambda _on, i=len(self.cards): self._refresh_sources(i // GROUP * GROUP))
            self.row.insertWidget(len(self.cards), card)
            self.cards.append(card)
        for i, c in enumerate(self.cards):
            c.setVisible(i < n)
        self._fit_height()

    def _fit_height(self) -> None:
        tallest = max([self._card_height] + [c.sizeHint().height() for c in self.cards if not c.isHidden()])
        self._card_height = tallest
        self.scroll.setFixedHeight(tallest + self.scroll.horizontalScrollBar().sizeHint().height())

    def clear(self) -> None:
        self._ensure(0)
        self.review = None
        self.heading.setText("Candidates")
        self.set_interactive(False)

    def show_previews(self, previews: np.ndarray, heading: str) -> None:
        self._ensure(len(previews))
        for i, (card, img) in enumerate(zip(self.cards, previews)):
            card.title.setText(f"{i + 1}")
            card.title.setToolTip("")
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
            words, tip = KIND_WORDS.get(kinds[i], (kinds[i], "")) if kinds else ("", "")
            card.title.setText(f"{i + 1}" + (f" · {words}" if kinds else ""))
            card.title.setToolTip(tip)
            card.keep.blockSignals(True)
            card.keep.setChecked(review.proposed.keep[i])
            card.keep.blockSignals(False)
            card.keep.setVisible(True)
            card.source.setVisible(True)
        for g0 in range(0, n, GROUP):
            self._refresh_sources(g0, review.proposed)
        self._fit_height()
        verb = "Review" if interactive else ("The judge's verdicts on a quick draft after"
                                             if review.verify_by == "rollout" else "The checker's verdicts after")
        self.heading.setText(f"{verb} band {review.stage + 1}: keep, drop, or choose what takes a dropped place")
        self.set_interactive(interactive)

    def _refresh_sources(self, g0: int, proposed: PruneDecision | None = None) -> None:
        """The refill choices of group g0's cards: only candidates of the group (and of the slot's context) that are
        kept, and "redraw"; a choice that is no longer offered falls back to the first survivor. With `proposed`,
        the proposal's own choice is shown."""
        if self.review is None:
            return
        n = len(self.review.p_possible)
        kinds = self.review.kinds
        for i in range(g0, min(g0 + GROUP, n)):
            card = self.cards[i]
            if proposed is not None:
                redrawn = bool(proposed.redraw) and proposed.redraw[i]
                want = REDRAW if redrawn else proposed.sources[i]
            else:
                want = card.source.currentData()
            survivors = [j for j in range(g0, min(g0 + GROUP, n))
                         if j != i and self.cards[j].keep.isChecked() and (not kinds or kinds[j] == kinds[i])]
            card.source.blockSignals(True)
            card.source.clear()
            for j in survivors:
                card.source.addItem(f"copy of {j + 1}", j)
            if not survivors:
                # nothing of its group survives to copy: the engine lets the slot go on as itself
                card.source.addItem("nothing kept to copy: goes on", STAYS)
            card.source.addItem("redraw", REDRAW)
            k = card.source.findData(want)
            card.source.setCurrentIndex(k if k >= 0 else 0)
            card.source.blockSignals(False)
            card.source.setEnabled(self.continue_btn.isEnabled() and not card.keep.isChecked())
            card.source.setVisible(not card.keep.isChecked())
        self.update()

    def set_interactive(self, on: bool) -> None:
        self.continue_btn.setEnabled(on)
        self.accept_btn.setEnabled(on)
        for c in self.cards:
            c.keep.setEnabled(on)
            c.source.setEnabled(on and not c.keep.isChecked())
        app = QApplication.instance()
        if on and not self._filtering:
            app.installEventFilter(self._keys)
        elif not on and self._filtering:
            app.removeEventFilter(self._keys)
        self._filtering = on

    def review_key(self, key: int):
        """What a key does in the open review (None: not a review key, or no review open)."""
        if self.review is None or not self.continue_btn.isEnabled():
            return None
        if key in REVIEW_KEYS:
            return lambda: self.select(REVIEW_KEYS[key])
        return {Qt.Key.Key_K: self.toggle_keep, Qt.Key.Key_A: self._accept, Qt.Key.Key_Return: self._continue,
                Qt.Key.Key_Enter: self._continue}.get(key)

    def decision(self) -> PruneDecision:
        n = len(self.review.p_possible)
        keep = [self.cards[i].keep.isChecked() for i in range(n)]
        chosen = [None if keep[i] else self.cards[i].source.currentData() for i in range(n)]
        redraw = [c == REDRAW for c in chosen]
        # a slot with nothing kept to copy names itself: the engine then keeps it as it is
        sources = [i if c is None or c in (REDRAW, STAYS) else c for i, c in enumerate(chosen)]
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
