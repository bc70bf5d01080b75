"""Bad input through the real entry point (`gridar_desktop.cli.main`): each case must end with exit code 2, exactly one
non-empty stderr line naming the problem, no traceback, and the files in the folder exactly as they were (an existing
output file included). Cases marked "before load" must be refused before any model loads: `JanusBackend.load` is
made to fail for them, so a case that reaches it fails the test."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from gridar_desktop.cli import main as cli_main
from gridar_desktop.engine.backend import JanusBackend
from gridar_desktop.engine.tiny import save_tiny_janus

OLD = b"an earlier output that must survive\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny-bad-input")
    save_tiny_janus(d, seed=11)
    return d


def _png(size=(64, 64), colour=(255, 255, 255), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _painted_mask() -> bytes:
    """A 64x64 black mask with a small white stroke."""
    im = Image.new("L", (64, 64), 0)
    im.paste(255, (30, 30, 36, 36))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _model_variant(tiny: Path, dest: Path, files: dict[str, str | bytes | None]) -> None:
    """A copy of the tiny folder (weights linked, not copied) with some files replaced (None: removed)."""
    dest.mkdir()
    for f in tiny.iterdir():
        if f.suffix == ".safetensors":
            (dest / f.name).symlink_to(f)
        else:
            shutil.copy(f, dest / f.name)
    for name, content in files.items():
        target = dest / name
        if target.is_symlink() or target.exists():
            target.unlink()
        if content is not None:
            target.write_bytes(content if isinstance(content, bytes) else content.encode())


def _config_with(tiny: Path, section: str, key: str, value) -> str:
    cfg = json.loads((tiny / "config.json").read_text())
    cfg[section][key] = value
    return json.dumps(cfg)


def _meta_with(**fields) -> str:
    return json.dumps({"prompt_format": "plain", "prompt_language": "shapes", "canvas_colour": [235, 233, 226],
                       **fields})


GEN = ["generate", "a red circle", "--model", "{model}", "--device", "cpu", "-o", "{out}"]
PROMPTS_OK = "".join(json.dumps({"prompt": p, "category": "single"}) + "\n"
                     for p in ("a red circle", "two blue squares", "a green triangle", "four red circles"))
BENCH = ["bench", "--prompts", "{tmp}/p.jsonl", "--methods", "single:1", "--seeds", "0", "--model", "{model}",
         "--device", "cpu", "--out", "{out}"]


def gen(*extra: str, prompt: str = "a red circle") -> list[str]:
    return ["generate", prompt, "--model", "{model}", "--device", "cpu", "-o", "{out}", *extra]


# (id, argv, expected fragment of the one stderr line, refused before the model loads, files to create, model files)
CASES = [
    # -- numbers at the parser
    ("cfg-nan", gen("--cfg", "nan"), "--cfg", True, {}, None),
    ("cfg-inf", gen("--cfg", "inf"), "--cfg", True, {}, None),
    ("cfg-negative", gen("--cfg", "-5"), "--cfg", True, {}, None),
    ("temperature-nan", gen("--temperature", "nan"), "--temperature", True, {}, None),
    ("temperature-inf", gen("--temperature", "inf"), "--temperature", True, {}, None),
    ("temperature-zero", gen("--temperature", "0"), "--temperature", True, {}, None),
    ("top-k-negative", gen("--top-k", "-5"), "--top-k", True, {}, None),
    ("top-p-zero", gen("--top-p", "0"), "--top-p", True, {}, None),
    ("top-p-above-one", gen("--top-p", "1.5"), "--top-p", True, {}, None),
    ("threshold-nan", gen("--threshold", "nan"), "--threshold", True, {}, None),
    ("threshold-above-one", gen("--threshold", "2"), "--threshold", True, {}, None),
    ("seed-huge", gen("--seed", str(2 ** 70)), "--seed", True, {}, None),
    ("seed-negative", gen("--seed", "-1"), "--seed", True, {}, None),
    ("n-huge", gen("--method", "best-of-n", "-n", "100000"), "from 1 to 64", True, {}, None),
    ("n-zero", gen("--method", "best-of-n", "-n", "0"), "-n", True, {}, None),
    ("n-not-group", gen("--method", "gridar", "-n", "6"), "multiple of 4", True, {}, None),
    ("feather-nan", ["edit", "{tmp}/img.png", "{tmp}/mask.png", "a red circle", "--model", "{model}",
                     "--feather", "nan", "-o", "{out}"], "--feather", True,
     {"img.png": _png(), "mask.png": _png(mode="L", colour=255)}, None),
    ("scene-size-zero", ["scene", "a red circle", "--size", "0", "-o", "{out}"], "--size", True, {}, None),
    ("scene-size-huge", ["scene", "a red circle", "--size", "100000", "-o", "{out}"], "from 8 to 2048", True, {},
     None),
    ("prompts-n-negative", ["prompts", "-n", "-1", "-o", "{out}"], "-n", True, {}, None),
    ("prompts-n-zero", ["prompts", "-n", "0", "-o", "{out}"], "-n", True, {}, None),
    ("bench-batch-zero", BENCH + ["--batch", "0"], "--batch", True, {"p.jsonl": PROMPTS_OK}, None),
    ("bench-seeds-abc", BENCH[:6] + ["abc"] + BENCH[7:], "--seeds", True, {"p.jsonl": PROMPTS_OK}, None),
    ("bench-method-n", ["bench", "--prompts", "{tmp}/p.jsonl", "--methods", "gridar:6", "--model", "{model}",
                        "--out", "{out}"], "multiple of 4", True, {"p.jsonl": PROMPTS_OK}, None),
    # -- output paths: checked before any work
    ("out-folder-missing", ["generate", "a red circle", "--model", "{model}", "-o", "{tmp}/nowhere/x.png"],
     "does not exist", True, {}, None),
    ("out-is-folder", ["generate", "a red circle", "--model", "{model}", "-o", "{tmp}/adir"], "not a regular file",
     True, {"adir/keep.txt": "x"}, None),
    ("bench-out-folder-missing", BENCH[:-1] + ["{tmp}/nowhere/r.json"], "--out", True, {"p.jsonl": PROMPTS_OK},
     None),
    # -- prompts: one check per model, before the model loads
    ("prompt-not-utf8", gen(prompt="a red \udcff circle"), "not UTF-8", True, {}, None),
    ("prompt-empty", gen(prompt=""), "empty", True, {}, None),
    ("prompt-blank", gen(prompt="   "), "empty", True, {}, None),
    ("prompt-word-salad", gen(prompt="circles red two two"), "cannot read 'circles red two two'", True, {}, None),
    ("prompt-on", gen(prompt="a red circle on a blue square"), "an object is '<count> <colour> <shape>'", True, {},
     None),
    ("prompt-seven", gen(prompt="three red circles and four blue squares"), "at most 6 objects", True, {}, None),
    ("prompt-singular", gen(prompt="two red circle"), "plural 'circles'", True, {}, None),
    ("prompt-repeat", gen(prompt="a red circle and a red circle"), "differ in colour or shape", True, {}, None),
    ("edit-free-instruction", ["edit", "{tmp}/img.png", "{tmp}/mask.png", "make it blue", "--model", "{model}",
                               "-o", "{out}"], "--target-prompt", True,
     {"img.png": _png(), "mask.png": _png(mode="L", colour=255)}, None),
    ("edit-bad-target", ["edit", "{tmp}/img.png", "{tmp}/mask.png", "make it blue", "--target-prompt",
                         "two red circle", "--model", "{model}", "-o", "{out}"], "plural", True,
     {"img.png": _png(), "mask.png": _png(mode="L", colour=255)}, None),
    # -- bench prompt files: every line checked, with its number, before any model work
    ("bench-empty-file", BENCH, "holds no prompts", True, {"p.jsonl": ""}, None),
    ("bench-text-field", BENCH, "p.jsonl:1: no \"prompt\" field", True, {"p.jsonl": '{"text": "a red circle"}\n'},
     None),
    ("bench-bare-string", BENCH, "p.jsonl:2: a JSON str", True,
     {"p.jsonl": '{"prompt": "a red circle"}\n"a blue square"\n'}, None),
    ("bench-bad-json", BENCH, "p.jsonl:3: not a JSON line", True,
     {"p.jsonl": "".join(PROMPTS_OK.splitlines(True)[:2]) + "{oops\n"}, None),
    ("bench-refused-line-4", BENCH, "p.jsonl:4: ", True,
     {"p.jsonl": PROMPTS_OK.replace("four red circles", "circles red two two")}, None),
    ("bench-image-as-prompts", BENCH[:2] + ["{tmp}/image.png"] + BENCH[3:], "image.png is not a UTF-8 text", True,
     {"image.png": _png()}, None),
    # -- model folders are untrusted input
    ("config-list", GEN, "config.json' holds a JSON list", True, {}, {"config.json": "[1, 2, 3]"}),
    ("config-malformed", GEN, "config.json' is not valid JSON", True, {}, {"config.json": '{"model_type": "janus",'}),
    ("config-absurd", GEN, "text_config.hidden_size", True, {},
     {"config.json": lambda t: _config_with(t, "text_config", "hidden_size", 10 ** 12)}),
    ("config-string-dim", GEN, "vision_config.image_size", True, {},
     {"config.json": lambda t: _config_with(t, "vision_config", "image_size", "big")}),
    ("meta-list", GEN, "gridar.json' holds a JSON list", True, {}, {"gridar.json": "[1]"}),
    ("meta-malformed", GEN, "line 2, column", True, {}, {"gridar.json": '{"name": "x",\n "canvas_colour": }'}),
    ("meta-deep", GEN, "nested too deeply", True, {}, {"gridar.json": '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"}),
    ("meta-colour-range", GEN, "canvas_colour", True, {}, {"gridar.json": _meta_with(canvas_colour=[999, -5, 1e9])}),
    ("meta-colour-word", GEN, "canvas_colour", True, {}, {"gridar.json": _meta_with(canvas_colour="red")}),
    ("meta-edit-generation", GEN, "edit_generation", True, {}, {"gridar.json": _meta_with(edit_generation="yes")}),
    ("meta-language", GEN, "prompt_language", True, {}, {"gridar.json": _meta_with(prompt_language="klingon")}),
    ("bin-only", GEN, "holds only pytorch_model.bin; GridAR loads safetensors only", True, {},
     {"model.safetensors": None, "pytorch_model.bin": b"not opened"}),
    # -- after the model loads
    ("prompt-too-long", gen(prompt="a red circle " * 100), "positions", False, {},
     {"gridar.json": json.dumps({"prompt_format": "plain"})}),
    ("edit-mask-vanishes", ["edit", "{tmp}/img.png", "{tmp}/mask.png", "a red circle", "--model", "{model}",
                            "--device", "cpu", "--method", "single", "-o", "{out}"], "vanished when resampled", False,
     {"img.png": _png((1, 1)), "mask.png": _painted_mask()}, None),
]


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """name -> (mtime_ns, sha256) of every file under `folder`, the app's own home (logs) left out."""
    out = {}
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if rel.parts[0] == "home" or not f.is_file():
            continue
        out[str(rel)] = (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, tiny, tmp_path, capsys, monkeypatch):
    name, argv, fragment, before_load, files, model_files = case
    for fname, content in files.items():
        (tmp_path / fname).parent.mkdir(exist_ok=True)
        (tmp_path / fname).write_bytes(content if isinstance(content, bytes) else content.encode())
    model = tiny
    if model_files is not None:
        model = tmp_path / "model"
        _model_variant(tiny, model, {k: v(tiny) if callable(v) else v for k, v in model_files.items()})
    out = tmp_path / "out.png"
    out.write_bytes(OLD)
    if before_load:
        def refuse(*a, **k):
            raise AssertionError("the model was loaded for input that should be refused before")
        monkeypatch.setattr(JanusBackend, "load", classmethod(refuse))
    before = _snapshot(tmp_path)
    argv = [a.format(model=model, out=out, tmp=tmp_path) for a in argv]

    rc = cli_main(argv)

    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before
    assert out.read_bytes() == OLD


