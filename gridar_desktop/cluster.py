"""Batches and benchmarks on a Ray cluster (`--cluster auto|ADDRESS` on `gridar batch` and `gridar bench`).

Ray places the workers and moves the data; this module only hands out units. One worker (a Ray actor holding a
`batch.UnitRunner`) per GPU, or per CPU slot on a cluster without GPUs, loads the model once and serves units until
the run ends. A unit is the batch a local run would run (`batch.plan_units`, `bench.bench_units`), so each job draws
what it draws here.

Faults: a worker that dies (its process killed, out of host memory, its machine gone) loses only the unit it was
running, which goes to another worker, up to `retries` times; a replacement worker is started meanwhile. Ctrl+C
ends every worker and leaves the cluster as it was (a Ray instance started here is stopped).

Only imported with --cluster: the rest of the project never imports Ray (it is the optional extra `cluster`).
"""
from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any, Callable, Iterator

try:
    import ray
    from ray.exceptions import RayActorError, RayTaskError
except ImportError as e:                # said by the CLI before it gets here; a clear line for other callers
    raise ImportError("--cluster needs Ray: pip install 'gridar-desktop[cluster]' (or make install EXTRAS=cluster)"
                      ) from e

from .batch import Outcome, RenderUnit, UnitFailed, UnitRunner, job_failure, split
from .engine.errors import EngineError

DEFAULT_RETRIES = 2


class ClusterError(EngineError):
    """The cluster cannot do the work (unreachable, too small, every worker lost); the message says what to do."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def connect(address: str) -> bool:
    """Join the Ray cluster at `address`, or with 'auto' the one running on this machine, else a new one-machine
    instance for this run. True when the instance was started here (and must be stopped here). An instance this
    process already joined (ray.init called before) is used as it is."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == "auto":
        try:
            ray.init(address="auto", **quiet)
            return False
        except ConnectionError:
            ray.init(include_dashboard=False, **quiet)
            return True
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ClusterError(f"cannot reach the Ray cluster at '{address}' ({_one_line(e)}); start one with "
                           "`ray start --head` and pass the address it prints, or use --cluster auto") from None
    return False


