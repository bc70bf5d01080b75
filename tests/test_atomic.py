"""The one atomic writer (`io.atomic`): what is at the output path is never damaged, modes follow the umask or the
existing file, killed saves leave at most one recognisable temp file which the next save removes, a failed save
leaves the old file whole; and the files the project writes (prompt sets, checkpoints, model folders, logs) go
through it."""
import errno
import logging
import os
import random
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gridar_desktop.cli import main as cli_main
from gridar_desktop.io import atomic
from gridar_desktop.io.atomic import (UnsafeOutputError, atomic_folder, atomic_open, atomic_write_bytes,
                                      atomic_write_text, remove_stale_temps, torch_save_atomic)

ROOT = Path(__file__).resolve().parents[1]


def temps(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if ".gridar-" in n)


def snapshot(p: Path) -> tuple:
    st = os.lstat(p)
    content = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
    return stat.S_IFMT(st.st_mode), st.st_ino, content


# -- what must be refused ---------------------------------------------------------------------------------------
def _fifo(d: Path) -> Path:
    p = d / "pipe"
    os.mkfifo(p)
    return p


def _folder(d: Path) -> Path:
    p = d / "sub"
    p.mkdir()
    return p


def _socket(d: Path) -> Path:
    p = d / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()
    return p


def _dangling(d: Path) -> Path:
    p = d / "link.png"
    p.symlink_to(d / "missing" / "x.png")
    return p


def _hard_link(d: Path) -> Path:
    (d / "first.png").write_bytes(b"old")
    p = d / "second.png"
    os.link(d / "first.png", p)
    return p


def _link_to_fifo(d: Path) -> Path:
    os.mkfifo(d / "pipe")
    p = d / "out.png"
    p.symlink_to(d / "pipe")
    return p


REFUSED = [(_fifo, "named pipe"), (_folder, "folder"), (_socket, "socket"), (_dangling, "does not exist"),
           (_hard_link, "2 hard links"), (_link_to_fifo, "named pipe")]


@pytest.mark.parametrize("make,words", REFUSED, ids=[m.__name__.strip("_") for m, _ in REFUSED])
@pytest.mark.parametrize("write", [lambda p: atomic_write_text(p, "new"), lambda p: atomic_write_bytes(p, b"new")],
                         ids=["text", "bytes"])
def test_refuses_what_is_not_a_regular_file(make, words, write):
    # a short folder: a UNIX socket's path is limited to ~107 bytes
    d = Path(tempfile.mkdtemp(prefix="gat-"))
    try:
        p = make(d)
        before = {n: snapshot(d / n) for n in os.listdir(d)}
        with pytest.raises(UnsafeOutputError, match=re.escape(words)) as e:
            write(p)
        assert isinstance(e.value, OSError) and str(p) in str(e.value) and "\n" not in str(e.value)
        assert {n: snapshot(d / n) for n in os.listdir(d)} == before        # nothing changed, no temp file
    finally:
        import shutil
        shutil.rmtree(d)


@pytest.fixture
def dev_null_guard():
    """A regression here would replace the machine's /dev/null with a file (as root): put the device back, and fail."""
    yield
    st = os.lstat("/dev/null")
    if not stat.S_ISCHR(st.st_mode):
        if os.geteuid() == 0:
            os.mknod("/dev/.null.gridar-test", stat.S_IFCHR | 0o666, os.makedev(1, 3))
            os.chmod("/dev/.null.gridar-test", 0o666)
            os.replace("/dev/.null.gridar-test", "/dev/null")
        pytest.fail("/dev/null was replaced by a regular file")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_character_device_is_refused(tmp_path):
    dev = tmp_path / "null.png"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with pytest.raises(UnsafeOutputError, match=re.escape(f"{dev} is a character device, not a regular file")):
        atomic_write_bytes(dev, b"x")
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and os.listdir(tmp_path) == ["null.png"]


def test_dev_null_is_refused_and_stays_a_device(dev_null_guard):
    before = os.stat("/dev/null")
    with pytest.raises(UnsafeOutputError, match=r"^/dev/null is a character device, not a regular file; choose a "):
        atomic_write_text("/dev/null", "x")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino


