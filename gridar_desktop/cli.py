"""`gridar`: the command line. Each sub-command prints plain text or one JSON object and exits non-zero with a
one-line message naming the problem on bad input.

Bad input is refused as early as it can be known: numbers by the parser (finite, in range), prompts by the model's
prompt language read from the folder's gridar.json (no weights needed), and only then does a model load.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Callable

from . import __version__
from .engine.defaults import GRIDAR_DEFAULTS, GROUP as GRIDAR_GROUP, REFILL, VERIFY_BY
from .logs import setup_logging

# Candidates per run, a stated ceiling (the studio offers up to 32): an absurd -n is refused up front instead of
# failing in the allocator after the model has loaded.
MAX_N = 64
MAX_SEED = 2 ** 63 - 1          # seeds are 64-bit signed integers in torch
SCENE_SIZES = (8, 2048)         # gridar scene --size, in pixels
MAX_BATCH = 1024
MAX_PROMPT_SET = 1_000_000


class UsageError(Exception):
    """A command line the parser refuses (the message is one line naming the argument)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block) and is raised, so `main` returns 2 in-process."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _number(kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
            what: str = "") -> Callable[[str], int | float]:
    """An argparse `type=` that accepts a finite number of `kind` within [lo, hi] ((lo, hi] with lo_open)."""
    def show(x: float) -> str:
        return str(x) if kind is int else f"{x:g}"
    if lo is not None and hi is not None:
        rng = (f"from {show(lo)} to {show(hi)}" if kind is int
               else f"in {'(' if lo_open else '['}{show(lo)}, {show(hi)}]")
    elif lo is not None:
        rng = f"{'>' if lo_open else '>='} {show(lo)}"
    else:
        rng = ""
    noun = "a whole number" if kind is int else "a finite number"
    rule = f"{noun} {rng}".strip() + (f" ({what})" if what else "")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        if (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _text(text: str) -> str:
    """An argparse `type=` for prompts and instructions: UTF-8 text that is not blank."""
    from .engine.prompt_language import has_undecodable_bytes
    if has_undecodable_bytes(text):
        raise argparse.ArgumentTypeError("holds bytes that are not UTF-8 text; type it again in UTF-8")
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; type what the image should show")
    return text


def _seeds(text: str) -> list[int]:
    """An argparse `type=` for a comma-separated list of seeds."""
    seed = _number(int, 0, MAX_SEED)
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of whole numbers, e.g. 0,1, got {text!r}")
    try:
        return [seed(s) for s in items]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of whole numbers from 0 to {MAX_SEED}, "
                                         f"e.g. 0,1, got {text!r}") from None


SEED = _number(int, 0, MAX_SEED)
CANDIDATES = _number(int, 1, MAX_N, what=f"for gridar a multiple of {GRIDAR_GROUP}")
CFG = _number(float, 0, 100)
TEMPERATURE = _number(float, 0, 100, lo_open=True)
TOP_K = _number(int, 0)
TOP_P = _number(float, 0, 1, lo_open=True)
THRESHOLD = _number(float, 0, 1)


def _save(command: str, image, path, prompt: str, meta: dict) -> None:
    """Write the image in the format its suffix names; what that format cannot keep is said on stderr."""
    from .io.png import save_image
    _, notes = save_image(image, path, prompt, meta)
    for note in notes:
        print(f"gridar {command}: {note}", file=sys.stderr)


def _cmd_scene(args: argparse.Namespace) -> int:
    from .shapes.scene import make_scene
    img, objs = make_scene(args.prompt, args.seed, args.size)
    _save("scene", img, args.output, args.prompt, {"settings": {"method": "ground truth", "seed": args.seed},
                                                   "objects": [o.__dict__ for o in objs]})
    print(args.output)
    return 0


# The judge reads flat shapes whose features are scale-free; above this side an image is judged scaled down, which
# bounds its memory (a 4000x4000 image at full size took 3.8 GB).
JUDGE_MAX_SIDE = 1024
EDIT_MAX_SIDE = 2048


def _cmd_judge(args: argparse.Namespace) -> int:
    from .io.png import check_image, load_image
    from .shapes.judge import judge
    w, h = check_image(args.image)
    image = load_image(args.image, max_side=JUDGE_MAX_SIDE)
    if image.size != (w, h):
        print(f"gridar judge: {args.image} is {w}x{h}; judged scaled down to {image.width}x{image.height} "
              "(object positions are in that size)", file=sys.stderr)
    print(json.dumps(judge(image, args.prompt).to_json()))
    return 0


def _cmd_prompts(args: argparse.Namespace) -> int:
    from .shapes.promptsets import CATEGORIES, make_prompt_set, write_jsonl
    cats = tuple(args.categories.split(",")) if args.categories else CATEGORIES
    bad = [c for c in cats if c not in CATEGORIES]
    if bad:
        raise ValueError(f"unknown categories {bad}; choose from {', '.join(CATEGORIES)}")
    rows = make_prompt_set(args.n, args.seed, cats)
    write_jsonl(rows, args.output)
    print(f"{len(rows)} prompts -> {args.output}")
    return 0


