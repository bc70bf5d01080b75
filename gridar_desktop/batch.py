"""`gridar batch`: render every (prompt, seed) of a prompt file into a folder, resumably.

The folder holds one PNG per image (the usual metadata, written atomically) and `results.jsonl`, one line per
image. The PNGs are the truth: an image is complete when its file decodes and its metadata names the same prompt,
seed, method, candidates and settings; `results.jsonl` is rebuilt from them when a run starts and then appended to as
each image is saved (a PNG is saved before its line, so a crash between the two loses nothing: the next run writes
the line from the PNG). A rerun skips the complete images and renders the rest.

Jobs are grouped into units: per seed, `batch` prompts of the file in order, like `gridar bench`. A unit runs as one
batched search (each job keeps its own generator, see `engine.search`), here or on a Ray worker (`cluster`), so both
draw the same batches and the same images. A unit that fails for a reason of its own (a prompt the model cannot
read, out of memory) is split into single jobs; a single job that fails is reported with its line and the rest go
on.

Ray is not imported here: the cluster path lives in `cluster`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from .engine.judges import judge_setting

RESULTS = "results.jsonl"


@dataclass(frozen=True)
class Job:
    """One image to render: a prompt line of the file and a seed (the search's seed, as `gridar generate --seed`)."""
    line: int
    prompt: str
    category: str | None
    seed: int

    @property
    def file_name(self) -> str:
        """Named by the prompt and the seed, not the line, so editing other lines of the file redoes nothing."""
        slug = "-".join(re.findall(r"[a-z0-9]+", self.prompt.lower()))[:60].strip("-") or "prompt"
        digest = hashlib.sha256(self.prompt.encode()).hexdigest()[:8]
        return f"{slug}-{digest}-seed{self.seed}.png"

    def where(self) -> str:
        return f"line {self.line} (seed {self.seed})"


@dataclass(frozen=True)
class RenderUnit:
    """Jobs that run as one batched search; `template` holds everything but the prompt and the seed."""
    key: str
    template: Any               # engine.search.SearchRequest (kept untyped: this module imports no torch)
    jobs: tuple[Job, ...]


@dataclass
class Outcome:
    """What a worker sends back for one job: the chosen image and its metadata, or why it failed."""
    job: Job
    image: Any = None           # uint8 (H, W, 3)
    meta: dict | None = None
    error: str | None = None


@dataclass
class UnitFailed:
    """A unit's search failed for a reason of its own (not a bug): the driver splits it or reports its job."""
    message: str


def plan_jobs(rows: list[tuple[int, dict]], seeds: list[int]) -> tuple[list[Job], list[str]]:
    """Every (prompt line, seed), seed-major as `gridar bench` orders them, and notes on repeated prompts (a prompt
    repeated on another line is the same image: rendered once, under its first line)."""
    first: dict[str, int] = {}
    notes = []
    for line, row in rows:
        if row["prompt"] in first:
            notes.append(f"line {line} repeats line {first[row['prompt']]} ({row['prompt']!r}); rendered once")
        else:
            first[row["prompt"]] = line
    unique = [(line, row) for line, row in rows if first[row["prompt"]] == line]
    jobs = [Job(line, row["prompt"], row.get("category"), seed) for seed in seeds for line, row in unique]
    return jobs, notes


def plan_units(jobs: list[Job], template, batch: int, pending: set[Job] | None = None) -> list[RenderUnit]:
    """Per seed, `batch` consecutive jobs. Chunks are cut from ALL jobs, so a rerun's units are the first run's
    (the same batches, the same float rounding); a unit keeps only its `pending` jobs, and one with none is
    dropped."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    units = []
    by_seed: dict[int, list[Job]] = {}
    for j in jobs:
        by_seed.setdefault(j.seed, []).append(j)
    for seed, group in by_seed.items():
        for at in range(0, len(group), batch):
            chunk = tuple(j for j in group[at:at + batch] if pending is None or j in pending)
            if chunk:
                units.append(RenderUnit(f"seed {seed}|jobs {at}-{min(at + batch, len(group)) - 1}", template,
                                        chunk))
    return units


def split(unit: RenderUnit) -> list[RenderUnit]:
    """A failed unit as single jobs, so the one at fault is found and the others still render."""
    return [RenderUnit(f"{unit.key}|{j.where()}", unit.template, (j,)) for j in unit.jobs]


def expected_settings(template, model: str, judge: str | None = "self") -> dict:
    """The metadata settings an image of this batch must hold (besides prompt and seed) to count as complete: all
    that decides what is drawn, the judge included; anything else (device, cost) may differ."""
    p = template.params
    return {"method": template.method, "n": template.n, "cfg": p.cfg, "temperature": p.temperature,
            "top_k": p.top_k, "top_p": p.top_p, "strategy": template.strategy, "threshold": template.threshold,
            "verify_by": template.verify_by, "reformulate": template.reformulate, "refill": template.refill,
            "model": model, **judge_setting(judge)}


def complete_meta(job: Job, path: Path, settings: dict) -> dict | None:
    """The image's metadata when `path` is this job's finished image (a regular file that decodes, whose metadata
    names the job's prompt, seed and `settings`); None otherwise."""
    from .io.png import ImageFileError, load_image, read_metadata
    if not path.is_file():
        return None
    try:
        meta = read_metadata(path)
        if meta.get("prompt") != job.prompt:
            return None
        s = meta.get("settings") or {}
        want = {**settings, "seed": job.seed}
        if any(k not in s or s[k] != v for k, v in want.items()):
            return None
        if s.get("judge") != want.get("judge"):  # judged by another model (or by one when none is wanted)
            return None
        load_image(path)                    # a damaged file (copied half, disk error) is redone
    except (ImageFileError, OSError):
        return None
    return meta


def result_line(job: Job, meta: dict) -> dict:
    """A job's line in results.jsonl, from its image's metadata (so a lost line can be written again from the
    PNG)."""
    scores = meta.get("scores") or []
    chosen = meta.get("chosen", 0)
    info = meta.get("batch") or {}
    return {"file": job.file_name, "line": job.line, "prompt": job.prompt, "category": job.category,
            "seed": job.seed, "method": meta.get("settings", {}).get("method"), "n": meta.get("settings", {}).get("n"),
            "chosen": chosen, "score": scores[chosen] if 0 <= chosen < len(scores) else None,
            "cost": meta.get("cost"), "cost_shared_by": info.get("cost_shared_by", 1)}


class ResultsLog:
    """results.jsonl: rewritten whole (atomically) from the complete images when a run starts, then one line
    appended per saved image. An append is one write() of one line, fsynced; a line cut by a crash is dropped by the
    next run's rewrite, which reads the PNGs, not this file."""

    def __init__(self, folder: Path, lines: Iterable[dict]) -> None:
        from .io.atomic import atomic_write_text, check_output_path
        self.path = folder / RESULTS
        atomic_write_text(self.path, "".join(json.dumps(x) + "\n" for x in lines))
        target, _ = check_output_path(self.path)         # a symlink is appended through, as it was written
        flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        self.fd = os.open(target, flags)

    def append(self, line: dict) -> None:
        os.write(self.fd, (json.dumps(line) + "\n").encode())
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Progress:
    """Images done, images per minute and the time left: a tqdm bar on a terminal, one JSON line per image
    otherwise (a log or another program reads it)."""

    def __init__(self, total: int, done: int = 0, stream: IO[str] | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.done, self.start_done, self.failed = total, done, done, 0
        self.t0 = time.perf_counter()
        tty = self.stream.isatty() if tty is None else tty
        self.bar = None
        if tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="image", file=self.stream, dynamic_ncols=True,
                            smoothing=0.1)

    def rate(self) -> float:
        """Images per minute rendered by this run (skipped images do not count)."""
        dt = time.perf_counter() - self.t0
        return 60.0 * (self.done - self.start_done) / dt if dt > 0 else 0.0

    def update(self, ok: bool = True) -> None:
        self.done += 1
        self.failed += not ok
        rate = self.rate()
        left = self.total - self.done
        eta = 60.0 * left / rate if rate > 0 else None
        if self.bar is not None:
            self.bar.set_postfix_str(f"{rate:.1f} images/min" + (f", {self.failed} failed" if self.failed else ""),
                                     refresh=False)
            self.bar.update(1)
        else:
            self.stream.write(json.dumps({"progress": {
                "done": self.done, "total": self.total, "failed": self.failed, "images_per_minute": round(rate, 2),
                "eta_seconds": None if eta is None else round(eta, 1)}}) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- running units: the same code here and on a Ray worker --------------------------------------------------------

def job_failure(e: BaseException) -> str | None:
    """The message of an error a job (or a unit) may fail with on its own, as one line; None for anything else
    (a bug, which is raised)."""
    from .engine.errors import EngineError, out_of_memory
    reason = out_of_memory(e) or e
    if isinstance(reason, (EngineError, ValueError)):
        return " ".join(str(reason).split()) or type(reason).__name__
    return None


class UnitRunner:
    """A loaded model that runs units: in this process for a local run, or as a Ray actor (one per GPU or CPU
    slot), which loads the model once (`start`) and then serves units until the run ends."""

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", lazy: bool = False,
                 judge: str = "self") -> None:
        self.model, self.device, self.dtype, self.judge = model, device, dtype, judge
        self.backend = self.roles = None
        if not lazy:
            self._load()

    def _load(self) -> None:
        if self.backend is not None:
            return
        from .engine.backend import JanusBackend
        from .engine.judges import load_judge
        from .engine.models import resolve_model
        self.backend = JanusBackend.load(resolve_model(self.model), device=self.device, dtype=self.dtype)
        self.roles = load_judge(self.judge, self.backend, self.device, self.dtype)

    def start(self) -> dict:
        """For a worker: load the model and say who it is, or why it could not load (one line) instead of dying
        with a traceback the driver cannot show."""
        try:
            self._load()
        except Exception as e:  # noqa: BLE001 - a bug still raises below
            msg = job_failure(e) or (" ".join(str(e).split()) if isinstance(e, OSError) else None)
            if msg is None:
                raise
            return {"error": msg}
        return self.info()

    def info(self) -> dict:
        import socket
        return {"pid": os.getpid(), "host": socket.gethostname(), "device": str(self.backend.device)}

    def render(self, unit: RenderUnit) -> list[Outcome] | UnitFailed:
        """Every job of the unit: a prompt the model cannot read fails its job alone; the rest run as one batched
        search. A failure of the search itself comes back as `UnitFailed` (the driver splits the unit)."""
        from .engine.search import Search
        self._load()                    # a replacement worker loads on its first unit
        outcomes: dict[Job, Outcome] = {}
        reqs, runnable = [], []
        for job in unit.jobs:
            try:
                prompt = self.backend.check_prompt(job.prompt)
            except Exception as e:  # noqa: BLE001 - a prompt the model refuses fails its job only
                msg = job_failure(e)
                if msg is None:
                    raise
                outcomes[job] = Outcome(job, error=msg)
                continue
            reqs.append(replace(unit.template, prompt=prompt, seed=job.seed))
            runnable.append(job)
        if reqs:
            roles = self.roles if unit.template.method != "single" else None
            try:
                results = Search(self.backend, roles, reqs).run_all()
            except Exception as e:  # noqa: BLE001 - said by the driver, which splits the unit
                msg = job_failure(e)
                if msg is None:
                    raise
                return UnitFailed(msg)
            for job, res in zip(runnable, results):
                meta = res.metadata()
                meta["settings"].update(model=self.model, device=str(self.backend.device),
                                        **judge_setting(self.judge))
                # a batch's cost record covers all its jobs: each image's metadata says by how many it is shared
                meta["batch"] = {"line": job.line, "category": job.category, "cost_shared_by": len(reqs)}
                outcomes[job] = Outcome(job, image=res.images[res.best], meta=meta)
        return [outcomes[j] for j in unit.jobs]

    def bench(self, unit) -> tuple[list[list], dict]:
        """One bench unit (`bench.BenchUnit`): the judged rows and the cost record as JSON."""
        from .bench import run_bench_unit
        self._load()
        rows, cost = run_bench_unit(self.backend, self.roles, unit)
        return [list(r) for r in rows], cost.to_json()


def run_local(runner: UnitRunner, units: list[RenderUnit]) -> Iterator[tuple[RenderUnit, list[Outcome]]]:
    """Units one after another in this process; a failed unit is split, a failed single job is an outcome with its
    error."""
    queue = list(reversed(units))
    while queue:
        unit = queue.pop()
        out = runner.render(unit)
        if isinstance(out, UnitFailed):
            if len(unit.jobs) > 1:
                queue.extend(reversed(split(unit)))
                continue
            out = [Outcome(unit.jobs[0], error=out.message)]
        yield unit, out


@dataclass
class BatchSummary:
    total: int                          # images the file and seeds ask for
    skipped: int                        # complete before this run
    rendered: list[Job]                 # saved by this run
    failed: list[tuple[Job, str]]       # with the reason


class BatchFolder:
    """The output folder: which jobs are complete, saving an outcome (PNG, then its results line)."""

    def __init__(self, folder: Path, jobs: list[Job], settings: dict, prompts_file: str) -> None:
        self.folder, self.jobs, self.settings, self.prompts_file = folder, jobs, settings, prompts_file
        self.lock = _lock_folder(folder)
        self.complete: dict[Job, dict] = {}
        for job in jobs:
            meta = complete_meta(job, folder / job.file_name, settings)
            if meta is not None:
                self.complete[job] = meta
        self.log = ResultsLog(folder, [result_line(j, self.complete[j]) for j in jobs if j in self.complete])

    def pending(self) -> list[Job]:
        return [j for j in self.jobs if j not in self.complete]

    def save(self, outcome: Outcome) -> None:
        from PIL import Image

        from .io.png import save_image
        meta = dict(outcome.meta)
        meta["batch"] = {**meta.get("batch", {}), "prompts_file": self.prompts_file}
        save_image(Image.fromarray(outcome.image), self.folder / outcome.job.file_name, outcome.job.prompt, meta)
        self.complete[outcome.job] = meta
        self.log.append(result_line(outcome.job, meta))

    def close(self) -> None:
        self.log.close()
        if self.lock >= 0:
            os.close(self.lock)             # releases the folder's lock
            self.lock = -1


def _lock_folder(folder: Path) -> int:
    """An exclusive lock on the folder itself (no file is created), held while a batch writes into it: two runs
    into one folder would render the same images twice and interleave their results lines."""
    try:
        import fcntl
    except ImportError:                     # not on this platform: one run at a time is then up to the user
        return -1
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValueError(f"another gridar batch is writing into {folder}; wait for it to end or choose another "
                         "folder") from None
    return fd


def run_batch(folder: BatchFolder, results: Iterable[tuple[RenderUnit, list[Outcome]]],
              progress: Progress | None = None, on_failure: Callable[[Job, str], None] | None = None,
              summary: BatchSummary | None = None) -> BatchSummary:
    """Save every outcome as it arrives (an interrupt keeps what was saved); `summary` is filled in as it goes, so
    a caller that catches the interrupt still knows what this run did."""
    summary = summary or BatchSummary(len(folder.jobs), len(folder.complete), [], [])
    if progress:
        progress.t0 = time.perf_counter()           # the rate counts rendering, not the model loading before
    for _unit, outcomes in results:
        for o in outcomes:
            if o.error is not None:
                summary.failed.append((o.job, o.error))
                if on_failure:
                    on_failure(o.job, o.error)
            else:
                folder.save(o)
                summary.rendered.append(o.job)
            if progress:
                progress.update(o.error is None)
    return summary