def test_symlink_is_written_through_and_stays_a_link(tmp_path):
    elsewhere = tmp_path / "real"
    elsewhere.mkdir()
    target = elsewhere / "image.png"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.png"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new" and link.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert temps(tmp_path) == [] and temps(elsewhere) == []


def test_relative_symlink_chain_is_followed(tmp_path):
    (tmp_path / "t.txt").write_text("old")
    (tmp_path / "a").symlink_to("t.txt")
    (tmp_path / "b").symlink_to("a")
    atomic_write_text(tmp_path / "b", "new")
    assert (tmp_path / "t.txt").read_text() == "new"
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()


def test_hard_link_refused_leaves_both_names(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"shared")
    os.link(a, b)
    with pytest.raises(UnsafeOutputError, match="hard links"):
        atomic_write_bytes(a, b"new")
    assert a.read_bytes() == b.read_bytes() == b"shared" and os.stat(a).st_ino == os.stat(b).st_ino
    assert os.stat(a).st_nlink == 2


# -- modes ------------------------------------------------------------------------------------------------------
@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_(m):
        os.umask(m)
    yield set_
    os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_follows_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write_text(tmp_path / "new.json", "{}")
    assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == mode


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o664, 0o755])
def test_existing_file_keeps_its_mode(tmp_path, umask, mode):
    umask(0o077)
    p = tmp_path / "old.png"
    p.write_bytes(b"old")
    os.chmod(p, mode)
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and stat.S_IMODE(os.stat(p).st_mode) == mode


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_read_only_file_is_refused(tmp_path):
    p = tmp_path / "locked.png"
    p.write_bytes(b"old")
    os.chmod(p, 0o444)
    with pytest.raises(UnsafeOutputError, match="read-only"):
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"


# -- temp files -------------------------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temp_name_is_recognisable(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        real_replace(src, dst)
    monkeypatch.setattr(atomic.os, "replace", spy)
    atomic_write_text(tmp_path / "r.json", "{}")
    assert re.fullmatch(rf"\.r\.json\.gridar-{os.getpid()}-[A-Za-z0-9_]+\.tmp", seen[0])


def test_stale_temps_of_the_same_target_are_removed(tmp_path):
    dead, me = _dead_pid(), os.getpid()
    files = {
        f".a.txt.gridar-{dead}-abc123.tmp": True,            # its process is gone
        f".a.txt.gridar-{me}-old999.tmp": True,              # alive, but older than an hour
        f".a.txt.gridar-{me}-fresh1.tmp": False,             # a save in progress (ours)
        f".a.txt.gridar-1-live.tmp": False,                  # pid 1 is alive: a save in progress elsewhere
        f".b.txt.gridar-{dead}-abc123.tmp": False,           # another target's
        ".a.txt.x8k2p.tmp": False,                           # not our pattern
        f"a.txt.gridar-{dead}-abc123.tmp": False,            # not hidden: not ours
    }
    for name in files:
        (tmp_path / name).write_text("junk")
    hour_ago = time.time() - 2 * 3600
    os.utime(tmp_path / f".a.txt.gridar-{me}-old999.tmp", (hour_ago, hour_ago))
    atomic_write_text(tmp_path / "a.txt", "new")
    left = set(os.listdir(tmp_path))
    assert (tmp_path / "a.txt").read_text() == "new"
    for name, removed in files.items():
        assert (name not in left) == removed, name


def test_remove_stale_temps_on_a_missing_folder_is_quiet(tmp_path):
    assert remove_stale_temps(tmp_path / "nope", "a.txt") == []


# -- failures ---------------------------------------------------------------------------------------------------
def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_at_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "set.jsonl"
    p.write_text("old\n")
    monkeypatch.setattr(atomic.os, "fsync", _enospc)
    with pytest.raises(OSError) as e:
        atomic_write_text(p, "new\n" * 10_000)
    assert e.value.errno == errno.ENOSPC
    assert str(e.value) == f"cannot save {p}: No space left on device; the file there is unchanged"
    assert p.read_text() == "old\n" and os.listdir(tmp_path) == ["set.jsonl"]