def _check_output(args: argparse.Namespace) -> None:
    """The output path, right after parsing: its folder must exist and what is there must be a file we may replace
    (`io.atomic.check_output_path`), so a run is not spent on a file that cannot be written."""
    from pathlib import Path

    from .io.atomic import check_output_path
    flag, path = ("--out", args.out) if hasattr(args, "out") else ("-o", getattr(args, "output", None))
    if path is None:
        return
    folder = Path(path).expanduser().parent
    if not folder.is_dir():
        raise UsageError(f"gridar {args.command}: argument {flag}: the folder '{folder}' does not exist; create it "
                         "or choose another path")
    try:
        check_output_path(Path(path).expanduser())
    except OSError as e:
        raise UsageError(f"gridar {args.command}: argument {flag}: {e}") from None


def _check_candidates(args: argparse.Namespace) -> None:
    """-n against the method, right after parsing (before any model loads)."""
    if args.method == "gridar" and args.n % GRIDAR_GROUP:
        raise UsageError(f"gridar {args.command}: argument -n: GridAR works in groups of {GRIDAR_GROUP} candidates, "
                         f"so -n must be a multiple of {GRIDAR_GROUP} (got {args.n}; try "
                         f"{max(GRIDAR_GROUP, args.n // GRIDAR_GROUP * GRIDAR_GROUP)})")


def _model_language(args: argparse.Namespace) -> tuple[str, str | None]:
    """(the model's name, its prompt language) from the folder's small files: no torch, no weights. A folder that
    cannot be used fails here, before anything loads."""
    from .engine.models import check_model_folder, read_model_meta, resolve_model
    folder = resolve_model(args.model)
    check_model_folder(folder)
    meta = read_model_meta(folder)
    return meta.get("name") or f"the model in '{folder}'", meta.get("prompt_language")


def _settings(args: argparse.Namespace) -> dict:
    """The sampling settings of a run: what the command line gave, else the model's own defaults (gridar.json's
    "defaults", else its prompt format's: Janus-Pro guidance 5, the demo model 2), else the engine's."""
    from .engine.models import fill_defaults, read_model_meta, resolve_model
    given = {"guidance": args.cfg, "temperature": args.temperature, "top_k": getattr(args, "top_k", None),
             "top_p": getattr(args, "top_p", None), "threshold": getattr(args, "threshold", None)}
    return fill_defaults(given, read_model_meta(resolve_model(args.model)))


def _params(s: dict):
    from .engine.sampling import SamplingParams
    return SamplingParams(cfg=s["guidance"], temperature=s["temperature"], top_k=s["top_k"], top_p=s["top_p"],
                          layout_scale=s["layout_scale"])


def _check_memory_before_load(args: argparse.Namespace, req, prompt: str, edit: bool = False) -> None:
    """Refuse a run that cannot fit the device from the folder's config.json alone: at 7B the weights take a minute
    to load, and a refusal after that is a minute lost. The prompt's length in tokens is guessed low (a word a token,
    plus the template), so this refuses only what cannot fit anyway; the run checks again with the real length.
    A separate judge (--judge FOLDER) counts with its weights and its batch of questions."""
    from .engine.memory_plan import check_before_load
    from .engine.models import resolve_model
    check_before_load(resolve_model(args.model), args.device, args.dtype, method=req.method, n=req.n,
                      verify_by=req.verify_by, strategy=req.strategy, reformulate=req.reformulate,
                      prompt_tokens=len(prompt.split()) + 8, edit=edit, judge=_judge_shape(args, req.method))


def _judge_shape(args: argparse.Namespace, method: str):
    """The memory plan's shape of --judge FOLDER (None for the generator's own judging, or a single image, which
    loads no judge), in the dtype the judge will load in."""
    from .engine.judges import is_self, judge_shape_for
    if method == "single" or is_self(getattr(args, "judge", None)):
        return None
    from pathlib import Path

    from .engine.backend import resolve_device, resolve_dtype
    from .engine.models import check_model_folder, resolve_model
    folder = resolve_model(args.model)
    if Path(args.judge).expanduser().resolve() == Path(folder).expanduser().resolve():
        return None                     # the generator's own folder judges with the loaded model (`load_judge`)
    cfg = check_model_folder(folder)
    vision = cfg.get("vision_config") if isinstance(cfg.get("vision_config"), dict) else {}
    size = vision.get("image_size", 384) if isinstance(vision.get("image_size", 384), int) else 384
    return judge_shape_for(args.judge, resolve_dtype(args.dtype, resolve_device(args.device)), image_size=size)


def _precheck_prompt(name: str, language: str | None, text: str) -> str:
    """The model's prompt language applied to `text` before the model loads; the normalised prompt."""
    from .engine.errors import PromptNotUnderstood
    from .engine.prompt_language import check_prompt
    try:
        return check_prompt(language, text)
    except PromptNotUnderstood as e:
        raise PromptNotUnderstood(f"{name} cannot read this prompt: {e}") from None


def _load(args: argparse.Namespace):
    from .engine.backend import JanusBackend
    from .engine.models import resolve_model
    return JanusBackend.load(resolve_model(args.model), device=args.device, dtype=args.dtype)


