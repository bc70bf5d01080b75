"""The studio's state and its interactive session, Qt-side but widget-free.

Threads: the GUI thread runs Qt and, through qasync, the asyncio loop; ALL model code runs on one dedicated GPU
thread (a single-worker executor), so jobs never overlap and the GUI thread never runs a forward pass.

An interactive generation is one coroutine (`generate`): it snapshots the request, hands `Search.run` to the GPU
thread and awaits it. Engine events hop to the GUI thread with `call_soon_threadsafe`. When the search reaches a
decision point, the artist policy (on the GPU thread) posts the question to the GUI thread and blocks only the GPU
thread on a thread-safe future until the artist answers. Abort resolves a pending question with the proposal, so the
GPU thread wakes up, sees the cancel token and stops at its next check (between two layers of any forward pass,
`engine.cancel`); this needs no event loop, so closing the window mid-question cannot deadlock. `aborting` is True
from the request until the worker has stopped.
"""
from __future__ import annotations

import asyncio
import logging
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ..engine import events as ev
from ..engine.cancel import CancelToken, active, install_checkpoints
from ..engine.errors import Cancelled, EngineError
from ..engine.judges import JUDGE_SELF
from ..engine.memory_plan import DoesNotFit
from ..engine.search import PruneDecision, Search, SearchRequest, SearchResult, VerdictReview

log = logging.getLogger("gridar.app")


@dataclass(frozen=True)
class EditInput:
    """What the edit mode hands to a job: the source fitted to the model and the painted mask (same size)."""
    image: object                 # uint8 (H, W, 3)
    mask: object                  # bool (H, W)
    feather: float = 2.0
    context: str = "mixed"        # engine.edit.CONTEXTS


@dataclass
class LoadedModel:
    spec: str
    backend: object
    roles: object
    judge: str = "self"            # who verifies, scores and reformulates: "self" or an image-text-to-text folder
    dtype: str = "auto"            # the dtype asked for when it loaded (the choice in force until the next load)
    judge_error: str = ""          # why the chosen judging folder did not load, when it did not


SELF_JUDGE = JUDGE_SELF             # the generator judges its own drawings
# where each import stage's progress falls in the whole (the tensors are most of the work)
IMPORT_SPAN = {"reading": (0.0, 0.05), "converting": (0.05, 0.75), "checking": (0.75, 0.85), "loading": (0.85, 1.0)}


def precision_words(dtype: str, device) -> str:
    """What a dtype choice means on `device` ('bfloat16 (image decoder and vision encoder float32)'); the name
    itself for one the backend does not know."""
    from ..engine.backend import dtype_words
    try:
        return dtype_words(dtype, device)
    except EngineError:
        return dtype


def load_judge(spec: str, backend, device: str, dtype: str):
    """The roles that verify, score and reformulate: the generator's own understanding path ("self") or a local
    model folder (`engine.judges.load_judge`, the CLI's too). GPU thread."""
    from ..engine.judges import load_judge as engine_load_judge
    return engine_load_judge(spec, backend, device, dtype)


def judge_words(spec: str) -> str:
    return "the generator's own understanding" if spec == SELF_JUDGE else f"the model in {Path(spec).name or spec}"


def verifier_calibration(roles) -> tuple[bool, str]:
    """(calibrated, note) of the roles' pruning verdicts. The roles say so themselves (`calibrated`,
    `calibration_note`); roles that do not are calibrated when they carry a threshold measured for their weights."""
    if roles is None:
        return True, ""
    calibrated = getattr(roles, "calibrated", None)
    if calibrated is None:
        calibrated = bool(getattr(roles, "prune_thresholds_by_rows", None)) or (
            getattr(roles, "prune_threshold", None) is not None)
    note = getattr(roles, "calibration_note", "") or ""
    if not calibrated and not note:
        from ..engine.search import pruning_threshold
        note = (f"No pruning threshold was measured for this verifier, so the general default "
                f"({pruning_threshold(roles):.2f}) is used: it may drop good candidates or keep poor ones. "
                "`gridar calibrate` measures one for a Janus-format folder from a set of prompts.")
    return bool(calibrated), note


@dataclass(frozen=True)
class MemoryEstimate:
    """The studio's estimate beside N: a short line, whether it fits, the details for the tooltip."""
    text: str
    fits: bool
    details: str