# -- what the table cannot say ----------------------------------------------------------------------------------

def test_prompt_normalised_as_the_grammar_reads_it(tiny, tmp_path, capsys):
    """"A Red Circle." passes the grammar, so it must also pass the model's tokenizer and generate."""
    out = tmp_path / "a.png"
    assert cli_main(["generate", "A Red Circle.", "--model", str(tiny), "--device", "cpu", "-o", str(out)]) == 0
    assert out.is_file()
    assert capsys.readouterr().err == ""          # stderr stays empty: no load report, no progress bars off a TTY


def test_out_of_memory_is_one_line(tiny, tmp_path, capsys, monkeypatch):
    import torch

    from gridar_desktop.engine import search

    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79 GiB total)")
    monkeypatch.setattr(search.Search, "run", oom)
    out = tmp_path / "o.png"
    rc = cli_main(["generate", "a red circle", "--model", str(tiny), "--device", "cpu", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "ran out of memory" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("weights", ["model.safetensors", "other.safetensors"])
def test_pickle_is_never_opened_next_to_safetensors(tiny, tmp_path, monkeypatch, weights):
    """A .bin beside safetensors weights is never opened, let alone unpickled (its payload would create a marker):
    with model.safetensors the folder loads from it; with safetensors under another name (which transformers would
    pass over for the .bin) the folder is refused."""
    from gridar_desktop.engine.errors import ModelLoadError
    import builtins
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))
    folder = tmp_path / "model"
    _model_variant(tiny, folder, {"pytorch_model.bin": pickle.dumps(Payload())})
    (folder / "model.safetensors").rename(folder / weights)
    opened, real_open = [], builtins.open

    def spy(file, *a, **k):
        opened.append(str(file))
        return real_open(file, *a, **k)
    monkeypatch.setattr(builtins, "open", spy)
    if weights == "model.safetensors":
        JanusBackend.load(folder, device="cpu")
    else:
        with pytest.raises(ModelLoadError, match="no model.safetensors"):
            JanusBackend.load(folder, device="cpu")
    monkeypatch.undo()
    assert not marker.exists()
    assert not [f for f in opened if f.endswith(".bin")]