def test_an_unwritable_folder_is_named(tmp_path, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    with pytest.raises(OSError, match=re.escape(f"cannot save {tmp_path / 'n.png'}: Permission denied; nothing was "
                                                "written")):
        atomic_write_bytes(tmp_path / "n.png", b"x")
    assert os.listdir(tmp_path) == []


def test_a_file_in_the_folder_path_is_named(tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(UnsafeOutputError, match=re.escape(f"{tmp_path / 'f'} is a file, not a folder")):
        atomic_write_text(tmp_path / "f" / "sub" / "x.txt", "new")
    assert (tmp_path / "f").read_text() == "a file"


def test_full_disk_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "big.bin"
    p.write_bytes(b"A" * 1000)
    real = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode, **kw: _Wrapped(real(fd, mode, **kw)))
    with pytest.raises(OSError):
        atomic_write_bytes(p, b"B" * 100_000)
    assert p.read_bytes() == b"A" * 1000 and os.listdir(tmp_path) == ["big.bin"]


class _Wrapped:
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        _enospc()

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_exception_inside_the_block_keeps_the_old_file(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(p, "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]


def test_whole_file_modes_only(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass
    assert os.listdir(tmp_path) == []


# -- the CLI ----------------------------------------------------------------------------------------------------
def _one_line_exit_2(capsys, argv) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_cli_scene_to_dev_null_is_refused(capsys, dev_null_guard):
    before = os.stat("/dev/null")
    err = _one_line_exit_2(capsys, ["scene", "a red circle", "-o", "/dev/null"])
    # refused by the device check (at the parser or at the save) or by the image writer's suffix check: either way
    # one line naming it
    assert err.startswith("gridar scene: ") and "/dev/null" in err
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_cli_scene_to_a_png_name_linked_to_dev_null_is_refused(tmp_path, capsys, dev_null_guard):
    link = tmp_path / "out.png"
    link.symlink_to("/dev/null")
    err = _one_line_exit_2(capsys, ["scene", "a red circle", "-o", str(link)])
    assert "is a character device, not a regular file" in err and str(link) in err
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.listdir(tmp_path) == ["out.png"]


def test_cli_prompts_to_a_fifo_is_refused(tmp_path, capsys):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    err = _one_line_exit_2(capsys, ["prompts", "-n", "5", "-o", str(fifo)])
    assert "named pipe (FIFO), not a regular file" in err and str(fifo) in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe.jsonl"]


def test_cli_prompts_through_a_symlink_writes_its_target(tmp_path, capsys):
    target = tmp_path / "sets" / "p.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "p.jsonl"
    link.symlink_to(target)
    assert cli_main(["prompts", "-n", "5", "-o", str(link)]) == 0
    assert link.is_symlink() and len(target.read_text().splitlines()) == 5
    assert temps(tmp_path) == [] and temps(target.parent) == []


def test_cli_prompts_to_a_dangling_symlink_is_refused(tmp_path, capsys):
    link = tmp_path / "p.jsonl"
    link.symlink_to(tmp_path / "gone.jsonl")
    err = _one_line_exit_2(capsys, ["prompts", "-n", "5", "-o", str(link)])
    assert "does not exist" in err and link.is_symlink() and not (tmp_path / "gone.jsonl").exists()


def test_cli_prompts_on_a_full_disk_keeps_the_old_file(tmp_path, capsys, monkeypatch):
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "a red circle", "category": "single"}\n')
    old = p.read_bytes()
    monkeypatch.setattr(atomic.os, "fsync", _enospc)
    err = _one_line_exit_2(capsys, ["prompts", "-n", "500", "-o", str(p)])
    assert err == f"gridar prompts: cannot save {p}: No space left on device; the file there is unchanged\n"
    assert p.read_bytes() == old and os.listdir(tmp_path) == ["p.jsonl"]


def test_cli_prompts_new_file_follows_umask(tmp_path, umask):
    umask(0o022)
    assert cli_main(["prompts", "-n", "3", "-o", str(tmp_path / "p.jsonl")]) == 0
    assert stat.S_IMODE(os.stat(tmp_path / "p.jsonl").st_mode) == 0o644


# -- killed saves -----------------------------------------------------------------------------------------------
CHILD = """
import sys
from gridar_desktop.io.atomic import atomic_write_bytes
path, a, b = sys.argv[1], b"A" * int(sys.argv[2]), b"B" * int(sys.argv[2])
i = 0
while True:
    atomic_write_bytes(path, a if i % 2 == 0 else b)
    i += 1
    sys.stdout.write("s")
    sys.stdout.flush()
"""


def test_sigkill_stress_leaves_old_or_new_and_at_most_one_temp(tmp_path):
    """50 savers killed at a random moment: the target is always exactly A or exactly B, at most one temp file is
    left, and the next saver's first save removes it."""
    size = 2_000_000
    target = tmp_path / "big.bin"
    target.write_bytes(b"A" * size)
    rng = random.Random(26)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    prev_left: list[str] = []
    for _ in range(50):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(size)], stdout=subprocess.PIPE,
                                env=env)
        try:
            assert proc.stdout.read(1) == b"s"          # one save done: its clean-up of earlier temps has run
            assert not set(prev_left) & set(temps(tmp_path)), "a stale temp survived the next save"
            time.sleep(rng.uniform(0, 0.03))            # then kill at a random moment, mid-save or between saves
        finally:
            proc.kill()
            proc.wait()                                 # reaped: its pid is gone, so its temp is stale
            proc.stdout.close()
        data = target.read_bytes()
        assert data in (b"A" * size, b"B" * size)
        prev_left = temps(tmp_path)
        assert len(prev_left) <= 1, prev_left
    atomic_write_bytes(target, b"done")
    assert temps(tmp_path) == [] and target.read_bytes() == b"done"


# -- folders ----------------------------------------------------------------------------------------------------
def test_atomic_folder_replaces_whole_or_not_at_all(tmp_path):
    out = tmp_path / "model"
    with atomic_folder(out) as d:
        (d / "weights").write_text("v1")
    assert (out / "weights").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as d:
            (d / "weights").write_text("half")
            raise RuntimeError("crash mid-save")
    assert (out / "weights").read_text() == "v1" and os.listdir(tmp_path) == ["model"]
    with atomic_folder(out) as d:
        (d / "weights").write_text("v2")
    assert (out / "weights").read_text() == "v2" and os.listdir(tmp_path) == ["model"]


def test_atomic_folder_refuses_a_file(tmp_path):
    (tmp_path / "model").write_text("a file")
    with pytest.raises(UnsafeOutputError, match="not a folder"):
        with atomic_folder(tmp_path / "model"):
            pass
    assert (tmp_path / "model").read_text() == "a file" and os.listdir(tmp_path) == ["model"]


def test_atomic_folder_keeps_an_old_copy_until_a_build_lands(tmp_path):
    """A crash between the two renames leaves the old model under an .old name: it must survive a failed build."""
    dead = _dead_pid()
    old = tmp_path / f".model.gridar-{dead}-abcd.old"
    old.mkdir()
    (old / "weights").write_text("v0")
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "model"):
            raise RuntimeError("fails too")
    assert (old / "weights").read_text() == "v0"
    with atomic_folder(tmp_path / "model") as d:
        (d / "weights").write_text("v1")
    assert os.listdir(tmp_path) == ["model"]


