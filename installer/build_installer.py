"""Build the offline installer bundle of GridAR Desktop.

    python installer/build_installer.py [--out dist] [--torch cpu|cuda] [--wheelhouse DIR] [--no-deps]
                                        [--python-version 3.X] [--platform TAG] [--with cluster]

Run it on a machine WITH network access (or with a local wheelhouse); the result installs on a workstation
WITHOUT any. It writes, under --out (default dist/):

    gridar-desktop-<version>-<torch>/          the bundle directory
    gridar-desktop-<version>-<torch>.tar.gz    the same tree, to copy to the workstation

Both are written atomically (built in a temporary name next to the target, then renamed), so an interrupted
build never leaves a half bundle that looks complete. The bundle holds:

    wheels/               the app's own wheel and, unless --no-deps, every dependency wheel
    models/shapes-demo/   the bundled demo model
    resources/            the icon and the desktop entry template
    install.sh            the installer (see its header; `./install.sh [PREFIX]`)
    README.txt            install / uninstall instructions for the artist
    MANIFEST.json         {"name", "version", "torch", "python", "files": {relpath: sha256}}, written last

Dependency wheels are fetched here, at build time, with `pip download --only-binary=:all:` (the workstation has
no compiler and no index, so sdists are useless there):

  --torch cpu   torch==2.13.0 and the torchvision paired with it (0.28.0, a Qwen2.5-VL judge's processor wants it)
                from the CPU wheel index, $TORCH_INDEX_URL (default https://download.pytorch.org/whl/cpu): PyPI's
                Linux torchvision is built for CUDA torch and does not load beside the CPU one; then everything
                else from PyPI
  --torch cuda  torch from PyPI in the range pyproject.toml allows (a CUDA build on Linux x86-64), with the
                torchvision pip pairs with it
  --wheelhouse DIR   take every wheel from DIR instead (`pip download --no-index --find-links DIR`)
  --python-version / --platform   fetch wheels for another interpreter / platform than this one
  --no-deps     only the app's wheel (the target venv must already provide the dependencies; used by the tests)
  --with cluster   also the wheels of the optional extra `cluster` (Ray, for `gridar batch/bench --cluster`); the
                bundle's EXTRAS file names it, and MANIFEST.json lists it under "extras"

Only the standard library is used; pip runs as a subprocess of this interpreter. Expected failures (pip cannot
find a wheel, missing demo model, ...) print one message and exit 1; no traceback.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the app runs there, but building the bundle needs 3.11+
    sys.exit("build_installer: needs Python 3.11 or newer (for tomllib); the bundle can still target 3.10 with "
             "--python-version 3.10")

REPO = Path(__file__).resolve().parents[1]
NAME = "gridar-desktop"
TORCH_CPU_VERSION = "2.13.0"  # the version the project is tested with (README); the Makefile reads it from here
# the torchvision release paired with TORCH_CPU_VERSION (torch 2.X.Y -> 0.(X+15).Y, gridar_desktop/engine/judges.py)
TORCHVISION_CPU_VERSION = "0.28.0"
DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


class BuildError(Exception):
    """An expected failure: the message is shown to the user as is."""


def project_version(pyproject: Path = REPO / "pyproject.toml") -> str:
    """The version, from pyproject.toml; it is dynamic here (an attr of the package), so follow that attr."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    if "version" in data["project"]:
        return str(data["project"]["version"])
    attr = data["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    module, _, name = attr.rpartition(".")
    base = pyproject.parent / Path(*module.split("."))
    source_file = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    # Read the assignment instead of importing: importing the package would need its dependencies installed here.
    m = re.search(rf"^{re.escape(name)}\s*=\s*['\"]([^'\"]+)['\"]", source_file.read_text(encoding="utf-8"), re.M)
    if not m:
        raise BuildError(f"cannot find {name} = '...' in {source_file} (pyproject.toml's dynamic version)")
    return m.group(1)


def linux_desktop_packages() -> tuple[str, ...]:
    """The system packages the studio's window needs on Linux: the launcher's list (the one place it is kept),
    loaded from its file alone, since importing the package here would need the app's dependencies."""
    spec = importlib.util.spec_from_file_location("_gridar_launcher", REPO / "gridar_desktop" / "launcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LINUX_DESKTOP_PACKAGES


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_pip(args: list[str], what: str, local_only: bool = False, hint: str = "") -> None:
    """Run `python -m pip ARGS`; on failure raise a BuildError naming the requirement pip could not satisfy.

    local_only (--wheelhouse): ignore pip's configuration and PIP_* variables, whose find-links or extra index
    would otherwise slip wheels from elsewhere into a bundle that was asked to come from one folder."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    env = None
    if local_only:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no config file at all
    print(f"{what} ...", flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode == 0:
        return
    out = r.stdout + r.stderr
    m = (re.search(r"No matching distribution found for (\S+)", out)
         or re.search(r"Could not find a version that satisfies the requirement (\S+)", out))
    if m:
        detail = f"no wheel found for {m.group(1)}"
    else:  # pip's last line is its summary of what went wrong
        detail = out.strip().splitlines()[-1] if out.strip() else f"pip exited with status {r.returncode}"
    hint = hint or ("Without network access, or for a platform the index does not serve, put the wheels in a "
                    "folder and pass --wheelhouse DIR.")
    raise BuildError(f"{what} failed: {detail}.\n  command: {' '.join(cmd)}\n  {hint}")


def build_app_wheel(dest: Path, scratch: Path) -> Path:
    """The app's wheel, built from a clean copy of the sources.

    Not from the checkout itself: setuptools would write build/ and *.egg-info into it, and a stale build/lib
    from an earlier build can slip modules deleted since into the wheel."""
    src = scratch / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):  # README.md is the package's long description
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "gridar_desktop", src / "gridar_desktop",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # --no-build-isolation: use the setuptools already installed here rather than fetching one into a fresh env.
    run_pip(["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dest), str(src)], "building the app wheel")
    wheels = sorted(dest.glob("gridar_desktop-*.whl"))
    if not wheels:
        raise BuildError(f"pip wheel succeeded but wrote no gridar_desktop wheel into {dest}")
    return wheels[-1]


def download_deps(app_wheel: Path, dest: Path, scratch: Path, args: argparse.Namespace) -> None:
    """Every dependency wheel of the app (torch first, so the chosen build is the one that lands in dest)."""
    target = ["--only-binary=:all:"]
    if args.python_version:
        target += ["--python-version", args.python_version]
    for tag in args.platform or []:
        target += ["--platform", tag]
    local = ["--no-index", "--find-links", str(args.wheelhouse)] if args.wheelhouse else []
    base = ["download", "-q", "--dest", str(dest), *target]
    hint = f"Put the missing wheel into {args.wheelhouse}." if args.wheelhouse else ""
    if args.platform:
        # A common surprise: pip matches --platform tags exactly, manylinux_2_34 does not imply manylinux_2_28.
        hint += (" pip matches --platform tags exactly: pass one --platform per tag the wheels may carry, e.g. "
                 "manylinux_2_34_x86_64, manylinux_2_28_x86_64 and manylinux_2_17_x86_64.")
    hint = hint.strip()
    if args.torch == "cpu":
        index = local or ["--index-url", os.environ.get("TORCH_INDEX_URL") or DEFAULT_TORCH_INDEX]
        run_pip([*base, *index, "--no-deps", f"torch=={TORCH_CPU_VERSION}"],
                f"downloading torch=={TORCH_CPU_VERSION} (cpu)", local_only=bool(local), hint=hint)
        # the torchvision build of the same index: a CUDA build from elsewhere would not load beside this torch
        run_pip([*base, *index, "--no-deps", f"torchvision=={TORCHVISION_CPU_VERSION}"],
                f"downloading torchvision=={TORCHVISION_CPU_VERSION} (cpu)", local_only=bool(local), hint=hint)
    else:
        # torch and torchvision resolved together, so pip pairs them (torchvision pins its torch release)
        run_pip([*base, *local, "torch>=2.6,<2.15", "torchvision<0.30"], "downloading torch and torchvision (cuda)",
                local_only=bool(local), hint=hint)
    pins = []
    for name in ("torch", "torchvision"):
        wheels = sorted(dest.glob(f"{name}-*.whl"))
        if not wheels:
            raise BuildError(f"pip download wrote no {name} wheel into {dest}")
        pins.append(f"{name}=={wheels[0].name.split('-')[1]}")
    # Pin the exact wheels just fetched (e.g. 2.13.0+cpu): otherwise the resolver below could prefer a newer or
    # plain-PyPI (CUDA) torch that also satisfies pyproject's range.
    constraints = scratch / "constraints.txt"  # not in the bundle
    constraints.write_text("\n".join(pins) + "\n", encoding="utf-8")
    extra = ["--constraint", str(constraints)]
    # --find-links dest: the app wheel and torch are already there and must be taken from there. An extra asked
    # for with --with rides on the wheel's own requirement (WHEEL[extra]), so its pinned range is the one used.
    want = f"{app_wheel}[{','.join(args.extras)}]" if args.extras else str(app_wheel)
    run_pip([*base, *local, "--find-links", str(dest), *extra, want],
            "downloading the dependencies of " + app_wheel.name
            + (f" with [{','.join(args.extras)}]" if args.extras else ""), local_only=bool(local), hint=hint)


def write_readme(path: Path, version: str, torch: str, python: str, deps: bool) -> None:
    deps_note = ("Every wheel the app needs is in wheels/." if deps else
                 "This bundle was built with --no-deps: wheels/ holds only the app, so PREFIX/venv must already "
                 "provide torch, PySide6 and the other dependencies.")
    # continued with backslashes so the command still works when pasted into a shell
    packages = " \\\n            ".join(textwrap.wrap(" ".join(linux_desktop_packages()), width=84,
                                                     break_on_hyphens=False))
    path.write_text(f"""GridAR Desktop {version} - offline installer (torch: {torch}, Python {python})

GridAR Desktop never needs the network: not to install, not to run. Models load from local folders only.
{deps_note}

INSTALL
    tar xzf {NAME}-{version}-{torch}.tar.gz
    cd {NAME}-{version}-{torch}
    ./install.sh [PREFIX]

    PREFIX defaults to ${{XDG_DATA_HOME:-~/.local/share}}/{NAME}. Needs python3 >= 3.10 with the venv module
    (Python {python} for the bundled wheels); set GRIDAR_PYTHON=/path/to/python3 to pick one. The installer first
    checks every file against MANIFEST.json and stops, naming the file, if one is damaged.
    Running install.sh again with a newer bundle upgrades in place.

SYSTEM LIBRARIES (Linux)
    The studio's window needs these system packages (Debian/Ubuntu names); install.sh checks for them first and
    names the missing ones. The command line (gridar) needs none of them.
        sudo apt install {packages}
    To install without them anyway (command line only): GRIDAR_SKIP_DESKTOP_CHECK=1 ./install.sh

WHERE THINGS GO
    PREFIX/venv/                     private Python environment with the app and its dependencies
    PREFIX/models/shapes-demo/       the bundled demo model
    PREFIX/bin/gridar-desktop        launcher for the studio
    PREFIX/bin/gridar                launcher for the command line
    PREFIX/share/icons/              the icon
    PREFIX/uninstall.sh              removes all of the above
    ${{XDG_DATA_HOME:-~/.local/share}}/applications/{NAME}.desktop   menu entry (double-click to launch)

LAUNCH
    From the applications menu ("GridAR Desktop"), or PREFIX/bin/gridar-desktop, or PREFIX/bin/gridar --help.

UNINSTALL
    PREFIX/uninstall.sh
""", encoding="utf-8")


def write_manifest(root: Path, version: str, torch: str, python: str, extras: list[str] | None = None) -> None:
    files = {p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}
    manifest = {"name": NAME, "version": version, "torch": torch, "python": python, "files": files}
    if extras:
        manifest["extras"] = list(extras)
    (root / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def replace_dir(src: Path, dst: Path) -> None:
    """Put src at dst; an old dst is moved aside first (a directory cannot be renamed over a non-empty one)."""
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
        dst.rename(old / dst.name)
    src.rename(dst)
    if old:
        shutil.rmtree(old)


def build(args: argparse.Namespace) -> Path:
    version = project_version()
    python = args.python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    demo = REPO / "resources" / "models" / "shapes-demo"
    if not (demo / "config.json").is_file():
        raise BuildError(f"the demo model is missing: {demo}/config.json not found")
    if args.wheelhouse and not args.wheelhouse.is_dir():
        raise BuildError(f"--wheelhouse {args.wheelhouse}: not a directory")
    name = f"{NAME}-{version}-{args.torch}"
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out))  # next to the target: the renames stay on one disk
    try:
        root = work / name
        wheels = root / "wheels"
        wheels.mkdir(parents=True)
        app_wheel = build_app_wheel(wheels, work)
        if not args.no_deps:
            download_deps(app_wheel, wheels, work, args)
        shutil.copytree(demo, root / "models" / "shapes-demo")
        (root / "resources" / "icons").mkdir(parents=True)
        for rel in ("icons/gridar-desktop.png", "icons/gridar-desktop.svg", "gridar-desktop.desktop"):
            shutil.copy2(REPO / "resources" / rel, root / "resources" / rel)
        shutil.copy2(REPO / "installer" / "install.sh", root / "install.sh")
        (root / "install.sh").chmod(0o755)
        write_readme(root / "README.txt", version, args.torch, python, not args.no_deps)
        if args.extras:
            # what install.sh should install beside the app: gridar-desktop[EXTRAS]
            (root / "EXTRAS").write_text(",".join(args.extras) + "\n", encoding="utf-8")
            with (root / "README.txt").open("a", encoding="utf-8") as f:
                f.write(f"""
EXTRAS
    This bundle also holds the wheels of [{','.join(args.extras)}] (cluster: Ray, for gridar batch/bench
    --cluster). Where install.sh installed the app alone, add them with:
        PREFIX/venv/bin/python -m pip install --no-index --find-links wheels 'gridar-desktop[{','.join(args.extras)}]'
""")
        write_manifest(root, version, args.torch, python, args.extras)  # last: it covers everything above
        tmp_tar = work / f"{name}.tar.gz"
        print(f"writing {name}.tar.gz ...", flush=True)
        with tarfile.open(tmp_tar, "w:gz", compresslevel=6) as tar:
            tar.add(root, arcname=name)
        replace_dir(root, out / name)
        os.replace(tmp_tar, out / f"{name}.tar.gz")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out / name


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Build the offline installer bundle of GridAR Desktop.",
        epilog=f"TORCH_INDEX_URL: the CPU wheel index for --torch cpu (default {DEFAULT_TORCH_INDEX})")
    ap.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/ in the repo)")
    ap.add_argument("--torch", choices=["cpu", "cuda"], default="cpu", help="torch build to bundle (default cpu)")
    ap.add_argument("--wheelhouse", type=Path, help="take all wheels from this folder instead of downloading")
    ap.add_argument("--no-deps", action="store_true", help="bundle only the app's own wheel")
    ap.add_argument("--python-version", help="target Python as 3.X (default: this interpreter's)")
    ap.add_argument("--platform", action="append", metavar="TAG",
                    help="target platform tag, e.g. manylinux_2_28_x86_64 (repeatable; default: this machine's)")
    ap.add_argument("--with", dest="extras", action="append", choices=["cluster"], default=[],
                    help="also bundle an optional extra: cluster (Ray, for --cluster on gridar batch and bench)")
    args = ap.parse_args(argv)
    if args.extras and args.no_deps:
        ap.error("--with cluster bundles the extra's wheels, which --no-deps leaves out; drop one of them")
    args.extras = sorted(set(args.extras))
    if args.python_version and not re.fullmatch(r"3\.\d+", args.python_version):
        ap.error(f"--python-version {args.python_version!r}: expected 3.X, e.g. 3.11")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        bundle = build(args)
    except BuildError as e:
        print(f"build_installer: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, permissions: still one clear line
        print(f"build_installer: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 1
    print(f"bundle: {bundle}\narchive: {bundle}.tar.gz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