def device_words(device) -> str:
    """A device as an artist reads it: "the CPU", "the GPU" (with its number when there are several)."""
    kind = getattr(device, "type", str(device).split(":")[0])
    index = getattr(device, "index", None)
    if kind == "cuda":
        return "the GPU" + (f" {index}" if index else "")
    if kind == "mps":
        return "the Mac's GPU"
    return "the CPU"


def model_words(spec: str) -> str:
    """'demo' -> "the demo model"; a folder -> "the model in <its name>"."""
    return "the demo model" if spec == "demo" else f"the model in {Path(spec).name or spec}"


def use_cpu_threads() -> int:
    """On the CPU, torch's threads leave one core to the window and the artist's other programs (unless
    OMP_NUM_THREADS says otherwise). Why: every parallel op waits for its slowest thread; with one other busy
    process a thread per core is descheduled again and again (measured on 2 cores: a demo generation 10.3 s with
    2 threads, 1.7 s with 1; idle, both 1.7 s). Returns the number of threads in use."""
    import os

    import torch
    if "OMP_NUM_THREADS" not in os.environ:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, min(torch.get_num_threads(), usable - 1)))
    return torch.get_num_threads()


def _load(spec: str, device: str, step=lambda text, frac: None, dtype: str = "auto",
          judge: str = SELF_JUDGE) -> LoadedModel:
    """GPU thread: load a model folder in steps, reporting each (text, fraction done) in plain words. A judging
    folder that fails to load leaves the generator judging itself: the failure is the model's `judge_error`."""
    from ..engine.backend import JanusBackend, resolve_device
    from ..engine.janus_roles import JanusRoles
    from ..engine.models import resolve_model
    name = model_words(spec)
    step(f"Finding {name}", 0.05)
    folder = resolve_model(spec)
    dev = resolve_device(device)
    where = device_words(dev)                          # "auto" means nothing to an artist: say which it is
    if dev.type == "cpu":
        use_cpu_threads()
    step(f"Loading {name} on {where}", 0.15)
    backend = JanusBackend.load(folder, device=device, dtype=dtype)
    install_checkpoints(backend.model)          # an abort stops any forward pass between two layers
    judge_error = ""
    if judge != SELF_JUDGE:
        step(f"Loading the judging model ({judge_words(judge)})", 0.7)
        try:
            roles = load_judge(judge, backend, device, dtype)
        except EngineError as e:
            judge_error = (f"The judging model could not load ({one_line(describe_error(e))}); the generator "
                           "judges its own drawings instead")
            judge = SELF_JUDGE
    if judge == SELF_JUDGE:
        step("Preparing the helpers that check, score and describe the drawings", 0.8)
        roles = JanusRoles(backend)
    _install_judge_checkpoints(roles, backend)
    step("Preparing the empty canvas", 0.9)
    _ = backend.blank_token
    step("Ready", 1.0)
    return LoadedModel(spec, backend, roles, judge, dtype, judge_error)


def _weight_bytes(model: "LoadedModel | None") -> int:
    """What a loaded generator and its separate judge hold in weights."""
    if model is None:
        return 0
    mods = {id(m): m for m in (model.backend.model, getattr(model.roles, "model", None)) if hasattr(m, "parameters")}
    return sum(p.numel() * p.element_size() for m in mods.values() for p in m.parameters())