class _FakeModel:
    def __init__(self, tag):
        self.tag = tag
        self.generation_config = type("GC", (), {})()

    def save_pretrained(self, d):
        (Path(d) / "model.safetensors").write_text(self.tag)
        (Path(d) / "config.json").write_text("{}")


class _FakeProcessor:
    def save_pretrained(self, d):
        (Path(d) / "tokenizer.json").write_text("{}")


def test_save_folder_swaps_in_a_whole_model_and_keeps_its_notes(tmp_path):
    from gridar_desktop.training.demo_config import save_folder
    out = tmp_path / "demo"
    save_folder(_FakeModel("v1"), _FakeProcessor(), out, meta={"name": "demo"})
    (out / "README.md").write_text("card")
    (out / "edit_value_head.safetensors").write_text("head for v1")
    save_folder(_FakeModel("v2"), _FakeProcessor(), out)
    assert (out / "model.safetensors").read_text() == "v2"
    assert (out / "README.md").read_text() == "card" and '"demo"' in (out / "gridar.json").read_text()
    assert not (out / "edit_value_head.safetensors").exists()       # it belonged to the old weights
    assert os.listdir(tmp_path) == ["demo"]


# -- training checkpoints ---------------------------------------------------------------------------------------
def test_training_checkpoint_resumes_with_weights_only(tmp_path):
    """The checkpoint the training loops write (weights, AdamW state, python and torch RNG) loads with
    weights_only=True and resumes the same random stream."""
    import torch
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    rng = random.Random(5)
    rng.random()
    rng.gauss(0, 1)
    ck = tmp_path / "ckpt.pt"
    torch_save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": 7, "rng": rng.getstate(),
                       "torch_rng": torch.get_rng_state(), "tokens": [torch.zeros(4, dtype=torch.int16)],
                       "words": [[1, 2]], "kind": ["recolour"]}, ck)
    back = torch.load(ck, weights_only=True)
    m2, r2 = torch.nn.Linear(3, 2), random.Random()
    o2 = torch.optim.AdamW(m2.parameters())
    m2.load_state_dict(back["model"])
    o2.load_state_dict(back["opt"])
    r2.setstate(back["rng"])
    torch.set_rng_state(back["torch_rng"])
    assert back["step"] == 7 and [r2.random() for _ in range(3)] == [rng.random() for _ in range(3)]
    assert torch.equal(m2.weight, model.weight)


