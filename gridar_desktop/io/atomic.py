"""The one atomic writer: every file the project writes goes through here.

A save writes a temporary file beside the target, fsyncs it, renames it over the target and fsyncs the folder, so a
crash, a kill or a full disk mid-save leaves the previous file intact, never a truncated one. What is at the output
path is never damaged:

- a path that exists and is not a regular file (a device such as /dev/null, a FIFO, a socket, a folder) is refused
  with `UnsafeOutputError`, an `OSError` whose message names the path and what it is;
- a symlink is written THROUGH: the new content replaces its resolved target, atomically in the target's folder, and
  the link stays a link; a dangling symlink is refused;
- a file with several hard links is refused (replacing one name would split the link from the others);
- a new file gets 0666 minus the umask, like any program's output; an existing file keeps its mode (and, where we
  may, its owner);
- temporary files are named `.<name>.gridar-<pid>-<random>.tmp`, and each save removes stale ones for the same target
  name: those whose process is gone, or older than an hour.

Torch-free at import time; `torch_save_atomic` imports torch when called.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

STALE_AFTER_S = 3600.0
_TAG = "gridar"


class UnsafeOutputError(OSError):
    """The output path holds something we must not replace (a device, FIFO, folder, hard link, dangling link)."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_output_path(path: str | Path) -> tuple[Path, os.stat_result | None]:
    """The file a save to `path` will actually replace (the symlink's target for a symlink) and its stat (None when
    it does not exist yet). Raises `UnsafeOutputError` for anything a save must not replace."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path, None
    except NotADirectoryError:
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)
        raise UnsafeOutputError(f"cannot save {path}: {blocker} is a file, not a folder; choose a file path") \
            from None
    except OSError as e:
        raise _save_error(path, e, False) from e
    if stat.S_ISLNK(st.st_mode):
        try:
            target = path.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError, RuntimeError):
            # RuntimeError: a symlink loop (Python < 3.13); newer versions raise OSError(ELOOP), caught below.
            raise UnsafeOutputError(f"{path} is a symlink to {os.readlink(path)}, which does not exist; "
                                    "choose a file path or fix the link") from None
        except OSError as e:
            raise UnsafeOutputError(f"{path} is a symlink that cannot be followed ({e.strerror}); "
                                    "choose a file path") from None
        st = os.stat(target)
        shown = f"{path} (a symlink to {target})"
        path = target
    else:
        shown = str(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeOutputError(f"{shown} is {_kind(st.st_mode)}, not a regular file; choose a file path")
    if st.st_nlink > 1:
        raise UnsafeOutputError(f"{shown} has {st.st_nlink} hard links; saving over it would split them, so it is "
                                "left alone; choose another file name")
    if not os.access(path, os.W_OK):
        raise UnsafeOutputError(f"{shown} is read-only; choose another file name or make it writable")
    return path, st


def _umask() -> int:
    """The process umask, read without changing it where the platform tells us (os.umask is set-and-return, which
    would briefly change it for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":      # os.kill(pid, 0) would terminate the process on Windows: rely on age alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:             # EPERM: it exists, owned by someone else
        return True
    return True


def _temp_pattern(name: str, suffix: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(name)}\.{_TAG}-(\d+)-[A-Za-z0-9_]+{re.escape(suffix)}$")


def remove_stale_temps(folder: str | Path, name: str, suffix: str = ".tmp") -> list[Path]:
    """Remove temp files (or folders) left by killed saves of `name` in `folder`: ours by their name pattern, from a
    process that is gone or older than STALE_AFTER_S. Returns what was removed; never raises."""
    pat = _temp_pattern(name, suffix)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        m = pat.match(e.name)
        if not m:
            continue
        try:
            pid = int(m.group(1))
            age = now - e.stat(follow_symlinks=False).st_mtime
            if (pid != os.getpid() and not _pid_alive(pid)) or age > STALE_AFTER_S:
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path)
                else:
                    os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            continue
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; some platforms and file systems cannot open or fsync a folder."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _apply_mode(fd: int, tmp: str, existing: os.stat_result | None) -> None:
    """mkstemp creates 0600: give the temp file the mode the saved file should have."""
    if existing is None:
        mode = 0o666 & ~_umask()
    else:
        mode = stat.S_IMODE(existing.st_mode)
        if hasattr(os, "fchown"):
            try:
                os.fchown(fd, existing.st_uid, existing.st_gid)
            except OSError:     # only root (or the owner, for the group) may: keep ours
                pass
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:
        os.chmod(tmp, mode)


def _save_error(path: Path, e: OSError, existed: bool) -> OSError:
    """A system error while saving, as one line naming the file and what became of the old one (keeps errno)."""
    kept = "the file there is unchanged" if existed else "nothing was written"
    err = OSError(f"cannot save {path}: {e.strerror or e}; {kept}")
    err.errno = e.errno     # not strerror/filename: OSError's str would then ignore the message
    return err


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit it replaces `path` atomically, on an exception it is removed
    and `path` is untouched. `mode` is "w" (text, UTF-8 unless `encoding` says otherwise) or "wb". A symlink at
    `path` is written through to its target (the link stays); see the module docstring for what is refused."""
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    target, existing = check_output_path(path)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(folder, target.name)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{_TAG}-{os.getpid()}-", suffix=".tmp", dir=folder)
    except OSError as e:
        raise _save_error(Path(path), e, existing is not None) from e
    try:
        _apply_mode(fd, tmp, existing)
        kw = {} if "b" in mode else {"encoding": encoding or "utf-8"}
        with os.fdopen(fd, mode, **kw) as f:
            fd = -1                     # the file object owns it now
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno is not None and not isinstance(e, UnsafeOutputError):
            raise _save_error(Path(path), e, existing is not None) from e
        raise
    _fsync_dir(folder)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    """`torch.save` through the atomic writer: a checkpoint is either the old one or the new one, never half."""
    import torch
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Build a folder (e.g. a `save_pretrained` model) in a temporary folder beside `path`, then move it into place.

    The caller writes into the yielded folder. On a clean exit an existing folder at `path` is moved aside and the
    new one renamed in; on an exception the temporary folder is removed and `path` is untouched. The swap is two
    renames, so a crash between them leaves the old folder under a `.<name>.gridar-<pid>-<random>.old` name and
    nothing at `path`, never a half-written model; such a leftover is removed only once a later build has landed.
    The new folder gets the old one's mode (0777 minus the umask when there was none). A symlink at `path` is
    followed (the link stays); a file or device at `path` is refused."""
    path = Path(path)
    if path.is_symlink():
        try:
            path = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise UnsafeOutputError(f"{path} is a symlink that does not lead to a folder; choose a folder path") \
                from None
    if path.exists() and not path.is_dir():
        raise UnsafeOutputError(f"{path} exists and is not a folder; choose a folder path")
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(parent, path.name, ".tmpdir")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_TAG}-{os.getpid()}-", suffix=".tmpdir", dir=parent))
    try:
        # mkdtemp makes 0700
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o777 & ~_umask())
        yield tmp
        if path.exists():
            old = parent / f".{path.name}.{_TAG}-{os.getpid()}-{secrets.token_hex(4)}.old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(parent)
    remove_stale_temps(parent, path.name, ".old")
