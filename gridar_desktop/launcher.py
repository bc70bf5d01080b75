"""`gridar-desktop` and `python main.py`: check that a Linux desktop can start Qt, then start the studio.

Qt aborts the whole process when its platform plugin cannot load (a bare `Aborted`, after a message that often names
the wrong library), so on Linux the shared libraries it needs are checked first and a missing one is reported as
the Debian/Ubuntu packages to install. The lists below are the one place that knows them: the installer's
install.sh reads them from here too.

Only the standard library is imported at module level: install.sh imports this module from the app's wheel, with
the system Python, before anything is installed.
"""
from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping, Sequence

#: What every Qt window needs whatever the display system (QtGui and QtWidgets link these): soname -> package.
QT_BASE_LIBRARIES: dict[str, str] = {
    "libglib-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libfreetype.so.6": "libfreetype6",
    "libfontconfig.so.1": "libfontconfig1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
}

#: Qt's X11 platform plugin ("xcb", also what runs under XWayland): the libraries PySide6 6.x's libqxcb.so and
#: libQt6XcbQpa.so.6 link. Since Qt 6.5 libxcb-cursor is among them; icccm and keysyms are the ones a minimal
#: Debian most often lacks.
QT_XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}

#: Qt's Wayland platform plugin (tried first in a Wayland session; X11 through XWayland is the fallback).
QT_WAYLAND_LIBRARIES: dict[str, str] = {
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
}

PLATFORM_LIBRARIES: dict[str, dict[str, str]] = {"xcb": QT_XCB_LIBRARIES, "wayland": QT_WAYLAND_LIBRARIES}

#: Every package a Linux desktop needs for the studio, in the order to name them (README, install.sh, messages).
LINUX_DESKTOP_PACKAGES: tuple[str, ...] = tuple(dict.fromkeys(
    [*QT_BASE_LIBRARIES.values(), *QT_XCB_LIBRARIES.values(), *QT_WAYLAND_LIBRARIES.values()]))


def library_loads(soname: str) -> bool:
    """True when the dynamic loader finds `soname` and everything it links (the same search Qt's loading does)."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_packages(libraries: Mapping[str, str], load: Callable[[str], bool] | None = None) -> list[str]:
    """The packages (in the table's order, each once) whose library in `libraries` does not load."""
    load = load or library_loads
    return list(dict.fromkeys(pkg for soname, pkg in libraries.items() if not load(soname)))


def qt_platforms(environ: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt will try, in order: QT_QPA_PLATFORM's list (arguments after ':' dropped), else
    wayland then xcb in a Wayland session, else xcb."""
    named = environ.get("QT_QPA_PLATFORM", "").strip()
    if named:
        return [p.split(":", 1)[0].strip() for p in named.split(";") if p.strip()]
    if environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"):
        return ["wayland", "xcb"]
    return ["xcb"]


def apt_command(packages: Sequence[str]) -> str:
    return "sudo apt install " + " ".join(packages)


def desktop_problem(environ: Mapping[str, str] | None = None, load: Callable[[str], bool] | None = None,
                    platform: str | None = None) -> str | None:
    """Why Qt could not open a window here, as one line naming the packages to install; None when it can (or when
    this is not Linux, or Qt was asked for a platform that needs no desktop, such as offscreen)."""
    environ = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux"):
        return None
    missing = missing_packages(QT_BASE_LIBRARIES, load)
    platforms = qt_platforms(environ)
    displays = {"xcb": environ.get("DISPLAY"), "wayland": environ.get("WAYLAND_DISPLAY")}
    wanted = [p for p in platforms if p in PLATFORM_LIBRARIES]
    if len(wanted) < len(platforms):
        # Qt was pointed at a platform that draws without a desktop (offscreen, vnc, eglfs...): only the base
        # libraries matter, and Qt's own messages cover the rest.
        wanted = []
    else:
        reachable = [p for p in wanted if displays[p]]
        if not reachable:
            return ("gridar-desktop: there is no display to open a window on (DISPLAY and WAYLAND_DISPLAY are "
                    "unset): start it from a desktop session (the `gridar` command works without one)")
        per_platform = {p: missing_packages(PLATFORM_LIBRARIES[p], load) for p in reachable}
        if not missing and any(not m for m in per_platform.values()):
            return None
        for m in per_platform.values():
            missing += [pkg for pkg in m if pkg not in missing]
    if not missing:
        return None
    return (f"gridar-desktop: Qt cannot open a window because system libraries are missing; install them with: "
            f"{apt_command(missing)}  (Debian/Ubuntu package names)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not any(a in ("-h", "--help") for a in argv):
        environ = dict(os.environ)
        if "--selftest" in argv:                 # the app draws it offscreen (it sets that platform itself)
            environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        problem = desktop_problem(environ)
        if problem:
            print(problem, file=sys.stderr)
            _log(problem)
            return 2
    from .app.main import main as app_main
    return app_main(argv)


def _log(message: str) -> None:
    """Also into the log file: started from the applications menu, nobody sees stderr."""
    try:
        import logging

        from .logs import setup_logging
        setup_logging(to_stderr=False)
        logging.getLogger("gridar.launcher").error(message)
    except Exception:  # noqa: BLE001 - the message is already on stderr; logging must not turn it into a traceback
        pass


def _print_missing() -> int:
    """install.sh's check: print the missing packages (space separated) of the base and X11 lists; exit 1 if any."""
    missing = missing_packages({**QT_BASE_LIBRARIES, **QT_XCB_LIBRARIES})
    print(" ".join(missing))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(_print_missing() if sys.argv[1:] == ["--missing-packages"] else main())
