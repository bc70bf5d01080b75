"""Dark and light themes following the system colour scheme (Fusion style, so it looks the same everywhere)."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

STYLE = """
QLabel#heading { font-weight: 600; padding: 4px 0; }
QPushButton#primary { font-weight: 600; padding: 6px; }
QPushButton:checked { background: #ffb300; color: black; font-weight: 600; }
"""


def dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor(30, 31, 34), QColor(43, 45, 48), QColor(223, 225, 229)
    for role, colour in ((QPalette.ColorRole.Window, window), (QPalette.ColorRole.Base, base),
                         (QPalette.ColorRole.AlternateBase, window), (QPalette.ColorRole.Button, window),
                         (QPalette.ColorRole.WindowText, text), (QPalette.ColorRole.Text, text),
                         (QPalette.ColorRole.ButtonText, text), (QPalette.ColorRole.ToolTipBase, base),
                         (QPalette.ColorRole.ToolTipText, text), (QPalette.ColorRole.Highlight, QColor(255, 179, 0)),
                         (QPalette.ColorRole.HighlightedText, QColor(0, 0, 0)), (QPalette.ColorRole.Mid, QColor(80, 82, 86))):
        p.setColor(role, colour)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(120, 122, 126))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(120, 122, 126))
    return p


def apply_theme(app: QApplication, scheme: str = "system") -> str:
    """scheme: system, dark or light. Returns the one applied."""
    app.setStyle("Fusion")
    if scheme == "system":
        dark = app.styleHints().colorScheme() == Qt.ColorScheme.Dark
        scheme = "dark" if dark else "light"
    app.setPalette(dark_palette() if scheme == "dark" else app.style().standardPalette())
    app.setStyleSheet(STYLE)
    return scheme