class Cluster:
    """Workers on a Ray cluster for one run; a context manager that ends them (and a Ray instance it started).

    `observe(event, info)` hears what happens to the workers: 'lost' (a worker died; its unit is retried) and
    'gave up' (a unit lost its worker more than `retries` times)."""

    def __init__(self, address: str, model: str, device: str = "auto", dtype: str = "auto",
                 workers: int | None = None, retries: int = DEFAULT_RETRIES,
                 observe: Callable[[str, dict], None] | None = None) -> None:
        self.started_here = connect(address)
        self.retries, self.observe = retries, observe or (lambda event, info: None)
        self.args = (model, device, dtype)
        self.actors: list = []
        try:
            self._start(workers)
        except BaseException:
            self.close()
            raise

    # -- workers ---------------------------------------------------------------------------------------------
    def _start(self, workers: int | None) -> None:
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 0))
        slots = gpus or cpus
        if slots < 1:
            raise ClusterError("the Ray cluster has neither GPUs nor CPUs to run on; start workers with "
                               "`ray start --address ...` on each machine")
        n = workers or slots
        if n > slots:
            raise ClusterError(f"--workers {n}: the Ray cluster has {slots} {'GPU' if gpus else 'CPU'}(s) for one "
                               f"worker each; use at most {slots}")
        # one model per GPU; on CPUs the slots are shared evenly (a worker's torch threads = its CPUs)
        self.resources = {"num_gpus": 1} if gpus else {"num_cpus": max(1, cpus // n)}
        self.max_replacements = n * max(1, self.retries)
        self.replaced = 0
        self.actors = [self._new_actor() for _ in range(n)]
        try:
            infos = ray.get([a.start.remote() for a in self.actors])
        except RayActorError as e:
            raise ClusterError(f"a worker could not start ({_one_line(e)})") from None
        bad = [i["error"] for i in infos if "error" in i]
        if bad:
            raise ClusterError(f"{len(bad)} of {n} worker(s) could not load the model ({bad[0]}); on several machines "
                               "the model must be at the same path on each")
        self.info = {a._actor_id: i for a, i in zip(self.actors, infos)}
        self.device = infos[0]["device"]
        self.idle = list(self.actors)

    def _new_actor(self):
        cls = ray.remote(UnitRunner).options(max_restarts=0, max_task_retries=0, **self.resources)
        return cls.remote(*self.args, lazy=True)

    def workers(self) -> list[dict]:
        """pid, host and device of each worker started with the cluster (replacements are not waited for)."""
        return list(self.info.values())

    def _dispatched(self, actor, unit) -> None:
        """Called after each unit is handed to a worker (a test kills a worker here)."""

    def _lost(self, actor, unit, error: BaseException, tries: int) -> None:
        self.actors = [a for a in self.actors if a._actor_id != actor._actor_id]
        info = self.info.get(actor._actor_id, {})
        self.observe("lost", {"worker": info, "unit": unit.key, "try": tries, "of": self.retries + 1,
                              "reason": _one_line(error)})
        if self.replaced < self.max_replacements:
            self.replaced += 1
            fresh = self._new_actor()
            self.actors.append(fresh)
            self.idle.append(fresh)

    def _run(self, method: str, units: list, give_up: Callable[[Any, str], Any]) -> Iterator[tuple[Any, Any]]:
        """Each unit on some worker; yields (unit, what the worker returned) as each finishes. A unit whose worker
        died goes back to the front of the queue, at most `retries` times; then `give_up(unit, reason)` is
        yielded for it (or raises)."""
        queue, inflight, tries = deque(units), {}, Counter()
        while queue or inflight:
            while queue and self.idle:
                actor, unit = self.idle.pop(0), queue.popleft()
                inflight[getattr(actor, method).remote(unit)] = (actor, unit)
                self._dispatched(actor, unit)
            if not inflight:
                raise ClusterError(f"every worker was lost and no more are started ({self.replaced} replaced); "
                                   f"{len(queue)} unit(s) not run: run the same command again to resume")
            [ref], _ = ray.wait(list(inflight), num_returns=1)
            actor, unit = inflight.pop(ref)
            try:
                out = ray.get(ref)
            except RayActorError as e:
                tries[unit.key] += 1
                self._lost(actor, unit, e, tries[unit.key])
                if tries[unit.key] > self.retries:
                    reason = f"its worker died {tries[unit.key]} times (the last: {_one_line(e)})"
                    self.observe("gave up", {"unit": unit.key, "reason": reason})
                    yield unit, give_up(unit, reason)
                else:
                    queue.appendleft(unit)
                continue
            except RayTaskError as e:
                self.idle.append(actor)
                cause = getattr(e, "cause", None)
                if cause is not None and job_failure(cause) is not None:
                    raise cause from None
                raise
            self.idle.append(actor)
            yield unit, out

    def render_units(self, units: list[RenderUnit]) -> Iterator[tuple[RenderUnit, list[Outcome]]]:
        """`batch.run_local`'s contract on the cluster: a failed unit is split into single jobs (on any worker), a
        failed single job (or one whose worker kept dying) is an outcome with its error."""
        def give_up(unit, reason):
            return [Outcome(j, error=reason) for j in unit.jobs]
        queue = list(units)
        while queue:
            retry = []
            for unit, out in self._run("render", queue, give_up):
                if isinstance(out, UnitFailed):
                    if len(unit.jobs) > 1:
                        retry += split(unit)
                        continue
                    out = [Outcome(unit.jobs[0], error=out.message)]
                yield unit, out
            queue = retry

    def bench_units(self, units: list) -> Iterator[tuple[Any, list, dict]]:
        """`bench.run_bench`'s `execute`: (unit, rows, cost as JSON) as each finishes."""
        def give_up(unit, reason):
            raise ClusterError(f"bench unit '{unit.key}': {reason}")
        for unit, (rows, cost) in self._run("bench", units, give_up):
            yield unit, rows, cost

    # -- the end ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - an actor already gone is what we want
                pass
        self.actors = []
        if self.started_here and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