def test_project_writers_go_through_the_atomic_writer():
    """No direct writes in the code this suite covers: a direct write_text / torch.save / weights_only=False
    would bring back truncated files on a full disk or pickle loading."""
    banned = re.compile(r"\.write_text\(|\.write_bytes\(|torch\.save\(|weights_only=False|save_file\(")
    files = [*ROOT.glob("gridar_desktop/training/*.py"), *ROOT.glob("gridar_desktop/shapes/*.py"),
             *ROOT.glob("benchmarks/*.py"), ROOT / "docs/make_screenshots.py"]
    hits = [f"{f.relative_to(ROOT)}:{i}" for f in files for i, line in enumerate(f.read_text().splitlines(), 1)
            if banned.search(line)]
    assert hits == []


# -- logs -------------------------------------------------------------------------------------------------------
@pytest.fixture
def fresh_logging(monkeypatch):
    from gridar_desktop import logs
    root = logging.getLogger("gridar")
    saved = root.handlers[:]
    root.handlers.clear()
    monkeypatch.setattr(logs, "_configured", False)
    yield logs.setup_logging
    for h in root.handlers:
        h.close()
    root.handlers[:] = saved


def _log_to_dev_full(home: Path) -> None:
    (home / "log").mkdir(parents=True)
    (home / "log" / "gridar.log").symlink_to("/dev/full")


def _log_is_a_folder(home: Path) -> None:
    (home / "log" / "gridar.log").mkdir(parents=True)


def _log_is_a_fifo(home: Path) -> None:
    (home / "log").mkdir(parents=True)
    os.mkfifo(home / "log" / "gridar.log")          # opening it for appending would wait for a reader forever


@pytest.mark.parametrize("break_log", [_log_to_dev_full, _log_is_a_folder, _log_is_a_fifo],
                         ids=["full-disk", "folder", "fifo"])
def test_unwritable_log_costs_one_line_not_a_traceback(tmp_path, monkeypatch, capsys, fresh_logging, break_log):
    home = tmp_path / "gh"
    monkeypatch.setenv("GRIDAR_HOME", str(home))
    break_log(home)
    fresh_logging()
    log = logging.getLogger("gridar.test")
    for i in range(5):
        log.info("record %d", i)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err
    assert err.count("cannot write logs") == 1 and err.count("\n") == 1, err


def test_unwritable_log_does_not_stop_a_command(tmp_path, monkeypatch, capsys, fresh_logging):
    home = tmp_path / "gh"
    monkeypatch.setenv("GRIDAR_HOME", str(home))
    _log_to_dev_full(home)
    out = tmp_path / "s.png"
    assert cli_main(["scene", "a red circle", "-o", str(out)]) == 0
    logging.getLogger("gridar.cli").warning("something to say")
    err = capsys.readouterr().err
    assert out.stat().st_size > 0 and "Traceback" not in err and err.count("cannot write logs") == 1
