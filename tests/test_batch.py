"""`gridar batch` in one process (no Ray): every (prompt, seed) rendered with its metadata, results.jsonl, resuming
by file and metadata, a failing job reported with its line while the rest go on, Ctrl+C, progress, bad input."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gridar_desktop.cli import main as cli_main
from gridar_desktop.io.png import read_metadata

PROMPTS = [("a red circle", "single"), ("two blue squares", "counting"), ("a green triangle", "single")]
ARGS = ["--model", "demo", "--method", "best-of-n", "-n", "2", "--seeds", "0,1", "--batch", "2", "--device", "cpu"]


def write_prompts(path: Path, prompts=PROMPTS) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "category": c}) + "\n" for p, c in prompts))
    return path


def results(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def count_searches(monkeypatch) -> list[list[str]]:
    """The prompts of every batched search run from now on."""
    from gridar_desktop.engine import search
    real, calls = search.Search.run_all, []

    def spy(self):
        calls.append([r.prompt for r in self.jobs])
        return real(self)
    monkeypatch.setattr(search.Search, "run_all", spy)
    return calls


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One uninterrupted batch: 3 prompts x 2 seeds."""
    d = tmp_path_factory.mktemp("batch")
    prompts = write_prompts(d / "p.jsonl")
    assert cli_main(["batch", str(prompts), "--out", str(d / "out"), *ARGS]) == 0
    return prompts, d / "out"


def test_batch_renders_every_prompt_and_seed_with_metadata(rendered, tmp_path):
    prompts, out = rendered
    lines = results(out)
    assert len(lines) == 6
    assert {(x["prompt"], x["seed"]) for x in lines} == {(p, s) for p, _ in PROMPTS for s in (0, 1)}
    for x in lines:
        meta = read_metadata(out / x["file"])
        assert meta["prompt"] == x["prompt"] and meta["settings"]["seed"] == x["seed"]
        assert meta["settings"]["method"] == "best-of-n" and meta["settings"]["n"] == 2
        assert x["line"] == [p for p, _ in PROMPTS].index(x["prompt"]) + 1
        assert x["category"] == dict(PROMPTS)[x["prompt"]] and x["score"] == meta["scores"][meta["chosen"]]
    # the seed is the image's seed: gridar generate draws the same image
    one = next(x for x in lines if x["prompt"] == "two blue squares" and x["seed"] == 1)
    alone = tmp_path / "alone.png"
    assert cli_main(["generate", "two blue squares", "--model", "demo", "--method", "best-of-n", "-n", "2",
                     "--seed", "1", "--device", "cpu", "-o", str(alone)]) == 0
    assert read_metadata(alone)["tokens"] == read_metadata(out / one["file"])["tokens"]