def _roles(backend, args: argparse.Namespace):
    """The verifier, scorer and reformulator of --judge (default: the generator's own understanding path); the
    verifier's calibration note, where the roles have one and GridAR prunes with it, goes to stderr once."""
    from .engine.judges import load_judge
    roles = load_judge(getattr(args, "judge", None), backend, device=args.device, dtype=args.dtype)
    note = getattr(roles, "calibration_note", None)
    if note and getattr(args, "method", "gridar") == "gridar" and getattr(args, "threshold", None) is None:
        print(f"gridar {args.command}: note: {note}", file=sys.stderr)
    return roles


def _cmd_generate(args: argparse.Namespace) -> int:
    name, language = _model_language(args)                  # before importing torch: bad input exits at once
    prompt = _precheck_prompt(name, language, args.prompt)
    import time
    from dataclasses import replace

    from PIL import Image

    from .engine.search import Search, SearchRequest
    n = 1 if args.method == "single" else args.n
    settings = _settings(args)
    req = SearchRequest(prompt=prompt, method=args.method, n=n, seed=args.seed, params=_params(settings),
                        strategy=args.strategy, threshold=settings["threshold"], verify_by=args.verify_by,
                        reformulate=args.reformulate, refill=args.refill)
    req.validate()
    _check_memory_before_load(args, req, prompt)
    t0 = time.perf_counter()
    backend = _load(args)
    load_s = time.perf_counter() - t0
    req = replace(req, prompt=backend.check_prompt(prompt))       # the tokenizer and the context length
    res = Search(backend, _roles(backend, args) if args.method != "single" else None, req).run()
    meta = res.metadata()
    meta["settings"].update(model=args.model, device=str(backend.device), **_judge_setting(args))
    _save("generate", Image.fromarray(res.images[res.best]), args.output, req.prompt, meta)
    if args.json:
        # the precision read off the loaded weights: "auto" on a CPU may have chosen a bf16 language model
        print(json.dumps({"output": args.output, "prompt": req.prompt, **meta["settings"], "chosen": res.best,
                          "scores": res.scores, "precision": backend.precision.words(),
                          "load_seconds": round(load_s, 3), "cost": res.cost.to_json()}))
    else:
        print(args.output)
    return 0