BENCH_ARGS = ["--methods", "single:1,best-of-n:2", "--seeds", "0", "--device", "cpu", "--batch", "2"]


@pytest.fixture(scope="module")
def bench_uninterrupted(tiny, tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("bench-full")
    (d / "p.jsonl").write_text(PROMPTS_OK)
    out = d / "full.json"
    assert cli_main(["bench", "--prompts", str(d / "p.jsonl"), "--model", str(tiny), *BENCH_ARGS,
                     "--out", str(out)]) == 0
    assert not Path(f"{out}.partial.jsonl").exists()
    return d / "p.jsonl", json.loads(out.read_text())


@pytest.mark.parametrize("failure, code, said", [
    (RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 TB (out of memory)"), 2,
     "ran out of memory"),
    (KeyboardInterrupt(), 130, "interrupted"),
], ids=["out-of-memory", "interrupt"])
def test_bench_keeps_finished_work_and_resumes(tiny, bench_uninterrupted, tmp_path, capsys, monkeypatch, failure,
                                               code, said):
    """A bench that fails or is interrupted in its third unit keeps the two it finished; the same command then runs
    only the rest and writes the report an uninterrupted run writes (wall-clock times aside)."""
    from gridar_desktop.engine import search
    prompts, full = bench_uninterrupted
    out = tmp_path / "r.json"
    argv = ["bench", "--prompts", str(prompts), "--model", str(tiny), *BENCH_ARGS, "--out", str(out)]
    real_run_all, calls = search.Search.run_all, []

    def flaky(self):
        calls.append(1)
        if len(calls) == 3:
            raise failure
        return real_run_all(self)
    monkeypatch.setattr(search.Search, "run_all", flaky)
    capsys.readouterr()
    assert cli_main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert said in err and "2 finished unit(s) kept" in err and "Traceback" not in err
    assert not out.exists()
    partial = Path(f"{out}.partial.jsonl").read_text().splitlines()
    assert len(partial) == 3                                  # the fingerprint and two units

    calls.clear()
    assert cli_main(argv) == 0
    assert len(calls) == 2                                    # only the two units not finished before
    resumed = json.loads(out.read_text())

    def timeless(x):
        if isinstance(x, dict):
            return {k: timeless(v) for k, v in x.items() if "seconds" not in k}
        return x
    assert timeless(resumed) == timeless(full)
    assert not Path(f"{out}.partial.jsonl").exists()


def test_bench_starts_over_when_the_settings_changed(tiny, bench_uninterrupted, tmp_path, capsys):
    """A partial file from a bench with other settings is not mixed in: the run starts over."""
    from gridar_desktop.bench import bench_fingerprint
    prompts, full = bench_uninterrupted
    out = tmp_path / "r.json"
    stale = {"bench": bench_fingerprint([], [], [0], 2)}
    Path(f"{out}.partial.jsonl").write_text(json.dumps(stale) + "\n" + json.dumps(
        {"unit": "single:1|seed 0|prompts 0-1", "rows": [["single", 1, 1.0]] * 2, "cost": {}}) + "\n")
    assert cli_main(["bench", "--prompts", str(prompts), "--model", str(tiny), *BENCH_ARGS, "--out", str(out)]) == 0
    assert "starting over" in capsys.readouterr().err
    assert json.loads(out.read_text())["methods"]["single:1"]["strict"] == full["methods"]["single:1"]["strict"]


# -- one truth about what a prompt means ------------------------------------------------------------------------

SCENE_REFUSED = ["a red circle on a blue square", "three red circles and four blue squares", "two red circle",
                 "a red circle and a red circle", "circles red two two"]


@pytest.mark.parametrize("prompt", SCENE_REFUSED)
def test_prompt_check_agrees_with_scene(prompt, tmp_path, capsys):
    """The model's prompt check refuses what `gridar scene` refuses, with the grammar's own reason."""
    from gridar_desktop.engine.errors import PromptNotUnderstood
    from gridar_desktop.engine.prompt_language import check_prompt
    assert cli_main(["scene", prompt, "-o", str(tmp_path / "s.png")]) == 2
    scene_reason = capsys.readouterr().err.strip().split(": ", 1)[1]
    with pytest.raises(PromptNotUnderstood) as e:
        check_prompt("shapes", prompt)
    assert str(e.value) == scene_reason


def test_prompt_check_normalises_and_any_text_without_a_language():
    from gridar_desktop.engine.errors import PromptNotUnderstood
    from gridar_desktop.engine.prompt_language import MAX_PROMPT_CHARS, check_prompt
    assert check_prompt("shapes", "  A Red Circle. ") == "a red circle"
    assert check_prompt("shapes", "A red circle,A blue square and a green triangle") == \
        "a red circle, a blue square and a green triangle"
    assert check_prompt(None, "  a cat in a hat  ") == "a cat in a hat"
    for bad in ("", "  \n", "a \udcff", "x" * (MAX_PROMPT_CHARS + 1)):
        with pytest.raises(PromptNotUnderstood):
            check_prompt(None, bad)


def test_backend_check_prompt_names_the_model_and_the_lengths():
    from gridar_desktop.engine.errors import PromptNotUnderstood
    from gridar_desktop.engine.tiny import tiny_backend
    b = tiny_backend(seed=3)
    assert b.prompt_language == "shapes"
    assert b.check_prompt("Two Red Circles.") == "two red circles"
    with pytest.raises(PromptNotUnderstood, match="cannot read this prompt: 'two red circle'"):
        b.check_prompt("two red circle")
    b.meta = {"prompt_format": "plain", "name": "Tiny"}             # no language: any text, up to the context
    assert b.prompt_language is None
    with pytest.raises(PromptNotUnderstood, match=r"Tiny reads 256 positions, 64 of which the image needs"):
        b.check_prompt("a red circle " * 100)


def test_language_sheet_and_vocabulary_come_from_the_grammar():
    from gridar_desktop.engine.prompt_language import describe_language, language_vocabulary
    from gridar_desktop.shapes import grammar as g
    sheet = describe_language("shapes")
    for word in (*g.COLOURS, *g.SHAPES, *g.REGIONS, "to the left of", "above", "four"):
        assert word in sheet
    examples = [line.strip() for line in sheet.split("Examples:")[1].splitlines() if line.strip()]
    assert len(examples) >= 4 and all(g.parse_prompt(e) for e in examples)      # every example is understood
    words = language_vocabulary("shapes")
    assert set(g.COLOURS) | set(g.SHAPES) | set(g.PLURALS) <= set(words) and "," not in words
    assert describe_language(None) == "" and language_vocabulary(None) == []
