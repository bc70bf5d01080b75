"""The studio's run state: aborting, what the status bar says after a review, compute time, the prompt check before
any work, plain loading words, and a run after running out of memory. Driven through the window where an artist
would click."""
import asyncio
import time
import weakref

import pytest

pytest.importorskip("PySide6")

from conftest import wait  # noqa: E402

from gridar_desktop.engine import events as ev  # noqa: E402

PROMPT = "two red circles and a blue square"


def gridar(w, manual=False):
    w.controls.prompt.setText(PROMPT)
    w.controls.method.setCurrentIndex(w.controls.method.findData("gridar"))
    w.controls.n.setValue(4)
    w.controls.manual.setChecked(manual)


def test_aborting_from_the_click_until_the_worker_stopped(qtbot, window):
    w, s = window, window.studio
    gridar(w)
    said, states = [], []
    s.status.connect(said.append)
    s.aborting.connect(lambda on: states.append((on, s.busy)))
    # the abort arrives while the second band is being drawn: the worker is still running when it is asked
    def abort_in_band_2(e):
        if isinstance(e, ev.BandStarted) and e.stage == 1:
            s.engine_event.disconnect(abort_in_band_2)
            w.controls.abort.click()
    s.engine_event.connect(abort_in_band_2)
    task = w.start_generation()
    assert wait(qtbot, task) is None
    # True at the click (the worker still busy), False only once it has stopped (not busy any more)
    assert states == [(True, True), (False, False)]
    assert said.index("Aborting...") < said.index("Aborted") and said[-1] == "Aborted"
    assert "Aborted" in w.statusBar().currentMessage()
    gridar(w)
    assert wait(qtbot, w.start_generation()) is not None       # and the next run works


def test_after_a_review_the_status_names_the_next_step_and_bands_are_counted(qtbot, window):
    w, s = window, window.studio
    gridar(w, manual=True)
    said, bands = [], []
    s.status.connect(said.append)
    s.engine_event.connect(lambda e: isinstance(e, ev.BandStarted) and bands.append((e.stage, e.total)))
    task = w.start_generation()
    qtbot.waitUntil(lambda: s.waiting_for_artist, timeout=60000)
    w.strip.accept_btn.click()                                   # "Accept verifier"
    assert said[-1] == "Continuing: writing layout prompts for band 2 ..."
    qtbot.waitUntil(lambda: s.waiting_for_artist, timeout=60000)     # the layouts
    w.layouts.continue_btn.click()
    assert said[-1] == "Continuing: drawing band 2 of 3 ..."
    while not task.done():
        qtbot.waitUntil(lambda: s.waiting_for_artist or task.done(), timeout=60000)
        if s.waiting_for_artist:
            s.answer(s._question_default)
    assert task.result() is not None
    assert bands == [(0, 3), (1, 3), (2, 3)]                      # "band k of K": K is known from the first band


def test_done_in_counts_compute_not_the_time_the_artist_took(qtbot, window):
    w, s = window, window.studio
    gridar(w, manual=True)
    task = w.start_generation()
    qtbot.waitUntil(lambda: s.waiting_for_artist, timeout=60000)
    t0 = time.perf_counter()
    qtbot.wait(1500)                                                  # the artist looks at the cards
    looked = time.perf_counter() - t0
    while not task.done():
        if s.waiting_for_artist:
            s.answer(s._question_default)
        qtbot.waitUntil(lambda: s.waiting_for_artist or task.done(), timeout=60000)
    cost = task.result().cost
    assert cost.waiting_seconds >= looked and cost.compute_seconds == pytest.approx(cost.wall_seconds -
                                                                                 cost.waiting_seconds)
    assert cost.to_json()["waiting_seconds"] == round(cost.waiting_seconds, 4)     # the record stays honest
    assert f"Done in {cost.compute_seconds:.1f}s" in w.statusBar().currentMessage()


def test_a_prompt_the_model_cannot_read_is_refused_before_any_work(qtbot, window):
    w, s = window, window.studio
    gridar(w)
    first = wait(qtbot, w.start_generation())
    assert first is not None
    events, busy, errors = [], [], []
    s.engine_event.connect(events.append)
    s.busy_changed.connect(busy.append)
    s.error.connect(errors.append)
    assert s.check_prompt(PROMPT) is None
    assert "zebra" in s.check_prompt("a purple zebra")
    # the studio itself refuses (whoever calls it): nothing runs, the result on screen stays
    task = asyncio.ensure_future(s.generate(w.controls.request().__class__(prompt="a purple zebra")))
    assert wait(qtbot, task) is None
    assert events == [] and busy == [] and errors and "zebra" in errors[-1]
    assert s.result is first and s.chosen == first.best
    # an edit is checked as the edit feeds it to the model: the demo grammar wants a scene, not an instruction
    assert s.check_prompt("make the circle blue", edit=True) is not None
    assert s.check_prompt("a blue circle and a red square", edit=True) is None


