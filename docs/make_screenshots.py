"""Screenshots of the studio's main states for the README (offscreen, the bundled demo model).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py [--out docs]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")
os.environ.setdefault("GRIDAR_HOME", __import__("tempfile").mkdtemp(prefix="gridar-shots-"))


def _save_grab(window, path: str) -> None:
    from gridar_desktop.app.main import save_screenshot
    save_screenshot(window, path)


async def shoot(window, out: str) -> None:
    studio, c = window.studio, window.controls
    await studio.load_model("demo")
    await asyncio.sleep(0.3)
    _save_grab(window, f"{out}/studio-idle.png")
    c.prompt.setText("a red circle, two blue squares and a yellow triangle")
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.n.setValue(4)
    c.random_seed.setChecked(False)
    c.seed.setValue(11)
    c.manual.setChecked(True)
    task = window.start_generation()
    while not studio.waiting_for_artist:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    _save_grab(window, f"{out}/studio-review.png")
    while not task.done():              # accept the verifier and the layouts at every question
        if studio.waiting_for_artist:
            if window.strip.continue_btn.isEnabled():
                window.strip.accept_btn.click()
            elif window.layouts.continue_btn.isEnabled():
                window.layouts.continue_btn.click()
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    _save_grab(window, f"{out}/studio-final.png")
    c.manual.setChecked(False)
    c.prompt.setText("a red dragon above a blue castle")
    assert window.start_generation() is None        # refused before any work: the banner says why
    await asyncio.sleep(0.3)
    _save_grab(window, f"{out}/studio-error.png")
    await edit_shots(window, out)


async def edit_shots(window, out: str) -> None:
    """Edit mode: a scene opened for editing, its blue square masked, then redrawn as a green circle."""
    import numpy as np

    from gridar_desktop.shapes.scene import make_scene
    c = window.controls
    img, objs = make_scene("a red circle and a blue square", 4, 64)
    window.set_edit_source(img, "scene.png")
    sq = next(o for o in objs if o.shape == "square")
    x0, y0, x1, y1 = sq.bbox
    m = np.zeros((64, 64), bool)
    m[max(0, int(y0) - 2):int(y1) + 3, max(0, int(x0) - 2):int(x1) + 3] = True
    window.mask.set(m)
    window.show_mask()
    c.prompt.setText("a red circle and a green circle")
    c.manual.setChecked(False)
    c.random_seed.setChecked(False)
    c.seed.setValue(3)
    await asyncio.sleep(0.3)
    _save_grab(window, f"{out}/studio-edit-mask.png")
    await window.start_generation()                 # an edit the model reads: a task
    await asyncio.sleep(0.3)
    _save_grab(window, f"{out}/studio-edit-result.png")
    # the same edit reviewed band by band, its verdicts read off one completion of each candidate
    window.show_mask()
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.verify_by.setCurrentIndex(c.verify_by.findData("rollout"))
    c.manual.setChecked(True)
    task = window.start_generation()
    while not window.studio.waiting_for_artist:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    _save_grab(window, f"{out}/studio-edit-review.png")
    while not task.done():
        if window.studio.waiting_for_artist:
            if window.strip.continue_btn.isEnabled():
                window.strip.accept_btn.click()
            elif window.layouts.continue_btn.isEnabled():
                window.layouts.continue_btn.click()
        await asyncio.sleep(0.05)
    c.manual.setChecked(False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    import qasync
    from PySide6.QtWidgets import QApplication

    from gridar_desktop.app.studio import Studio
    from gridar_desktop.app.theme import apply_theme
    from gridar_desktop.app.window import MainWindow
    app = QApplication(sys.argv[:1])
    apply_theme(app, "dark")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    w = MainWindow(Studio(device="cpu"))
    w.resize(1360, 860)
    w.show()
    with loop:
        loop.run_until_complete(shoot(w, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
