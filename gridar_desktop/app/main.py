"""`gridar-desktop`: start the studio; `--selftest --screenshot OUT.png` runs one generation offscreen and prints
one JSON line of timings."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from ..logs import setup_logging


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="gridar-desktop", description="GridAR Desktop: the studio")
    ap.add_argument("image", nargs="?", help="an image to open once the model is loaded: a PNG this app saved "
                    "restores its settings (an edit also its source and mask), any other image opens for editing")
    ap.add_argument("--model", default="demo", help="'demo' or a local Janus model folder")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--theme", default="system", choices=["system", "dark", "light"])
    ap.add_argument("--selftest", action="store_true", help="run one interactive generation offscreen and exit")
    ap.add_argument("--screenshot", help="with --selftest: save a screenshot of the window here")
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="with --selftest: run N CPU-bound processes beside it (an artist's machine is rarely idle)")
    return ap.parse_args(argv)


PREFERRED_SIZE = (1280, 820)


def first_size(available) -> tuple[int, int]:
    """The window's size at a first start: the preferred size, shrunk to fit the screen's free area (a 1366x768
    laptop loses its panel and the title bar to it) so nothing starts off-screen."""
    w, h = PREFERRED_SIZE
    if available is None or available.width() <= 0:
        return w, h
    return min(w, available.width() - 16), min(h, available.height() - 48)


def app_icon_path():
    """The window icon: GRIDAR_ICON (the installer's launcher sets it), else the checkout's resources/icons; None
    when neither exists."""
    from pathlib import Path

    from ..engine.models import REPO_ROOT
    env = os.environ.get("GRIDAR_ICON")
    for p in ([Path(env)] if env else []) + [REPO_ROOT / "resources" / "icons" / "gridar-desktop.png"]:
        if p.is_file():
            return p
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.selftest:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")
    setup_logging()
    import qasync
    from PySide6.QtWidgets import QApplication

    from .studio import Studio
    from .theme import apply_theme
    from .window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("GridAR Desktop")
    app.setDesktopFileName("gridar-desktop")         # matches the installer's menu entry (docks group by it)
    icon = app_icon_path()
    if icon is not None:
        from PySide6.QtGui import QIcon
        app.setWindowIcon(QIcon(str(icon)))
    apply_theme(app, args.theme)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(Studio(device=args.device))
    if not getattr(window, "geometry_restored", False):     # the last session's size and place win
        screen = app.primaryScreen()
        window.resize(*first_size(screen.availableGeometry().size() if screen else None))
    window.show()
    if args.selftest:
        with loop, busy_processes(args.busy):
            report = loop.run_until_complete(selftest(window, args.model, args.screenshot))
        report["busy_processes"] = args.busy
        print(json.dumps(report))
        return 0 if report.get("ok") else 1
    # a folder goes the way of Add a model...: DeepSeek's original layout is offered its import, a folder that
    # cannot be used is one line in the banner (the demo then loads with the first run)
    task = window.choose_model("demo") if args.model == "demo" else window.add_model(args.model)
    if args.image:
        open_when_ready(window, task, args.image)
    with loop:
        loop.run_until_complete(_until_closed(app))
    return 0


def open_when_ready(window, task, path: str) -> None:
    """Open `path` in the window once the model task has finished (an edit is sized to the model's resolution);
    a failed load or an unreadable image is said in the window's banner, and the app keeps running."""
    def done(t) -> None:
        if not t.cancelled() and t.exception() is None and t.result():
            window.open_image(path)
    if task is None:
        window.open_image(path)
    else:
        task.add_done_callback(done)


async def _until_closed(app) -> None:
    done = asyncio.Event()
    app.lastWindowClosed.connect(done.set)
    await done.wait()


def _spin() -> None:
    """A CPU-bound process: what another program on the artist's machine does to the studio's timings."""
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2147483648


@contextmanager
def busy_processes(n: int) -> Iterator[list]:
    """N processes that keep one core each busy while the block runs; killed at its end, whatever happens."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")           # a fresh interpreter: nothing of Qt or torch is copied
    procs = [ctx.Process(target=_spin, daemon=True, name=f"gridar-busy-{i}") for i in range(max(0, n))]
    for p in procs:
        p.start()
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.join(timeout=5)


# Where the selftest aborts a run, each at an event the GUI receives while the worker is busy with that part: a
# band being drawn, the verifier's call, the reformulator's, the completions that give verdicts from a rollout.
CANCEL_POINTS = {
    "band": lambda e, ev: isinstance(e, ev.TokenProgress) and e.stage == 1,
    "verification": lambda e, ev: isinstance(e, ev.BandCandidates) and e.stage == 0,
    "reformulation": lambda e, ev: isinstance(e, ev.BandAccepted) and e.stage == 0,
    "rollout": lambda e, ev: isinstance(e, ev.Completing) and e.stage == 0,
}


def save_screenshot(widget, path: str) -> None:
    """A PNG of the widget, written through the project's atomic writer like every file it writes."""
    from PySide6.QtCore import QBuffer, QIODevice

    from ..io.atomic import atomic_write_bytes
    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    widget.grab().save(buf, "PNG")
    atomic_write_bytes(path, bytes(buf.data()))


async def selftest(window, model: str, screenshot: str | None) -> dict:
    """One GridAR generation through the interactive path, then a run aborted at each of `CANCEL_POINTS`;
    measures the GUI thread's longest stall, band finished to painted, and abort to the worker stopped."""
    from ..engine import events as ev
    from .window import gui_stall_probe
    studio = window.studio
    t0 = time.perf_counter()
    if not await studio.load_model(model):
        return {"ok": False, "error": "model did not load"}
    load_s = time.perf_counter() - t0
    await asyncio.sleep(0.2)
    probe = gui_stall_probe(window)
    c = window.controls
    c.prompt.setText("two red circles and a blue square")
    c.method.setCurrentIndex(c.method.findData("gridar"))
    c.n.setValue(4)
    t1 = time.perf_counter()
    result = await window.start_generation()
    gen_s = time.perf_counter() - t1
    await asyncio.sleep(0.3)                       # let the final paint happen
    if screenshot:                                 # grabbing and encoding the window is not generation work
        probe["timer"].stop()
        save_screenshot(window, screenshot)
        probe["resume"]()
    cancels: dict[str, float | None] = {}
    for point, hit in CANCEL_POINTS.items():
        verify_by = c.verify_by.findData("rollout" if point == "rollout" else "view")
        if verify_by >= 0:
            c.verify_by.setCurrentIndex(verify_by)
        reached = asyncio.get_running_loop().create_future()

        def on_event(e, hit=hit, reached=reached) -> None:
            if not reached.done() and hit(e, ev):
                reached.set_result(None)
                getattr(window, "abort", studio.abort)()       # as Esc does
        studio.engine_event.connect(on_event)
        task = window.start_generation()
        await asyncio.wait([task, reached], return_when=asyncio.FIRST_COMPLETED)
        t_abort = time.perf_counter()
        await task
        studio.engine_event.disconnect(on_event)
        # None: the run ended before it reached the point (e.g. a model without that step)
        cancels[point] = round(1000 * (time.perf_counter() - t_abort), 1) if reached.done() else None
        await asyncio.sleep(0.2)
    c.verify_by.setCurrentIndex(max(0, c.verify_by.findData("view")))
    probe["timer"].stop()
    stall = probe["max_gap_s"]
    paint = window.paint_latencies
    measured = [v for v in cancels.values() if v is not None]
    return {"ok": result is not None, "model": model, "load_seconds": round(load_s, 3),
            "generation_seconds": round(gen_s, 3), "max_gui_stall_ms": round(1000 * stall, 1),
            "band_paint_latency_ms": round(1000 * max(paint), 1) if paint else None,
            "cancel_latency_ms": max(measured) if measured else None,
            "cancel_latency_ms_at": cancels,
            "timer_ticks": probe["ticks"], "torch_threads": _torch_threads(), "screenshot": screenshot}


def _torch_threads() -> int:
    import torch
    return torch.get_num_threads()
