"""numpy <-> Qt image conversion."""
from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap


def to_qimage(arr: np.ndarray) -> QImage:
    """uint8 (H, W, 3) -> QImage (a deep copy, so the array may be freed)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w, _ = arr.shape
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def to_pixmap(arr: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(to_qimage(arr))