def preflight(spec: str, device: str, dtype: str, judge: str, loaded: "LoadedModel | None") -> tuple[str, bool]:
    """GPU thread, before a model loads: whether it can draw one image in what the device has free, from its
    config.json and the judging folder's headers (`engine.memory_plan`), so a model that cannot fit is refused in one
    line instead of after a minute's load. Returns (refusal or "", whether the model loaded now must go first to make
    room). Anything the plan cannot read is left to the load itself, which says what is wrong."""
    from ..engine import memory_plan as mp
    from ..engine.backend import resolve_device, resolve_dtype
    from ..engine.models import check_model_folder, resolve_model
    try:
        cfg = check_model_folder(resolve_model(spec))
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        judge_shape = None
        if judge != SELF_JUDGE:
            from ..engine.judges import judge_shape_for
            judge_shape = judge_shape_for(judge, dt)
        # one image: a single draw, or one candidate and its judging where a separate judge comes along
        run = mp.RunShape(method="single", n=1, judge=False) if judge_shape is None else \
            mp.RunShape(method="best-of-n", n=1)
        p = mp.plan(cfg, dt, run, judge_shape)
        free = mp.free_memory(dev)
    except (EngineError, ValueError, TypeError, KeyError, OSError) as e:
        # a folder the plan cannot read: the load says what is wrong with it, in its own words
        log.info("no plan before loading %s: %s", spec, e)
        return "", False
    if free is None or p.fits(free):
        return "", False
    held = _weight_bytes(loaded) if loaded is not None and loaded.backend.device.type == dev.type else 0
    if held and p.fits(free + held):
        return "", True
    name = model_words(spec)
    where = "on the GPU" if dev.type == "cuda" else "in the computer's memory" if dev.type == "cpu" else \
        f"on {device_words(dev)}"
    return (f"{name[0].upper()}{name[1:]} needs about {size_words(p.total)} {where} to load and draw one image "
            f"({p.summary()}), but {size_words(free + held)} is free{' without the model loaded now' if held else ''}"
            f": close other programs using this memory, choose a smaller Precision"
            f"{' or judge' if judge != SELF_JUDGE else ''}, or use another device"), False


def judge_room(spec: str, model: "LoadedModel") -> None:
    """GPU thread: refuse (`DoesNotFit`, one line) a judging folder whose weights alone exceed what the device has
    free beside the generator (a separate judge loaded now goes when the new one is in), from its safetensors
    headers; the run's own needs are the estimate beside N once it is loaded."""
    if spec == SELF_JUDGE:
        return
    from ..engine import memory_plan as mp
    from ..engine.judges import judge_weight_bytes
    device = model.backend.device
    try:
        dtype = next(model.backend.model.model.language_model.parameters()).dtype
    except (AttributeError, StopIteration):
        return
    need = judge_weight_bytes(spec, dtype)          # a folder it cannot read: its one line, as the load would say
    free = mp.free_memory(device)
    if free is None:
        return
    rmodel = getattr(model.roles, "model", None)
    if rmodel is not None and rmodel is not model.backend.model and hasattr(rmodel, "parameters"):
        free += sum(p.numel() * p.element_size() for p in rmodel.parameters())
    if need > free:
        where = "on the GPU" if device.type == "cuda" else "in the computer's memory"
        raise DoesNotFit(f"its weights need about {size_words(need)} {where} and {size_words(free)} is free beside "
                         "the generator: choose a smaller judging model, a smaller Precision, or the generator's own "
                         "understanding")


def _install_judge_checkpoints(roles, backend) -> None:
    """A separate judging model stops between two layers on abort, as the generator does."""
    rmodel = getattr(roles, "model", None)
    if rmodel is not None and rmodel is not backend.model:
        install_checkpoints(rmodel)


def size_words(n: float) -> str:
    """Bytes as an artist reads them: "350 MB", "18.5 GB" (binary units, as a card's box and monitors write)."""
    return f"{n / 1024 ** 3:.1f} GB" if n >= 1024 ** 3 else f"{max(1, round(n / 1024 ** 2))} MB"


def one_line(text: str) -> str:
    """A message cut to its first line: library errors can run to dozens."""
    text = str(text).strip()
    return text.splitlines()[0][:400] if text else ""


def describe_error(e: BaseException) -> str:
    """One line for the inline error banner."""
    if isinstance(e, EngineError):
        return str(e)
    from ..engine.errors import out_of_memory
    if out_of_memory(e) is not None:            # the one rule for what counts as running out of memory
        return ("The device ran out of memory. Try a smaller N, close other GPU programs, or run on the CPU. "
                f"({e})")
    return f"{e.__class__.__name__}: {e}"


class ArtistPolicy:
    """Runs on the GPU thread. In manual mode it asks the artist and blocks the GPU thread (only) until the answer;
    in auto mode it shows the verdicts and goes on."""

    def __init__(self, studio: "Studio", loop: asyncio.AbstractEventLoop) -> None:
        self.studio, self.loop = studio, loop

    def _ask(self, default, announce, after: tuple[str, int]):
        answer: Future = Future()
        self.loop.call_soon_threadsafe(self.studio._open_question, answer, default, announce, after)
        return answer.result()   # set by the artist, or with the default by abort / stop / shutdown

    def review_verdicts(self, review: VerdictReview) -> PruneDecision:
        if not self.studio.manual:
            self.loop.call_soon_threadsafe(self.studio.verdicts_shown.emit, review)
            return review.proposed
        return self._ask(review.proposed, lambda: self.studio.verdicts_wanted.emit(review), ("verdicts", review.stage))

    def review_layouts(self, stage: int, proposals: list[str]) -> list[str]:
        if not self.studio.manual:
            return proposals
        return self._ask(list(proposals), lambda: self.studio.layouts_wanted.emit(stage, list(proposals)),
                         ("layouts", stage))


