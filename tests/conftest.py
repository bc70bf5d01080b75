import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own platform folders (logs, settings, history), beside its tmp_path rather than in it:
    tests that check a folder is left unchanged snapshot tmp_path, and the log file is not theirs."""
    monkeypatch.setenv("GRIDAR_HOME", str(tmp_path.parent / f"{tmp_path.name}-home"))
    yield
    # logging is set up once per process: forget it, so the next test logs into its own home and its own stderr
    import logging

    from gridar_desktop import logs
    root = logging.getLogger("gridar")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    logs._configured = False


# -- the studio: a window on a tiny random Janus model, driven through qasync (Qt imported lazily: most tests are
# Qt-free) ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from gridar_desktop.engine.tiny import save_tiny_janus
    d = tmp_path_factory.mktemp("studio-model")
    save_tiny_janus(d, seed=6)
    return str(d)


@pytest.fixture
def loop(qapp):
    import asyncio

    import qasync
    lp = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(lp)
    yield lp


@pytest.fixture
def window(qtbot, loop, model_dir):
    from gridar_desktop.app.studio import Studio
    from gridar_desktop.app.window import MainWindow
    w = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(w)
    w.show()
    task = w.choose_model(model_dir)
    qtbot.waitUntil(task.done, timeout=30000)
    assert task.result() is True
    yield w
    w.close()


def wait(qtbot, task, timeout=60000):
    qtbot.waitUntil(task.done, timeout=timeout)
    return task.result()
