"""The document on screen: the one image the artist is looking at (a run's chosen candidate, an opened file or a
history item), the file it belongs to, and whether that file holds what is shown. Save, the window title and the
close question all read this one object, so Ctrl+S can never write one image over another file. Qt-free."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RUN, FILE, HISTORY = "run", "file", "history"


def slugify(text: str, limit: int = 48) -> str:
    """A file-name stem from a prompt: lower case words joined by '-', nothing a file system objects to."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "gridar"


@dataclass
class Document:
    """What is shown. `path` is the file Ctrl+S writes (None: ask for a name); `metadata` is what that file
    carries (a run's settings and tree, or an opened PNG's own chunk, kept as it was)."""

    kind: str                                   # RUN | FILE | HISTORY
    image: np.ndarray                           # uint8 (H, W, 3), exactly what Save writes
    prompt: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    saved: bool = False
    source: Path | None = None                  # the file it was read from (an opened file or a history entry)
    chosen: int | None = None                   # a run's candidate on screen

    @property
    def name(self) -> str:
        if self.path is not None:
            return self.path.name
        if self.source is not None:
            return self.source.name
        return f"Untitled ({self.prompt})" if self.prompt else "Untitled"

    @property
    def default_stem(self) -> str:
        """The name offered when the artist saves or exports: the prompt's words, else the file's own name."""
        if self.prompt:
            return slugify(self.prompt)
        return (self.path or self.source).stem if (self.path or self.source) else "gridar"

    @property
    def has_settings(self) -> bool:
        """A GridAR PNG records the settings that made it (the artist may restore them)."""
        return isinstance(self.metadata.get("settings"), dict)


class DocumentState:
    """Holds the document on screen and answers what Save and Close need."""

    def __init__(self) -> None:
        self.current: Document | None = None

    # -- what becomes the document ---------------------------------------------------------------------------
    def show_run(self, image: np.ndarray, prompt: str, metadata: dict[str, Any], chosen: int) -> Document:
        """A finished run: unsaved, belonging to no file yet."""
        self.current = Document(RUN, np.asarray(image), prompt, dict(metadata), None, False, None, chosen)
        return self.current

    def choose(self, image: np.ndarray, metadata: dict[str, Any], chosen: int) -> Document | None:
        """Another candidate of the run on screen: same file (if saved before), now unsaved."""
        d = self.current
        if d is None or d.kind != RUN:
            return None
        if d.chosen != chosen:
            d.image, d.metadata, d.chosen, d.saved = np.asarray(image), dict(metadata), chosen, False
        return d

    def show_file(self, path: str | Path, image: np.ndarray, metadata: dict[str, Any]) -> Document:
        """An opened image. Ctrl+S writes it back only when it is a PNG (its own format); any other file asks for a
        new name, so a JPEG is never overwritten with PNG bytes."""
        path = Path(path)
        own = path if path.suffix.lower() == ".png" else None
        self.current = Document(FILE, np.asarray(image), str(metadata.get("prompt", "")), dict(metadata), own,
                                True, path)
        return self.current

    def show_history(self, path: str | Path, image: np.ndarray, metadata: dict[str, Any]) -> Document:
        """A history entry: kept already, so nothing is unsaved; Ctrl+S asks where to put a copy (the history
        folder is the studio's, not the artist's)."""
        path = Path(path)
        self.current = Document(HISTORY, np.asarray(image), str(metadata.get("prompt", "")), dict(metadata), None,
                                True, path)
        return self.current

    def clear(self) -> None:
        self.current = None

    # -- saving ------------------------------------------------------------------------------------------------
    def saved_to(self, path: str | Path) -> None:
        if self.current is not None:
            self.current.path, self.current.saved = Path(path), True

    @property
    def unsaved(self) -> bool:
        return self.current is not None and not self.current.saved

    def title(self, app: str = "GridAR Desktop") -> str:
        """The window title, with Qt's "[*]" placeholder where the unsaved mark goes."""
        return f"{self.current.name}[*] - {app}" if self.current is not None else app