class Studio(QObject):
    """Observable state of the studio and the actions on it. Widgets bind to its signals."""

    status = Signal(str)
    error = Signal(str)                    # '' clears the banner
    busy_changed = Signal(bool)
    model_changed = Signal(str)
    load_progress = Signal(str, float)     # step text, fraction done (model loading)
    engine_event = Signal(object)          # every engine event, in order, on the GUI thread
    verdicts_shown = Signal(object)        # VerdictReview, informational (auto mode)
    verdicts_wanted = Signal(object)       # VerdictReview, the artist must answer (manual mode)
    layouts_wanted = Signal(int, list)     # stage, proposals; the artist must answer (manual mode)
    question_closed = Signal()
    result_ready = Signal(object)          # SearchResult
    aborting = Signal(bool)                # True from the moment abort is asked until the worker stopped
    judge_changed = Signal(str)            # "self" or the judging folder now in use

    def __init__(self, device: str = "auto") -> None:
        super().__init__()
        self.device = device
        self.dtype = "auto"                # applied at the next model load
        self.judge = SELF_JUDGE            # the judge the next load brings (and the loaded model's, once loaded)
        self.gpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridar-gpu")
        self.model: LoadedModel | None = None
        self.manual = False
        self.live_previews = True
        self.busy = False
        self.result: SearchResult | None = None
        self.chosen: int | None = None
        self.last_seed: int | None = None
        self._token: CancelToken | None = None
        self._question: Future | None = None
        self._question_default = None
        self._question_after: tuple[str, int] | None = None     # what the open question is about: (kind, stage)
        self._request: SearchRequest | None = None              # the running request
        self._band = (0, 0)                                     # bands started in the running job, bands in all
        self.event_times: dict[str, float] = {}

    # -- jobs --------------------------------------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.busy_changed.emit(busy)

    def threshold_summary(self) -> str:
        """What pruning does with the loaded model's own thresholds, in words an artist reads (the figures are in
        `threshold_details`); "" without a model."""
        roles = self.model.roles if self.model else None
        if roles is None:
            return ""
        calibrated = bool(getattr(roles, "prune_thresholds_by_rows", None)) or (
            getattr(roles, "prune_threshold", None) is not None)
        text = ("Prunes candidates the verifier finds unlikely (calibrated for this model)" if calibrated else
                "Prunes candidates the verifier finds unlikely (a general setting: this model has no calibration)")
        from ..engine.search import pruning_threshold
        if getattr(roles, "edit_value", None) is not None and pruning_threshold(roles, edit=True) <= 0:
            text += "; in edits it prunes nothing and only helps pick the best"
        return text

    def threshold_details(self) -> str:
        """The exact thresholds behind `threshold_summary`, for a tooltip: per band where calibrated, and for edits
        (a value head's, which may prune nothing); "" without a model."""
        roles = self.model.roles if self.model else None
        if roles is None:
            return ""
        from ..engine.search import pruning_threshold
        by = getattr(roles, "prune_thresholds_by_rows", None) or {}
        if by:
            gen = ", ".join(f"{t:.3f} after {r} token rows" for r, t in sorted(by.items()))
            gen += f", else {pruning_threshold(roles):.3f}"
        else:
            gen = f"{pruning_threshold(roles):.3f}" + ("" if getattr(roles, "prune_threshold", None) is not None
                                                        else " (no calibration: the default)")
        t = pruning_threshold(roles, edit=True)
        if getattr(roles, "edit_value", None) is not None:
            edit = "the value head, " + (f"P(ends right) below {t:.3f}" if t > 0 else "which prunes nothing")
        else:
            edit = f"{t:.3f}"
        return f"Rejected when P(possible) is below {gen}; edits: {edit}"

    def check_prompt(self, text: str, edit: bool = False) -> str | None:
        """Why the loaded model cannot read `text` (one line for the banner), or None when it can (or no model is
        loaded yet). `edit`: check what an edit feeds the model (`engine.edit.edit_prompt`), not the raw text."""
        if self.model is None:
            return None
        backend = self.model.backend
        try:
            if edit:
                from ..engine.edit import edit_prompt
                text = edit_prompt(backend, text, text)     # the Edit tab's prompt describes the edited image
            check = getattr(backend, "check_prompt", None)
            if check is not None:
                check(text, edit=edit)
            elif not text.strip():
                return "Type a prompt first: describe the image you want."
            else:
                backend.prompt_ids(text)             # unknown words: a message that lists them
        except EngineError as e:
            return describe_error(e)
        return None

    async def load_model(self, spec: str) -> bool:
        """Load a model folder (or 'demo') on the GPU thread, in the chosen dtype and with the chosen judge; errors
        become the inline message and the model loaded before stays."""
        if self.busy:                           # one job at a time on the worker: a run, an import, a load
            self.error.emit("A job is running: wait for it to finish or abort it (Esc) before loading a model.")
            return False
        loop = asyncio.get_running_loop()
        self._set_busy(True)
        self.status.emit(f"Loading {model_words(spec)} ...")

        def step(text: str, frac: float) -> None:      # GPU thread -> GUI thread
            loop.call_soon_threadsafe(self.load_progress.emit, text, frac)
        try:
            refused, make_room = await loop.run_in_executor(self.gpu, preflight, spec, self.device, self.dtype,
                                                            self.judge, self.model)
            if refused:
                raise DoesNotFit(refused)
            if make_room:                       # it fits once the model loaded now is gone, not beside it
                old = self.model
                self.status.emit(f"Unloading {model_words(old.spec)} to make room ...")
                self.model = None
                self._release_memory(old.backend.device)
                del old
            self.model = await loop.run_in_executor(self.gpu, _load, spec, self.device, step, self.dtype, self.judge)
        except Exception as e:  # noqa: BLE001 - any failure is shown, the app keeps running
            log.warning("model load failed: %s", e)
            self.error.emit(describe_error(e))
            self.status.emit("No model loaded" if self.model is None else
                             f"{model_words(self.model.spec)[0].upper()}{model_words(self.model.spec)[1:]} stays "
                             "loaded")
            return False
        finally:
            self._set_busy(False)
        self.error.emit(self.model.judge_error)
        if self.judge != self.model.judge:
            self.judge = self.model.judge
            self.judge_changed.emit(self.judge)
        self.model_changed.emit(spec)
        info = self.model.backend.info
        name = model_words(spec)
        self.status.emit(f"{name[0].upper()}{name[1:]} is ready: {info.image_size} x {info.image_size} pixel "
                         f"images, on {device_words(self.model.backend.device)}")
        return True

    async def set_judge(self, spec: str) -> bool:
        """Judge with `spec` ("self" or an image-text-to-text folder) from now on: loaded on the GPU thread beside
        the generator. A failure is one line in the banner and the judge in use stays."""
        if self.busy:
            self.error.emit("A job is running: wait for it to finish or abort it (Esc) before changing the judge.")
            return False
        if self.model is None:                  # nothing loaded yet: it comes with the next model
            if spec != SELF_JUDGE:
                from ..engine.judges import judge_folder
                try:
                    judge_folder(spec)          # its small files only: a folder that is no model is said now
                except EngineError as e:
                    self.error.emit(f"{judge_words(spec)[0].upper()}{judge_words(spec)[1:]} cannot be the judge: "
                                    f"{one_line(describe_error(e))}")
                    return False
            self.judge = spec
            self.judge_changed.emit(spec)
            return True
        loop, model = asyncio.get_running_loop(), self.model
        self._set_busy(True)
        self.status.emit(f"Loading the judging model ({judge_words(spec)}) ...")

        def job():
            judge_room(spec, model)             # refused before its weights load when they cannot fit
            roles = load_judge(spec, model.backend, self.device, model.dtype)
            _install_judge_checkpoints(roles, model.backend)
            return roles
        try:
            roles = await loop.run_in_executor(self.gpu, job)
        except Exception as e:  # noqa: BLE001 - any failure is shown, the judge in use stays
            log.warning("judge load failed: %s", e)
            self.error.emit(f"{judge_words(spec)[0].upper()}{judge_words(spec)[1:]} could not be loaded as the "
                            f"judge: {one_line(describe_error(e))}. {judge_words(self.judge)[0].upper()}"
                            f"{judge_words(self.judge)[1:]} still judges.")
            self.status.emit("The judge was not changed")
            return False
        finally:
            self._set_busy(False)
        self.model = replace(model, roles=roles, judge=spec, judge_error="")
        self.judge = spec
        del model
        self._release_memory()                  # the judging model it replaces
        self.error.emit("")
        self.judge_changed.emit(spec)
        self.status.emit(f"Judging with {judge_words(spec)}")
        return True

    async def import_model(self, src: str | Path, dst: str | Path) -> Path | None:
        """Import an original-layout Janus folder into `dst` (the transformers format) on the GPU thread, with
        progress; abort cancels it and leaves nothing at `dst`. Returns `dst`, or None (the banner says why)."""
        if self.busy:
            return None
        from ..engine.importer import STAGES
        from ..engine.importer import import_model as run_import
        loop = asyncio.get_running_loop()
        token = self._token = CancelToken()
        name = Path(src).name
        self._set_busy(True)
        self.error.emit("")
        self.status.emit(f"Importing {name} into {dst} ...")

        def progress(stage: str, done: int, total: int) -> None:      # GPU thread
            token.check()                       # abort: the importer removes its unfinished folder
            lo, hi = IMPORT_SPAN.get(stage, (0.0, 1.0))
            frac = lo + (hi - lo) * (min(1.0, done / total) if total else 1.0)
            loop.call_soon_threadsafe(self.load_progress.emit, f"Importing {name}: {STAGES.get(stage, stage)}", frac)
        try:
            out = await loop.run_in_executor(self.gpu, lambda: run_import(src, dst, progress))
        except Cancelled:
            self.status.emit("Import cancelled: nothing was written")
            return None
        except Exception as e:  # noqa: BLE001 - any failure is one line; the loaded model stays
            log.warning("import failed: %s", e)
            self.error.emit(one_line(describe_error(e)))
            self.status.emit("Import failed")
            return None
        finally:
            self._token = None
            self._set_busy(False)
            if token.aborted:
                self.aborting.emit(False)
        self.status.emit(f"Imported {name} into {out}")
        return Path(out)

    def memory_estimate(self, request: SearchRequest) -> MemoryEstimate | None:
        """What `request` would need beside the loaded model and what the device has free, computed from the
        model's configuration (`engine.memory_plan`), never by running anything; None without a model or while a
        job runs (the worker then owns the tokenizer)."""
        m = self.model
        if m is None or self.busy:
            return None
        from ..engine import memory_plan as mp
        roles = m.roles if request.method != "single" else None
        try:
            p = mp.plan_request(m.backend, roles, request)
        except (EngineError, ValueError, TypeError, AttributeError) as e:
            log.info("no memory estimate: %s", e)
            return None
        if p is None:
            return None
        device = m.backend.device
        free = mp.free_memory(device)
        need = p.need(weights_loaded=True)
        where = "on the GPU" if device.type == "cuda" else "in the computer's memory (RAM)" if device.type == "cpu" \
            else f"on {device_words(device)}"
        judge = "" if m.judge == SELF_JUDGE else " and the judging model's"
        details = (f"This run needs about {size_words(need)} {where} beside the loaded weights (the generator's"
                   f"{judge}, {size_words(p.weight_bytes)} in all, {p.dtype}): {p.summary(weights=False)}. The most "
                   f"is needed during {p.phase}.")
        if free is None:
            return MemoryEstimate(f"~{size_words(need)}", True, details + " How much is free cannot be read here.")
        fits = p.fits(free, weights_loaded=True)
        details += f" {size_words(free)} is free now."
        if not fits:                            # the planner's own sentence: the numbers and the N that fits
            why = mp.refusal(p, free, device)
            details = f"Too much: {why}."
        return MemoryEstimate(f"~{size_words(need)} of {size_words(free)} free", fits, details)

    async def generate(self, request: SearchRequest, edit: EditInput | None = None) -> SearchResult | None:
        """One interactive generation, or an edit of `edit.image` inside `edit.mask`. Returns the result, or None
        when aborted or failed."""
        if self.busy:
            return None
        if self.model is None and not await self.load_model("demo"):
            return None
        refused = self.check_prompt(request.prompt, edit=edit is not None)
        if refused is not None:            # before any work: the result on screen stays
            self.error.emit(refused)
            self.status.emit("Prompt not understood: nothing was started")
            return None
        loop = asyncio.get_running_loop()
        self._token = CancelToken()
        self.last_seed = request.seed
        self._request, self._band = request, (0, 0)
        self.result, self.chosen = None, None
        self._set_busy(True)
        self.error.emit("")
        self.status.emit(f"Generating with {request.method}, N = {request.n}, seed {request.seed}")

        def emit(e: object) -> None:           # GPU thread -> GUI thread
            t = time.perf_counter()
            loop.call_soon_threadsafe(self._deliver, e, t)
        model, token, policy, live = self.model, self._token, ArtistPolicy(self, loop), self.live_previews
        failed = False

        def job() -> SearchResult:             # GPU thread: the edit's encode and the whole search
            with active(token):                # an abort during the edit's encode stops it between layers
                try:
                    return run(request)
                except BaseException as e:
                    # the failed run's search and KV cache live on in its frames' locals, which the exception
                    # keeps (the log, the future): drop them so its memory is free for the next run
                    traceback.clear_frames(e.__traceback__)
                    raise

        def run(req: SearchRequest) -> SearchResult:
            if edit is not None:
                import numpy as np
                from PIL import Image

                from ..engine.edit import edit_prompt, prepare_edit
                target = prepare_edit(model.backend, Image.fromarray(edit.image),
                                      Image.fromarray(np.asarray(edit.mask, np.uint8) * 255), "resize", edit.feather)
                req = replace(req, prompt=edit_prompt(model.backend, request.prompt, request.prompt), edit=target,
                              context=edit.context)
            search = Search(model.backend, model.roles if req.method != "single" else None, req, policy, emit,
                            token, live_previews=live)
            return search.run()
        try:
            result = await loop.run_in_executor(self.gpu, job)
        except Cancelled:
            self._end_job(token)
            self.status.emit("Aborted")
            return None
        except EngineError as e:        # expected, explained to the artist: no traceback in the log
            log.warning("generation refused: %s", e)
            self.error.emit(describe_error(e))
            self.status.emit("Generation failed")
            return None
        except Exception as e:  # noqa: BLE001
            log.exception("generation failed")
            self.error.emit(describe_error(e))
            self.status.emit("Generation failed")
            failed = True
            return None
        finally:
            self._end_job(token)
            if failed:
                self._release_memory()
        self.result, self.chosen = result, result.best
        self.result_ready.emit(result)
        c = result.cost
        # compute time: the minutes a question waited for the artist are not the studio's
        self.status.emit(("Stopped after a band" if result.stopped_early else "Done") +
                         f" in {c.compute_seconds:.1f}s; best candidate {result.best + 1}")
        return result

    def _release_memory(self, device=None) -> None:
        """After a failed run (out of memory above all): the failed search's tensors are held by the exception's
        frames, which form cycles; collect them and hand the freed device memory back so the next run can use it.
        `device`: where memory was freed when no model is loaded any more."""
        import gc
        gc.collect()
        backend = self.model.backend if self.model else None
        device = getattr(backend, "device", None) if backend is not None else device
        if str(device or "cpu").startswith("cuda"):
            import torch
            torch.cuda.empty_cache()

    def _end_job(self, token: CancelToken) -> None:
        """The worker has stopped: close any question, leave the busy (and aborting) state. Idempotent."""
        if self._token is not token:
            return
        self._close_question()
        self._token = None
        self._set_busy(False)
        if token.aborted:
            self.aborting.emit(False)

    def _deliver(self, e: object, t_emit: float) -> None:
        self.event_times[type(e).__name__] = t_emit
        if isinstance(e, ev.BandStarted):
            self._band = (self._band[0] + 1, e.total)
        self.engine_event.emit(e)

    # -- questions to the artist (manual mode) -----------------------------------------------------------------
    def _open_question(self, answer: Future, default, announce, after: tuple[str, int] | None = None) -> None:
        """GUI thread: a decision point reached the artist. `answer` is a thread-safe future the GPU thread waits
        on; resolving it never needs the event loop, so abort and shutdown cannot deadlock."""
        self._question, self._question_default, self._question_after = answer, default, after
        if self._token is None or self._token.aborted:
            self._close_question()
            return
        self.status.emit("Waiting for you: review the candidates, then Continue")
        announce()

    def answer(self, value) -> None:
        """The artist's decision (a PruneDecision or a list of layout prompts)."""
        q = self._question
        if q is not None and not q.done():
            q.set_result(value)
            self.question_closed.emit()
            self.status.emit(self.next_step())

    def next_step(self) -> str:
        """What the run does once the open question is answered, for the status bar ("Continuing: drawing band 3
        of 4 ...")."""
        kind, stage = self._question_after or ("", -1)
        req, (done, total) = self._request, self._band
        if self._token is not None and self._token.stopping_after_band:
            return "Stopping after this band ..."
        if (kind == "verdicts" and req is not None and req.reformulate and 0 <= stage < len(req.schedule)
                and req.schedule[stage].reformulate):
            return f"Continuing: writing layout prompts for band {done + 1} ..."
        if total and done < total:
            return f"Continuing: drawing band {done + 1} of {total} ..."
        return "Continuing ..."

    @property
    def waiting_for_artist(self) -> bool:
        return self._question is not None and not self._question.done()

    def _close_question(self) -> None:
        q = self._question
        if q is not None and not q.done():
            q.set_result(self._question_default)
            self.question_closed.emit()

    # -- stops -------------------------------------------------------------------------------------------------
    def abort(self) -> None:
        token = self._token
        if token is not None and not token.aborted:
            token.abort()
            self.aborting.emit(True)
            self.status.emit("Aborting...")
        self._close_question()          # wake the GPU thread if it waits for the artist

    def stop_after_band(self) -> None:
        if self._token is not None:
            self._token.stop_after_band()
        self._close_question()

    def shutdown(self) -> None:
        """Abort any job and wait for the GPU thread to finish (called when the window closes)."""
        self.abort()
        self.gpu.shutdown(wait=True, cancel_futures=True)

    # -- files -------------------------------------------------------------------------------------------------
    def choose(self, index: int) -> None:
        if self.result is not None and 0 <= index < len(self.result.images):
            self.chosen = index