def _batch_that_fits(backend, roles, prompts: list[dict], methods, batch: int) -> int:
    """The bench's batch, lowered (and said) where the memory plan says that many jobs do not fit together."""
    from dataclasses import replace

    from .engine.memory_plan import largest_batch
    if not prompts:
        return batch
    longest = max(prompts, key=lambda r: len(r["prompt"]))["prompt"]
    fits = min(largest_batch(backend, roles, replace(req, prompt=longest), batch) for _, req in methods)
    if fits < batch:
        print(f"gridar bench: --batch {batch} does not fit the free memory; running {fits} prompt(s) at a time",
              file=sys.stderr)
    return fits


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import PartialResults, bench_fingerprint, parse_methods, read_bench_prompts
    methods = parse_methods(args.methods)
    for label, req in methods:
        if req.n < 1 or req.n > MAX_N or (req.method == "gridar" and req.n % GRIDAR_GROUP):
            raise UsageError(f"gridar bench: argument --methods: '{label}': N must be 1..{MAX_N}"
                             + (f" and a multiple of {GRIDAR_GROUP} for gridar" if req.method == "gridar" else ""))
    name, language = _model_language(args)
    precheck = lambda text: _precheck_prompt(name, language, text)  # noqa: E731
    read_bench_prompts(args.prompts, precheck)                     # every line, no weights
    from dataclasses import replace
    own = _params(_settings(argparse.Namespace(model=args.model, cfg=None, temperature=None)))
    methods = [(label, replace(req, params=own)) for label, req in methods]   # the model's guidance, as generate
    from contextlib import ExitStack

    from .bench import run_bench
    from .io.atomic import atomic_write_text
    partial_path = f"{args.out}.partial.jsonl"
    progress = lambda m: print(m, file=sys.stderr)  # noqa: E731
    partial = None
    with ExitStack() as stack:
        try:
            if args.cluster:
                # the workers check each prompt's length against the model when they run it
                cluster = stack.enter_context(_cluster(args))
                prompts = read_bench_prompts(args.prompts, precheck)[:args.limit or None]
                backend = roles = None
                device, execute = cluster.device, cluster.bench_units
            else:
                backend = _load(args)
                prompts = read_bench_prompts(args.prompts, backend.check_prompt)[:args.limit or None]
                roles, device, execute = _roles(backend, args), str(backend.device), None
                args.batch = _batch_that_fits(backend, roles, prompts, methods, args.batch)
            fingerprint = bench_fingerprint(prompts, methods, args.seeds, args.batch, model=args.model,
                                            device=device, dtype=args.dtype,
                                            **_judge_setting(args))
            partial = PartialResults(partial_path, fingerprint, progress)
            report = run_bench(backend, roles, prompts, methods, args.seeds, progress=progress, batch=args.batch,
                               partial=partial, execute=execute)
        except KeyboardInterrupt:
            kept = len(partial.units) if partial is not None else 0
            print(f"gridar bench: interrupted; {kept} finished unit(s) kept in {partial_path}: run the "
                  "same command again to resume", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 - said in one line, with where the finished work is
            from .engine.errors import EngineError, out_of_memory
            reason = out_of_memory(e) or e
            if not isinstance(reason, (EngineError, ValueError, OSError)) or partial is None:
                raise
            raise EngineError(f"{reason} ({len(partial.units)} finished unit(s) kept in {partial_path}: the same "
                              "command resumes)") from None
    report.update(model=args.model, prompts_file=args.prompts, **_judge_setting(args))
    atomic_write_text(args.out, json.dumps(report, indent=1))
    partial.discard()
    print(args.out)
    return 0


def _cluster(args: argparse.Namespace):
    """The Ray workers for --cluster (Ray is imported here and nowhere else); what happens to them is said on
    stderr."""
    from .cluster import Cluster

    def observe(event: str, info: dict) -> None:
        if event == "lost":
            w = info["worker"]
            who = f"worker {w['pid']} on {w['host']}" if w else "a worker"
            print(f"gridar {args.command}: {who} was lost ({info['reason']}); its unit goes to another worker "
                  f"(try {info['try'] + 1} of {info['of']})", file=sys.stderr)
    print(f"gridar {args.command}: starting workers on the Ray cluster ({args.cluster}) ...", file=sys.stderr)
    c = Cluster(args.cluster, args.model, args.device, args.dtype, workers=args.workers, retries=args.retries,
                observe=observe)
    print(f"gridar {args.command}: {len(c.workers())} worker(s) on {c.device}, "
          f"{len({w['host'] for w in c.workers()})} machine(s)", file=sys.stderr)
    return c


def _cmd_batch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench import read_prompt_file
    name, language = _model_language(args)
    rows = read_prompt_file(args.prompts, lambda text: _precheck_prompt(name, language, text))  # no weights
    from .batch import (BatchFolder, BatchSummary, Progress, UnitRunner, expected_settings, plan_jobs, plan_units,
                        run_batch, run_local)
    from .engine.search import SearchRequest
    n = 1 if args.method == "single" else args.n
    settings = _settings(args)
    template = SearchRequest(prompt="", method=args.method, n=n, params=_params(settings), strategy=args.strategy,
                             threshold=settings["threshold"], verify_by=args.verify_by, reformulate=args.reformulate,
                             refill=args.refill)
    template.validate()
    jobs, notes = plan_jobs(rows, args.seeds)
    for note in notes:
        print(f"gridar batch: {args.prompts}: {note}", file=sys.stderr)
    folder = Path(args.out).expanduser()
    folder.mkdir(exist_ok=True)
    out = BatchFolder(folder, jobs, expected_settings(template, args.model, args.judge), str(args.prompts))
    pending = out.pending()
    if not pending:
        out.close()
        print(f"gridar batch: all {len(jobs)} images are already in {folder}", file=sys.stderr)
        print(folder)
        return 0
    if out.complete:
        print(f"gridar batch: {len(out.complete)} of {len(jobs)} images are already in {folder}; rendering the "
              f"other {len(pending)}", file=sys.stderr)
    stale = sum((folder / j.file_name).exists() for j in pending)
    if stale:
        print(f"gridar batch: {stale} image(s) in {folder} under these names were made with other settings or are "
              "damaged: they are drawn again and replaced", file=sys.stderr)
    units = plan_units(jobs, template, args.batch, set(pending))
    summary = BatchSummary(len(jobs), len(out.complete), [], [])
    progress = Progress(len(jobs), len(out.complete))

    def failed(job, message: str) -> None:
        line = f"gridar batch: {args.prompts}:{job.line} (seed {job.seed}): {message}"
        if progress.bar is not None:
            progress.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)
    try:
        if args.cluster:
            with _cluster(args) as cluster:
                run_batch(out, cluster.render_units(units), progress, failed, summary)
        else:
            run_batch(out, run_local(UnitRunner(args.model, args.device, args.dtype, judge=args.judge), units),
                      progress, failed, summary)
    except KeyboardInterrupt:
        progress.close()
        print(f"gridar batch: interrupted; {len(out.complete)} of {len(jobs)} images are in {folder}: run the same "
              "command again to render the rest", file=sys.stderr)
        return 130
    finally:
        progress.close()
        out.close()
    if summary.failed:
        lines = ", ".join(str(j.line) for j in sorted({j for j, _ in summary.failed}, key=lambda j: j.line))
        print(f"gridar batch: {len(summary.failed)} of {len(jobs)} images failed (line {lines}, said above); the "
              f"other {len(out.complete)} are in {folder}; run the same command again to retry the failed ones",
              file=sys.stderr)
        return 2
    print(folder)
    return 0