def test_check_prompt_without_a_model_says_nothing(qtbot):
    from gridar_desktop.app.studio import Studio
    assert Studio(device="cpu").check_prompt("anything at all") is None


def test_loading_steps_are_plain_words(qtbot, loop, model_dir):
    from gridar_desktop.app.studio import Studio
    s = Studio(device="auto")
    steps, said = [], []
    s.load_progress.connect(lambda text, frac: steps.append(text))
    s.status.connect(said.append)
    assert wait(qtbot, asyncio.ensure_future(s.load_model(model_dir))) is True
    where = "the GPU" if s.model.backend.device.type == "cuda" else "the CPU"
    assert f"on {where}" in " ".join(steps) and f"on {where}" in said[-1]
    assert not any(word in " ".join(steps + said) for word in ("weights", "auto", "tokens", "reformulator"))
    s.shutdown()


def test_after_running_out_of_memory_the_run_is_freed_and_the_next_works(qtbot, window, monkeypatch):
    import torch

    import gridar_desktop.app.studio as studio_mod
    w, s = window, window.studio
    searches = []

    class Recorded(studio_mod.Search):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            searches.append(weakref.ref(self))
    monkeypatch.setattr(studio_mod, "Search", Recorded)
    backend = s.model.backend
    original, calls = backend.step_forward, []

    def step_forward(*a, **k):                      # out of memory once, in the middle of the first band
        calls.append(1)
        if len(calls) == 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(*a, **k)
    monkeypatch.setattr(backend, "step_forward", step_forward)
    errors = []
    s.error.connect(errors.append)
    gridar(w)
    assert wait(qtbot, w.start_generation()) is None
    assert errors[-1].startswith("The device ran out of memory") and not s.busy
    assert len(searches) == 1 and searches[0]() is None          # the failed run's state (its KV cache) is gone
    gridar(w)
    result = wait(qtbot, w.start_generation())
    assert result is not None and len(result.images) == 4 and errors[-1] == ""


def test_the_selftest_starts_its_busy_processes_and_kills_them():
    from gridar_desktop.app.main import busy_processes, parse
    assert parse(["--selftest", "--busy", "2"]).busy == 2 and parse([]).busy == 0
    with busy_processes(2) as procs:
        assert len(procs) == 2 and all(p.is_alive() for p in procs)
    assert not any(p.is_alive() for p in procs)


def test_on_the_cpu_torch_leaves_a_core_to_the_window(monkeypatch):
    import os

    import torch

    from gridar_desktop.app.studio import use_cpu_threads
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
        torch.set_num_threads(4)
        assert use_cpu_threads() == 3
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
        assert use_cpu_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "4")          # the user's own setting stands
        torch.set_num_threads(4)
        assert use_cpu_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_the_first_window_fits_a_small_screen_and_a_saved_size_is_kept(qtbot, loop, tmp_path):
    from PySide6.QtCore import QSize

    from gridar_desktop.app.main import PREFERRED_SIZE, first_size
    from gridar_desktop.app.studio import Studio
    from gridar_desktop.app.window import MainWindow
    assert first_size(QSize(2560, 1400)) == PREFERRED_SIZE
    w, h = first_size(QSize(1366, 738))             # a 1366x768 laptop under its panel
    assert w <= 1366 and h <= 738 - 30
    first = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(first)
    assert not getattr(first, "geometry_restored", False)
    first.resize(1100, 650)
    first.save_settings()
    first.close()
    again = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(again)
    assert again.geometry_restored                   # main() then leaves its size alone
    again.close()


def test_a_model_brings_its_guidance_unless_the_artist_chose_one(qtbot, loop, model_dir, tmp_path):
    import shutil

    from conftest import wait
    from gridar_desktop.app.studio import Studio
    from gridar_desktop.app.window import MainWindow
    janus_pro = tmp_path / "janus-pro-like"
    shutil.copytree(model_dir, janus_pro)
    (janus_pro / "gridar.json").unlink()                    # a Janus-Pro folder carries none: Janus-Pro's guidance
    w = MainWindow(Studio(device="cpu"))
    qtbot.addWidget(w)
    assert wait(qtbot, w.choose_model(model_dir)) is True
    assert w.controls.cfg.value() == 2.0
    assert wait(qtbot, w.choose_model(str(janus_pro))) is True
    assert w.controls.cfg.value() == 5.0
    w.controls.cfg.setValue(3.5)                            # the artist's own value survives a model change
    assert wait(qtbot, w.choose_model(model_dir)) is True
    assert w.controls.cfg.value() == 3.5
    w.close()