def request_from_metadata(meta: dict) -> SearchRequest:
    """Rebuild the request snapshot stored in a PNG's metadata (to restore settings). `meta` is what
    `io.metadata.validate` cleaned (`io.png.read_metadata`); a field that still cannot be used falls back to its
    default rather than raise, so opening a file never fails on what it records."""
    from ..engine.sampling import SamplingParams
    from ..engine.search import Stage
    meta = meta if isinstance(meta, dict) else {}
    s = meta.get("settings")
    s = s if isinstance(s, dict) else {}
    base = SearchRequest(prompt="")

    def get(key: str, conv, default):
        try:
            v = s.get(key, default)
            return default if v is None and default is not None else conv(v)
        except (TypeError, ValueError, OverflowError):
            return default
    try:
        params = SamplingParams(cfg=get("cfg", float, 3.0), temperature=get("temperature", float, 1.0),
                                top_k=get("top_k", int, 0), top_p=get("top_p", float, 1.0),
                                layout_scale=get("layout_scale", lambda v: None if v is None else float(v), None))
    except ValueError:
        params = base.params
    edit = None
    if isinstance(s.get("edit"), dict):
        from ..engine.edit import edit_from_metadata
        try:
            edit = edit_from_metadata(s["edit"])
        except Exception:       # noqa: BLE001 -- a record validate let through should decode; if not, no edit
            log.warning("the edit recorded in the file could not be restored", exc_info=True)
    prompt = meta.get("prompt", "")
    req = SearchRequest(prompt=prompt if isinstance(prompt, str) else "", method=get("method", str, "gridar"),
                        n=get("n", int, 4), seed=get("seed", int, 0), params=params,
                        strategy=get("strategy", str, "three-way"), prune=get("prune", bool, True),
                        reformulate=get("reformulate", bool, True),
                        threshold=get("threshold", lambda v: None if v is None else float(v), None), edit=edit,
                        value_pick=get("value_pick", bool, True),
                        context=get("context", str, "source"),     # older files: edits forced the source's codes
                        verify_by=get("verify_by", str, "view"), refill=get("refill", str, "copy"))
    if isinstance(s.get("schedule"), list):
        try:
            req = replace(req, schedule=tuple(Stage(**st) for st in s["schedule"]))
        except TypeError:
            pass
    return req


__all__ = ["Studio", "ArtistPolicy", "request_from_metadata", "describe_error", "ev"]