def _cmd_edit(args: argparse.Namespace) -> int:
    from .engine.errors import PromptNotUnderstood
    name, language = _model_language(args)
    if args.target_prompt is not None:
        target_prompt = _precheck_prompt(name, language, args.target_prompt)
        instruction = args.instruction
    else:
        target_prompt = None
        try:
            instruction = _precheck_prompt(name, language, args.instruction)
        except PromptNotUnderstood as e:
            if language is None:
                raise
            raise PromptNotUnderstood(
                f"{e}. {name} cannot follow free instructions: describe the edited scene with --target-prompt, e.g. "
                "--target-prompt \"a blue circle and a red square\"") from None
    from dataclasses import replace

    from PIL import Image

    from .engine.edit import edit_prompt, prepare_edit
    from .engine.search import Search, SearchRequest
    from .io.png import check_image, load_image
    check_image(args.image), check_image(args.mask)        # a bomb or a FIFO is refused before the model loads
    n = 1 if args.method == "single" else args.n
    settings = _settings(args)
    req = SearchRequest(prompt="", method=args.method, n=n, seed=args.seed, params=_params(settings),
                        strategy=args.strategy, threshold=settings["threshold"], context=args.context,
                        verify_by=args.verify_by, reformulate=args.reformulate, refill=args.refill)
    req.validate()
    _check_memory_before_load(args, req, target_prompt or instruction, edit=True)
    backend = _load(args)
    # a huge photo is decoded scaled down (bounded memory); up to this side the edit's notes name the real sizes
    side = max(EDIT_MAX_SIDE, backend.info.image_size)
    image, mask = load_image(args.image, max_side=side), load_image(args.mask, "L", max_side=side)
    prompt = backend.check_prompt(edit_prompt(backend, instruction, target_prompt), edit=True)
    target = prepare_edit(backend, image, mask, fit=args.fit, feather=args.feather)
    for note in target.notes:
        print(f"gridar edit: {note}", file=sys.stderr)
    req = replace(req, prompt=prompt, edit=target)
    res = Search(backend, _roles(backend, args) if args.method != "single" else None, req).run()
    meta = res.metadata()
    meta["settings"].update(model=args.model, device=str(backend.device), **_judge_setting(args))
    meta["settings"]["edit"].update(instruction=args.instruction, target_prompt=args.target_prompt,
                                    image=str(args.image), mask=str(args.mask), fit=args.fit)
    _save("edit", Image.fromarray(res.images[res.best]), args.output, prompt, meta)
    if args.json:
        print(json.dumps({"output": args.output, "prompt": prompt, "method": args.method, "n": n, "seed": args.seed,
                          "redrawn_tokens": target.redrawn_tokens, "notes": list(target.notes),
                          "chosen": res.best, "scores": res.scores, "cost": res.cost.to_json()}))
    else:
        print(args.output)
    return 0


def _cmd_import_model(args: argparse.Namespace) -> int:
    from .engine.importer import STAGES, import_model
    shown: dict[str, int] = {}
    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()

    def progress(stage: str, done: int, total: int) -> None:
        # a live percentage on a terminal only: a log or a pipe gets no progress lines
        pct = 100 * done // total if total else 100
        if tty and shown.get(stage) != pct:
            shown[stage] = pct
            print(f"\r\033[Kgridar import-model: {STAGES.get(stage, stage)} {pct}%", end="", file=sys.stderr,
                  flush=True)
    try:
        out = import_model(args.src, args.dst, progress=progress, verify=not args.no_verify)
    finally:
        if tty and shown:
            print(file=sys.stderr)
    print(out)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    # training code is imported only here: the engine and the other commands never load it
    from .engine.models import resolve_model
    from .training.calibrate import main as calibrate_main
    argv = [str(resolve_model(args.model)), "--samples", str(args.samples), "--views", str(args.views),
            "--reject", str(args.reject), "--seed", str(args.seed), "--device", args.device, "--dtype", args.dtype]
    if args.prompts:
        argv += ["--prompts", args.prompts]
    if args.write:
        argv.append("--write")
    return calibrate_main(argv, prog="gridar calibrate")


DTYPE_HELP = ("auto (bf16 on a GPU; on a CPU fp32, or a bf16 language model with a float32 image decoder for a "
              "large model on a CPU with fast bf16), float32, bfloat16 or float16 (also fp32, bf16, fp16)")
def _dtype_name(text: str) -> str:
    """--dtype, checked at the parser (before any load) against the backend's choices."""
    from .engine.defaults import DTYPE_CHOICES, dtype_choice
    name = dtype_choice(text)
    if name is None:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(c for c, _ in DTYPE_CHOICES)}, got {text!r}")
    return name


CFG_HELP = ("guidance scale, Janus convention, 0 to 100 (default: the model's own, from its gridar.json or its "
            "format: 2 for the demo model, 5 for Janus-Pro)")
TEMPERATURE_HELP = "above 0 (default: the model's own, 1 unless its gridar.json says otherwise)"
THRESHOLD_HELP = ("GridAR rejects a partial candidate when P(possible) is below this, at every band (default: the "
                  "thresholds calibrated for the verifier's model, one per band, for edits one of their own; else "
                  "0.25; with --verify-by rollout, 0.5 on the scorer's P)")
REFILL_HELP = ("what replaces a candidate GridAR rejects: 'copy' (a copy of a survivor of its group goes on, the "
               "paper's rule) or 'redraw' (the slot draws its bands again from the prompt)")
REFORMULATE_HELP = "GridAR rewrites each candidate's prompt from what is drawn (--no-reformulate keeps it as typed)"
VERIFY_BY_HELP = ("what GridAR's verdicts read: 'view' (the verifier reads the partial candidate) or 'rollout' (each "
                  "candidate is completed once and the scorer reads the finished image; slower: the rest of every "
                  "candidate is decoded at each verified band)")