def test_a_rerun_skips_what_is_complete_checked_by_file_and_metadata(rendered, tmp_path, monkeypatch, capsys):
    prompts, first = rendered
    out = tmp_path / "out"
    import shutil
    shutil.copytree(first, out)
    lines = {(x["prompt"], x["seed"]): x for x in results(first)}
    calls = count_searches(monkeypatch)
    assert cli_main(["batch", str(prompts), "--out", str(out), *ARGS]) == 0
    assert calls == [] and "all 6 images are already" in capsys.readouterr().err

    # an image under the right name but with another prompt's metadata, a damaged one, a missing one, a lost line
    a, b = lines[("a red circle", 0)]["file"], lines[("two blue squares", 0)]["file"]
    c, d = lines[("a green triangle", 1)]["file"], lines[("two blue squares", 1)]["file"]
    shutil.copy(out / a, out / b)
    data = (out / c).read_bytes()
    (out / c).write_bytes(data[:len(data) // 2])
    (out / d).unlink()
    kept = [x for x in (out / "results.jsonl").read_text().splitlines() if a not in x]
    (out / "results.jsonl").write_text("\n".join(kept) + '\n{"file": "torn')      # a line cut by a crash
    assert cli_main(["batch", str(prompts), "--out", str(out), *ARGS]) == 0
    redone = sorted(p for batch in calls for p in batch)
    assert redone == ["a green triangle", "two blue squares", "two blue squares"]
    now = results(out)
    assert len(now) == 6 and len({x["file"] for x in now}) == 6          # every image once, the lost line back
    for x in now:
        assert np.array_equal(pixels(out / x["file"]), pixels(first / x["file"]))
        assert read_metadata(out / x["file"])["prompt"] == x["prompt"]


def test_interrupt_keeps_what_finished_and_the_rerun_does_only_the_rest(rendered, tmp_path, monkeypatch, capsys):
    prompts, full = rendered
    out = tmp_path / "out"
    from gridar_desktop.engine import search
    real, calls = search.Search.run_all, []

    def interrupted(self):
        calls.append([r.prompt for r in self.jobs])
        if len(calls) == 4:                 # units: [1, 2] and [3] for seed 0, then for seed 1
            raise KeyboardInterrupt
        return real(self)
    monkeypatch.setattr(search.Search, "run_all", interrupted)
    assert cli_main(["batch", str(prompts), "--out", str(out), *ARGS]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "interrupted; 5 of 6 images are in" in err and "Traceback" not in err
    before = {x["file"]: (out / x["file"]).stat().st_mtime_ns for x in results(out)}
    assert len(before) == 5

    calls.clear()
    assert cli_main(["batch", str(prompts), "--out", str(out), *ARGS]) == 0
    assert calls == [["a green triangle"]]             # only the unit that did not finish (seed 1, third prompt)
    assert {x["file"]: (out / x["file"]).stat().st_mtime_ns for x in results(out) if x["file"] in before} == before
    assert sorted(x["file"] for x in results(out)) == sorted(x["file"] for x in results(full))
    for x in results(full):
        assert np.array_equal(pixels(out / x["file"]), pixels(full / x["file"]))


def test_a_job_that_fails_is_reported_with_its_line_and_the_rest_go_on(tmp_path, monkeypatch, capsys):
    """A prompt the model refuses when it runs fails its own job; a search that fails (here out of memory on the
    batch holding one prompt) is split so that only that prompt's job fails."""
    from gridar_desktop.engine import search
    from gridar_desktop.engine.backend import JanusBackend
    from gridar_desktop.engine.errors import PromptNotUnderstood
    prompts = write_prompts(tmp_path / "p.jsonl", PROMPTS + [("four red circles", "counting")])
    real_check, real_run = JanusBackend.check_prompt, search.Search.run_all

    def check(self, text, edit=False):
        if text == "a red circle":
            raise PromptNotUnderstood("the demo model cannot read this prompt: too long (injected)")
        return real_check(self, text, edit)

    def run_all(self):
        if any(r.prompt == "four red circles" for r in self.jobs):
            raise RuntimeError("DefaultCPUAllocator: not enough memory (out of memory)")
        return real_run(self)
    monkeypatch.setattr(JanusBackend, "check_prompt", check)
    monkeypatch.setattr(search.Search, "run_all", run_all)
    out = tmp_path / "out"
    assert cli_main(["batch", str(prompts), "--out", str(out), *ARGS[:6], "--seeds", "0", "--batch", "2",
                     "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{prompts}:1 (seed 0): the demo model cannot read this prompt" in err
    assert f"{prompts}:4 (seed 0): " in err and "out of memory" in err.lower()
    assert "2 of 4 images failed (line 1, 4" in err and "Traceback" not in err
    assert sorted(x["prompt"] for x in results(out)) == ["a green triangle", "two blue squares"]


def test_progress_is_json_lines_off_a_terminal_and_a_bar_on_one():
    from gridar_desktop.batch import Progress
    log = io.StringIO()
    p = Progress(3, done=1, stream=log)
    p.update()
    p.update(ok=False)
    p.close()
    rows = [json.loads(x)["progress"] for x in log.getvalue().splitlines()]
    assert [(r["done"], r["total"], r["failed"]) for r in rows] == [(2, 3, 0), (3, 3, 1)]
    assert all("images_per_minute" in r and "eta_seconds" in r for r in rows)

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    tty = Terminal()
    p = Progress(3, stream=tty)
    p.update()
    p.close()
    assert "images/min" in tty.getvalue() and "1/3" in tty.getvalue() and "{" not in tty.getvalue()


def test_batch_and_bench_without_cluster_never_import_ray(tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", PROMPTS[:1])
    code = ("import sys; from gridar_desktop.cli import main; "
            f"rc = main(['batch', {str(prompts)!r}, '--out', {str(tmp_path / 'out')!r}, '--method', 'single', "
            "'--device', 'cpu']); "
            f"rc2 = main(['bench', '--prompts', {str(prompts)!r}, '--methods', 'single:1', '--seeds', '0', "
            f"'--device', 'cpu', '--out', {str(tmp_path / 'r.json')!r}]); "
            "print(rc, rc2, 'ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.split()[-3:] == ["0", "0", "False"], r.stderr[-2000:]
    assert len(results(tmp_path / "out")) == 1 and (tmp_path / "r.json").exists()


@pytest.mark.parametrize("argv, said", [
    (["--out", "{tmp}/file.txt"], "is not a folder"),
    (["--out", "{tmp}/nowhere/out"], "does not exist"),
    (["--out", "{tmp}/out", "--cluster", "not an address"], "--cluster: must be 'auto' or the address"),
    (["--out", "{tmp}/out", "--workers", "2"], "--workers: only with --cluster"),
    (["--out", "{tmp}/out", "--method", "gridar", "-n", "6"], "multiple of 4"),
    (["--out", "{tmp}/out", "--seeds", "x"], "--seeds"),
], ids=["out-is-a-file", "out-parent-missing", "cluster-address", "workers-alone", "gridar-n", "seeds"])
def test_bad_arguments_are_one_line_and_touch_nothing(tmp_path, capsys, argv, said):
    prompts = write_prompts(tmp_path / "p.jsonl")
    (tmp_path / "file.txt").write_text("mine")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli_main(["batch", str(prompts), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0]
    assert not (tmp_path / "out").exists() and (tmp_path / "file.txt").read_text() == "mine"


def test_a_bad_prompt_line_is_refused_with_its_number_before_anything_runs(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a red circle"}\n\n{"prompt": "two red dragons"}\n')
    assert cli_main(["batch", str(prompts), "--out", str(tmp_path / "out"), "--method", "single"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{prompts}:3:" in err[0] and "dragons" in err[0]
    assert not (tmp_path / "out").exists()


def test_cluster_without_ray_installed_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    prompts = write_prompts(tmp_path / "p.jsonl")
    assert cli_main(["batch", str(prompts), "--out", str(tmp_path / "out"), "--cluster", "auto"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gridar-desktop[cluster]" in err[0]


def test_two_batches_into_one_folder_are_refused(tmp_path, capsys):
    from gridar_desktop.batch import BatchFolder
    prompts = write_prompts(tmp_path / "p.jsonl")
    (tmp_path / "out").mkdir()
    running = BatchFolder(tmp_path / "out", [], {}, str(prompts))
    try:
        assert cli_main(["batch", str(prompts), "--out", str(tmp_path / "out"), "--method", "single"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "another gridar batch is writing into" in err[0]
    finally:
        running.close()
    assert cli_main(["batch", str(prompts), "--out", str(tmp_path / "out"), "--method", "single", "--seeds", "0",
                     "--device", "cpu"]) == 0


def test_a_batch_judged_by_a_separate_model_records_it_and_a_rerun_without_it_draws_again(tmp_path, capsys):
    """--judge FOLDER: the folder's model scores every Best-of-N pick and each image's metadata names it; the same
    folder rendered again judged by the generator itself is not complete (the judge decided the pick)."""
    from test_vlm_roles import tiny_qwen_vl_folder
    judge = tiny_qwen_vl_folder(tmp_path / "qwen")
    prompts = write_prompts(tmp_path / "p.jsonl", PROMPTS[:1])
    args = [*ARGS[:6], "--seeds", "0", "--device", "cpu"]
    assert cli_main(["batch", str(prompts), "--out", str(tmp_path / "out"), *args, "--judge", str(judge)]) == 0
    (line,) = results(tmp_path / "out")
    assert read_metadata(tmp_path / "out" / line["file"])["settings"]["judge"] == str(judge)
    capsys.readouterr()
    assert cli_main(["batch", str(prompts), "--out", str(tmp_path / "out"), *args, "--judge", str(judge)]) == 0
    assert "already in" in capsys.readouterr().err                          # complete with the same judge
    assert cli_main(["batch", str(prompts), "--out", str(tmp_path / "out"), *args]) == 0
    assert "other settings" in capsys.readouterr().err                      # judged by itself: drawn again
    assert "judge" not in read_metadata(tmp_path / "out" / line["file"])["settings"]