def _cluster_address(text: str) -> str:
    """An argparse `type=` for --cluster: 'auto' or a Ray address (HOST:PORT or ray://HOST:PORT)."""
    if text != "auto" and not re.fullmatch(r"(ray://)?[A-Za-z0-9._\-\[\]:]+:\d{1,5}", text):
        raise argparse.ArgumentTypeError(f"must be 'auto' or the address `ray start --head` printed, e.g. "
                                         f"10.0.0.5:6379, got {text!r}")
    return text


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", type=_cluster_address, default=None, metavar="auto|ADDRESS",
                   help="run on a Ray cluster: one worker per GPU (or per CPU on a cluster without GPUs), each "
                        "loading the model once; 'auto' joins the cluster this machine is part of, or starts one "
                        "on this machine alone (needs the cluster extra)")
    p.add_argument("--workers", type=_number(int, 1, 4096), default=None,
                   help="with --cluster: at most this many workers (default: one per GPU, else one per CPU)")
    p.add_argument("--retries", type=_number(int, 0, 100), default=2,
                   help="with --cluster: how often a unit whose worker died is given to another worker "
                        "(default 2)")


JUDGE_HELP = ("who verifies, scores and reformulates: 'self' (the generator's own understanding path, the default) "
              "or a local image-text-to-text model folder (Qwen2.5-VL class), loaded beside the generator")


def _judge_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", default="self", metavar="self|FOLDER", help=JUDGE_HELP)


def _is_self(spec) -> bool:
    from .engine.judges import is_self
    return is_self(spec)


def _judge_setting(args: argparse.Namespace) -> dict:
    from .engine.judges import judge_setting
    return judge_setting(getattr(args, "judge", None))


def _check_judge(args: argparse.Namespace) -> None:
    """--judge FOLDER, right after parsing: the folder's small files (no weights); --cluster workers judge with
    the generator's own path, so a folder there is refused."""
    if _is_self(getattr(args, "judge", None)):
        return
    if getattr(args, "cluster", None) is not None:
        raise UsageError(f"gridar {args.command}: argument --judge: a separate judge does not run on --cluster "
                         "workers yet; drop --cluster, or judge with 'self'")
    from .engine.errors import ModelLoadError
    from .engine.judges import judge_folder
    try:
        judge_folder(args.judge)
    except ModelLoadError as e:
        raise UsageError(f"gridar {args.command}: argument --judge: {e}") from None


def _check_cluster(args: argparse.Namespace) -> None:
    """--cluster needs Ray; found without importing it (nothing imports Ray unless --cluster is given)."""
    if getattr(args, "cluster", None) is None:
        if getattr(args, "workers", None) is not None:
            raise UsageError(f"gridar {args.command}: argument --workers: only with --cluster")
        return
    import importlib.util
    if importlib.util.find_spec("ray") is None:
        raise UsageError(f"gridar {args.command}: argument --cluster: Ray is not installed; install the cluster "
                         "extra: pip install 'gridar-desktop[cluster]' (or make install EXTRAS=cluster)")


def _check_out_folder(args: argparse.Namespace) -> None:
    """batch --out is a folder: it may be new (its parent must exist) or a folder; results.jsonl in it must be a
    file we may replace."""
    from pathlib import Path

    from .io.atomic import check_output_path
    folder = Path(args.out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"gridar batch: argument --out: '{folder}' is not a folder; give a folder for the images")
    if not folder.exists() and not folder.parent.is_dir():
        raise UsageError(f"gridar batch: argument --out: the folder '{folder.parent}' does not exist; create it "
                         "or choose another path")
    try:
        check_output_path(folder / "results.jsonl")
    except OSError as e:
        raise UsageError(f"gridar batch: argument --out: {e}") from None


def _add_generation_options(p: argparse.ArgumentParser) -> None:
    """Sampling and GridAR options that `generate` and `batch` share (a generation's defaults)."""
    p.add_argument("--cfg", type=CFG, default=None, help=CFG_HELP)
    p.add_argument("--temperature", type=TEMPERATURE, default=None, help=TEMPERATURE_HELP)
    p.add_argument("--top-k", type=TOP_K, default=None, help="keep the k likeliest tokens; 0: off (default)")
    p.add_argument("--top-p", type=TOP_P, default=None, help="nucleus sampling, in (0, 1]; 1: off (default)")
    p.add_argument("--threshold", type=THRESHOLD, default=None, help=THRESHOLD_HELP)
    p.add_argument("--verify-by", default=GRIDAR_DEFAULTS["generate"]["verify_by"], choices=VERIFY_BY,
                   help=VERIFY_BY_HELP + " (default: %(default)s)")
    p.add_argument("--reformulate", action=argparse.BooleanOptionalAction,
                   default=GRIDAR_DEFAULTS["generate"]["reformulate"], help=REFORMULATE_HELP)
    p.add_argument("--refill", default=GRIDAR_DEFAULTS["generate"]["refill"], choices=REFILL,
                   help=REFILL_HELP + " (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="gridar", description="GridAR Desktop on the command line: render and judge "
                                 "shapes-world scenes, generate images with GridAR, render prompt lists, benchmark "
                                 "methods.")
    ap.add_argument("--version", action="version", version=f"gridar {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("scene", help="render a ground-truth scene for a prompt of the shapes grammar")
    p.add_argument("prompt", type=_text, help='e.g. "a red circle above a blue square"')
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--size", type=_number(int, *SCENE_SIZES), default=64,
                   help=f"image side in pixels, {SCENE_SIZES[0]} to {SCENE_SIZES[1]} (default 64)")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.set_defaults(func=_cmd_scene)

    p = sub.add_parser("judge", help="score an image against a prompt; prints one JSON object")
    p.add_argument("image")
    p.add_argument("prompt", type=_text)
    p.set_defaults(func=_cmd_judge)

    p = sub.add_parser("generate", help="generate an image for a prompt with a local Janus-family model")
    p.add_argument("prompt", type=_text, help="what the image should show (the demo model reads the shapes grammar; "
                   "a prompt longer than the model's context is refused)")
    p.add_argument("--model", default="demo", help="'demo' (the bundled shapes model) or a local model folder")
    p.add_argument("--method", default="single", choices=["single", "best-of-n", "gridar"],
                   help="single: one sample; best-of-n: N samples, the scorer picks; gridar: the search")
    p.add_argument("-n", type=CANDIDATES, default=4,
                   help=f"candidates for best-of-n and gridar, 1 to {MAX_N} (gridar: a multiple of {GRIDAR_GROUP})")
    p.add_argument("--strategy", default="three-way", choices=["three-way", "replace"],
                   help="how GridAR uses a reformulated prompt")
    p.add_argument("--seed", type=SEED, default=0)
    _add_generation_options(p)
    _judge_option(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", type=_dtype_name, metavar="DTYPE", help=DTYPE_HELP)
    p.add_argument("-o", "--output", default="out.png")
    p.add_argument("--json", action="store_true", help="print a JSON summary with the cost record")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("edit", help="redraw the masked part of an image (white mask pixels) to follow a prompt")
    p.add_argument("image", help="the image to edit (any common format and size)")
    p.add_argument("mask", help="an image whose white pixels mark what to redraw (resampled if its size differs)")
    p.add_argument("instruction", type=_text,
                   help="what should change; with the demo model, the edited scene in its grammar")
    p.add_argument("--target-prompt", type=_text, default=None,
                   help="the whole edited scene (what the image should show)")
    p.add_argument("--model", default="demo")
    p.add_argument("--method", default="gridar", choices=["single", "best-of-n", "gridar"])
    p.add_argument("-n", type=CANDIDATES, default=4,
                   help=f"candidates, 1 to {MAX_N} (gridar: a multiple of {GRIDAR_GROUP})")
    p.add_argument("--strategy", default="replace", choices=["three-way", "replace"],
                   help="how GridAR uses a reformulated prompt (edits: prompt replacement, as the paper)")
    p.add_argument("--fit", default="resize", choices=["resize", "crop"],
                   help="how an image of another size is brought to the model's resolution")
    p.add_argument("--feather", type=_number(float, 0, 1000), default=2.0,
                   help="seam width in pixels, inside the mask (0 to 1000)")
    p.add_argument("--context", default="mixed", choices=["mixed", "source", "cleared"],
                   help="what the kept tokens around the mask show the model: the source as it is (suits a new "
                        "colour or shape), the source with the mask cleared (suits removing), or mixed: every other "
                        "candidate cleared, the verifier and the scorer choose (default)")
    p.add_argument("--threshold", type=THRESHOLD, default=None, help=THRESHOLD_HELP)
    p.add_argument("--verify-by", default=GRIDAR_DEFAULTS["edit"]["verify_by"], choices=VERIFY_BY,
                   help=VERIFY_BY_HELP + " (default for edits: %(default)s, the one GridAR setting measured above "
                        "Best-of-N 4 on the edit benchmark)")
    p.add_argument("--reformulate", action=argparse.BooleanOptionalAction,
                   default=GRIDAR_DEFAULTS["edit"]["reformulate"],
                   help=REFORMULATE_HELP + " (edits: by prompt replacement)")
    p.add_argument("--refill", default=GRIDAR_DEFAULTS["edit"]["refill"], choices=REFILL,
                   help=REFILL_HELP + "; an edit whose verifier is a value head redraws a candidate whose P(ends "
                                      "right) is below the chance a fresh draw ends right (default for edits: "
                                      "%(default)s)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--cfg", type=CFG, default=None, help=CFG_HELP)
    p.add_argument("--temperature", type=TEMPERATURE, default=None, help=TEMPERATURE_HELP)
    _judge_option(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", type=_dtype_name, metavar="DTYPE", help=DTYPE_HELP)
    p.add_argument("-o", "--output", default="edit.png")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_edit)

    p = sub.add_parser("bench", help="compare methods on a prompt file over seeds; writes a JSON report")
    p.add_argument("--prompts", required=True, help='JSONL, one {"prompt": ..., "category": ...} per line')
    p.add_argument("--methods", default="single:1,best-of-n:8,gridar:4",
                   help="comma-separated METHOD:N; gridar variants: gridar-noprune, gridar-noreform, "
                        "gridar-replace, gridar-oneverify, gridar-reformonce, gridar-scorerpick, gridar-rollout, "
                        "gridar-redraw; variants combine, e.g. gridar-rollout-redraw")
    p.add_argument("--seeds", type=_seeds, default=[0, 1], help="comma-separated seeds (default 0,1)")
    p.add_argument("--model", default="demo")
    _judge_option(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", type=_dtype_name, metavar="DTYPE", help=DTYPE_HELP)
    p.add_argument("--limit", type=_number(int, 0), default=0, help="use only the first N prompts (0: all)")
    p.add_argument("--batch", type=_number(int, 1, MAX_BATCH), default=16,
                   help=f"prompts run together in one batched search, 1 to {MAX_BATCH} (results do not depend on it "
                        "beyond float rounding)")
    p.add_argument("--out", required=True, help="the JSON report; finished work is kept in OUT.partial.jsonl "
                   "meanwhile, and the same command resumes an interrupted bench from it")
    _cluster_options(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("batch", help="render every prompt of a file for every seed into a folder (resumable)")
    p.add_argument("prompts", help='JSONL, one {"prompt": ...} per line (a "category" is kept in results.jsonl)')
    p.add_argument("--out", required=True, help="the folder for the images and results.jsonl (created if missing); "
                   "the same command again renders only what is not there yet")
    p.add_argument("--model", default="demo", help="'demo' (the bundled shapes model) or a local model folder")
    p.add_argument("--method", default="gridar", choices=["single", "best-of-n", "gridar"],
                   help="single: one sample; best-of-n: N samples, the scorer picks; gridar: the search "
                        "(default: %(default)s)")
    p.add_argument("-n", type=CANDIDATES, default=4,
                   help=f"candidates for best-of-n and gridar, 1 to {MAX_N} (gridar: a multiple of {GRIDAR_GROUP})")
    p.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated seeds, one image per prompt and seed "
                   "(default 0); `gridar generate PROMPT --seed S` draws the same image")
    p.add_argument("--strategy", default="three-way", choices=["three-way", "replace"],
                   help="how GridAR uses a reformulated prompt")
    _add_generation_options(p)
    p.add_argument("--batch", type=_number(int, 1, MAX_BATCH), default=16,
                   help=f"prompts run together in one batched search, 1 to {MAX_BATCH} (default 16)")
    _judge_option(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (with --cluster: on each worker)")
    p.add_argument("--dtype", default="auto", type=_dtype_name, metavar="DTYPE", help=DTYPE_HELP)
    _cluster_options(p)
    p.set_defaults(func=_cmd_batch)

    p = sub.add_parser("import-model", help="convert an official Janus / Janus-Pro folder (deepseek-ai, original "
                                            "layout) into a folder GridAR loads")
    p.add_argument("src", help="the downloaded folder (config.json of model_type multi_modality, the weights, the "
                               "tokenizer files)")
    p.add_argument("dst", help="a new (or empty) folder for the imported model")
    p.add_argument("--no-verify", action="store_true", help="skip the final check (re-reading every file and loading "
                   "the model; a 7B model needs about 15 GB of memory for it)")
    p.set_defaults(func=_cmd_import_model)

    p = sub.add_parser("calibrate", help="measure a model's pruning threshold on its own images of a prompt set "
                                         "and store it in the folder's gridar.json")
    p.add_argument("model", help="a Janus-format model folder ('demo' for the bundled one)")
    p.add_argument("--prompts", help='JSONL, one {"prompt": ...} per line (gridar prompts writes one); without it '
                                     "the demo format calibrates on held-out shapes-world views")
    p.add_argument("--samples", type=_number(int, 1, 64), default=4, help="images per prompt (default 4)")
    p.add_argument("--views", type=_number(int, 10, 100_000), default=1600,
                   help="shapes-world views without --prompts (default 1600)")
    p.add_argument("--reject", type=_number(float, 0.001, 0.999), default=0.10,
                   help="the share of feasible views the threshold may reject (default 0.10)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", type=_dtype_name, metavar="DTYPE", help=DTYPE_HELP)
    p.add_argument("--write", action="store_true", help="store the threshold in the folder's gridar.json (other "
                                                        "fields are kept; the file is replaced atomically)")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("prompts", help="write a seeded benchmark prompt set (JSONL) by category")
    p.add_argument("-n", type=_number(int, 1, MAX_PROMPT_SET), default=300,
                   help=f"number of prompts, 1 to {MAX_PROMPT_SET:,} (default 300)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--categories", default="", help="comma-separated subset of single,counting,pair,relation,triple")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=_cmd_prompts)
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None):
            if getattr(args, "method", None) and hasattr(args, "n"):
                _check_candidates(args)
            if args.command == "batch":
                _check_out_folder(args)
            else:
                _check_output(args)
            _check_cluster(args)
            _check_judge(args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    setup_logging()
    from .engine.errors import EngineError, out_of_memory
    from .io.png import ImageFileError
    from .shapes.grammar import PromptError
    from .shapes.scene import SceneError
    try:
        return args.func(args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except (PromptError, ImageFileError, SceneError, EngineError, ValueError, OSError) as e:
        print(f"gridar {args.command}: {_one_line(e)}", file=sys.stderr)
        return 2
    except (RuntimeError, MemoryError) as e:
        oom = out_of_memory(e)
        if oom is None:
            raise
        print(f"gridar {args.command}: {oom}", file=sys.stderr)
        return 2


def _one_line(e: BaseException) -> str:
    """A message as one line: a library's multi-line text (an OS error, a decoder) must not break the CLI's rule."""
    return " ".join(str(e).split()) or e.__class__.__name__


if __name__ == "__main__":
    raise SystemExit(main())
